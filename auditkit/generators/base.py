"""The ``Generator`` protocol every family and wrapper follows, and the base class that implements sampling.

A generator maps a latent ``z`` (and, when conditional, a class label) to images in the one convention
auditkit uses: ``torch.float32`` in ``[0, 1]``, shape ``N×C×H×W``. Two paths:

- ``forward(z, labels)``: differentiable, for latent attribution (gradients flow back to ``z``);
- ``sample(n, labels=..., seed=...)``: no gradients, streamed in batches, every batch checked for NaN,
  infinities, wrong shapes and out-of-range values (a ``GeneratorError`` names the batch).

Seeding: the latents of all ``n`` images (and the labels, when drawn) come from one CPU ``torch.Generator``
seeded by ``seed`` before batching, so the same seed gives the same images whatever the batch size for
one-shot families (GAN, VAE). Stochastic samplers (DDPM) also draw per-step noise; they are reproducible for
equal ``(seed, batch_size)``.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, GeneratorError

LabelsArg = int | str | Sequence[int] | Sequence[str] | torch.Tensor | None


@runtime_checkable
class Generator(Protocol):
    """What the audit needs from a generator. :class:`BaseGenerator` implements it."""

    name: str
    latent_shape: tuple[int, ...]
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    condition: str | None

    @property
    def latent_dim(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor: ...

    def sample(
        self,
        n: int,
        *,
        labels: LabelsArg = None,
        seed: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor: ...

    def sample_batches(
        self,
        n: int,
        *,
        labels: LabelsArg = None,
        seed: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]: ...


class BaseGenerator:
    """Sampling, label handling and output checks shared by every generator.

    Subclasses implement :meth:`forward` (differentiable, ``[0, 1]`` output) and may override
    :meth:`_generate` when sampling differs from ``forward`` (a stochastic sampler, for instance).

    Parameters
    ----------
    name
        Label for reports, e.g. ``"dcgan"`` or ``"module:MyNet"``.
    latent_shape
        Shape of one latent, e.g. ``(128,)`` or ``(3, 32, 32)`` for diffusion's initial noise.
    image_shape
        ``(C, H, W)`` of the output.
    class_names
        Names of the classes a conditional generator accepts; empty for an unconditional one.
    condition
        The data attribute the classes are values of (e.g. ``"shape"``), when known.
    device
        Where ``forward`` runs; samples are returned on the CPU.
    batch_size
        Default batch size of :meth:`sample`.
    """

    def __init__(
        self,
        *,
        name: str,
        latent_shape: Sequence[int],
        image_shape: Sequence[int],
        class_names: Sequence[str] = (),
        condition: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 256,
    ) -> None:
        self.name = name
        self.latent_shape = tuple(int(d) for d in latent_shape)
        self.image_shape: tuple[int, int, int] = tuple(int(d) for d in image_shape)  # type: ignore[assignment]
        if len(self.image_shape) != 3 or self.image_shape[0] not in (1, 3):
            raise ConfigError(f"image_shape must be (C, H, W) with C in (1, 3); got {tuple(image_shape)}.")
        if any(d < 1 for d in self.latent_shape):
            raise ConfigError(f"latent_shape must be positive sizes; got {tuple(latent_shape)}.")
        self.class_names = tuple(str(c) for c in class_names)
        if len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"class names must be distinct; got {list(self.class_names)}.")
        self.condition = condition
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.batch_size = _positive_int("batch_size", batch_size)
        self.last_seed: int | None = None

    # -- description ---------------------------------------------------------------------------------

    @property
    def latent_dim(self) -> int:
        """Number of latent entries per image."""
        return math.prod(self.latent_shape)

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 for an unconditional generator."""
        return len(self.class_names)

    def label_embedding(self) -> torch.nn.Embedding | None:
        """The ``nn.Embedding`` through which class labels enter :meth:`forward`, or ``None``.

        Latent attribution hooks its output to treat the discrete condition as a continuous input (see
        :mod:`auditkit.explain.latent`); without one it falls back to an ablation of the condition. Rows
        with an index ``>= num_classes`` (diffusion's "no label" row) are left alone by that hook. The
        default is ``None``: families that have an embedding override this.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for manifests and reports."""
        return {
            "name": self.name,
            "type": type(self).__name__,
            "latent_shape": list(self.latent_shape),
            "image_shape": list(self.image_shape),
            "class_names": list(self.class_names),
            "condition": self.condition,
        }

    def __repr__(self) -> str:
        cond = f", classes={list(self.class_names)}" if self.class_names else ""
        c, h, w = self.image_shape
        return (
            f"{type(self).__name__}(name={self.name!r}, latent={self.latent_shape}, image={c}×{h}×{w}{cond})"
        )

    # -- the two paths --------------------------------------------------------------------------------

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latents ``z`` (``N×latent_shape``) and class indices ``labels`` (``N``)."""
        raise NotImplementedError

    def __call__(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(z, labels)

    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None, rng: torch.Generator) -> torch.Tensor:
        """One batch for :meth:`sample` (no gradients). ``rng`` is for samplers that draw more noise."""
        return self.forward(z, labels)

    def sample_batches(
        self,
        n: int,
        *,
        labels: LabelsArg = None,
        seed: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Stream ``n`` images as ``(images, labels)`` batches on the CPU.

        Parameters
        ----------
        n
            Number of images.
        labels
            For a conditional generator: ``None`` (classes drawn uniformly with the seed), one class
            (index or name) for all images, or one per image. Must be ``None`` for an unconditional one.
        seed
            Seeds the latents, the drawn labels and any sampler noise; ``None`` picks a fresh seed,
            recorded in ``last_seed``.
        batch_size
            Images per forward pass (default ``self.batch_size``).
        progress
            Show a progress bar.
        """
        n = _non_negative_int("n", n)
        batch_size = _positive_int("batch_size", batch_size if batch_size is not None else self.batch_size)
        seed = secrets.randbits(62) if seed is None else _seed(seed)
        self.last_seed = seed
        rng = torch.Generator().manual_seed(seed)
        z_all = torch.randn((n, *self.latent_shape), generator=rng)
        y_all = self.resolve_labels(labels, n, rng)
        bar = tqdm(total=n, desc=f"sample {self.name}", unit="img", disable=not progress)
        try:
            for index, start in enumerate(range(0, n, batch_size)):
                z = z_all[start : start + batch_size].to(self.device)
                y = y_all[start : start + batch_size].to(self.device) if y_all is not None else None
                with torch.no_grad():
                    images = self._generate(z, y, rng)
                images = self._check_batch(images, index, start, z.shape[0])
                bar.update(images.shape[0])
                yield images, (y.cpu() if y is not None else None)
        finally:
            bar.close()

    def sample(
        self,
        n: int,
        *,
        labels: LabelsArg = None,
        seed: int | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """``n`` images, float32 ``[0, 1]`` ``N×C×H×W`` on the CPU; see :meth:`sample_batches`."""
        batches = [
            images
            for images, _ in self.sample_batches(
                n, labels=labels, seed=seed, batch_size=batch_size, progress=progress
            )
        ]
        if not batches:
            return torch.empty((0, *self.image_shape), dtype=torch.float32)
        return torch.cat(batches)

    # -- checks ---------------------------------------------------------------------------------------

    def resolve_labels(
        self, labels: LabelsArg, n: int, rng: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """Class indices (``int64``, length ``n``) from what a user may pass; see :meth:`sample_batches`."""
        k = self.num_classes
        if k == 0:
            if labels is not None:
                raise ConfigError(f"generator {self.name!r} is unconditional; do not pass labels.")
            return None
        if labels is None:
            return torch.randint(0, k, (n,), generator=rng)
        if isinstance(labels, int | str) and not isinstance(labels, bool):
            return torch.full((n,), self._class_index(labels), dtype=torch.int64)
        if isinstance(labels, torch.Tensor):
            if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise ConfigError(
                    f"labels must be a 1-D integer tensor of class indices; got {labels.dtype}, "
                    f"shape {tuple(labels.shape)}."
                )
            values = labels.to(torch.int64).cpu()
        elif isinstance(labels, Sequence):
            values = torch.tensor([self._class_index(v) for v in labels], dtype=torch.int64)
        else:
            raise ConfigError(f"labels must be a class index or name, or one per image; got {labels!r}.")
        if values.shape[0] != n:
            raise ConfigError(
                f"got {values.shape[0]} labels for {n} images; give one label per image or one for all."
            )
        if n and (int(values.min()) < 0 or int(values.max()) >= k):
            raise ConfigError(
                f"class indices must lie in [0, {k - 1}] for {list(self.class_names)}; "
                f"got {int(values.min())}..{int(values.max())}."
            )
        return values

    def _class_index(self, value: Any) -> int:
        if isinstance(value, str):
            if value not in self.class_names:
                raise ConfigError(
                    f"unknown class {value!r} for generator {self.name!r}; known: {list(self.class_names)}."
                )
            return self.class_names.index(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"a label is a class index or name; got {value!r}.")
        if not 0 <= value < self.num_classes:
            raise ConfigError(
                f"class index {value} is out of range for the classes {list(self.class_names)}."
            )
        return int(value)

    def _check_batch(self, images: Any, index: int, start: int, count: int) -> torch.Tensor:
        where = f"generator {self.name!r}, batch {index} (images {start}..{start + count - 1})"
        if not isinstance(images, torch.Tensor):
            raise GeneratorError(f"{where} returned {type(images).__name__}, not a tensor.")
        expected = (count, *self.image_shape)
        if tuple(images.shape) != expected:
            raise GeneratorError(
                f"{where} returned shape {tuple(images.shape)}; expected {expected} (N×C×H×W). "
                "Check the declared image_shape."
            )
        images = images.detach().to("cpu", torch.float32)
        bad = ~torch.isfinite(images)
        if bad.any():
            first = int(bad.flatten(1).any(1).nonzero()[0])
            kind = "NaN" if torch.isnan(images).any() else "infinite values"
            raise GeneratorError(
                f"{where} produced {kind} (first at image {start + first}). The weights may have diverged "
                "or the inputs are out of range; sample with another seed to see whether it is systematic."
            )
        lo, hi = float(images.min()), float(images.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise GeneratorError(
                f"{where} produced values from {lo:.4g} to {hi:.4g}, outside [0, 1]. Declare the output "
                "range of a wrapped model (output_range=(-1, 1) for tanh outputs) or pass clamp=True."
            )
        return images.clamp_(0.0, 1.0)


def _positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer; got {value!r}.")
    return value


def _non_negative_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} must be a non-negative integer; got {value!r}.")
    return value


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63); got {value!r}.")
    return value


__all__ = ["BaseGenerator", "Generator", "LabelsArg"]
