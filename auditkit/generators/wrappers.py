"""Generators users bring: a ``torch.nn.Module`` or callable, an ONNX file, a diffusers pipeline.

Each declares the range its outputs live in (``(-1, 1)`` for ``tanh`` outputs, ``(0, 255)``...); auditkit
converts once, at this edge, to ``[0, 1]``. Outputs outside the declared range are an error that names the
batch, unless ``clamp=True`` says that small overshoots are expected.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auditkit.errors import ConfigError, GeneratorError, WeightsError
from auditkit.generators.base import BaseGenerator


def _check_range(output_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in output_range)
    except (TypeError, ValueError):
        raise ConfigError(f"output_range must be two numbers (low, high); got {output_range!r}.") from None
    if not lo < hi:
        raise ConfigError(f"output_range must have low < high; got {output_range!r}.")
    return lo, hi


class ModuleGenerator(BaseGenerator):
    """A ``torch.nn.Module`` or any callable ``(z, labels) -> images`` behind the Generator protocol.

    Parameters
    ----------
    model
        Called as ``model(z, labels)`` for a conditional generator and ``model(z)`` (or
        ``model(z, None)`` when it takes two arguments) for an unconditional one; returns ``N×C×H×W``.
    latent_shape
        Shape of one latent, e.g. ``(128,)``.
    image_shape
        ``(C, H, W)`` of the output.
    output_range
        Range of the raw outputs, mapped linearly onto ``[0, 1]``.
    class_names, condition, name, device, batch_size
        See :class:`~auditkit.generators.base.BaseGenerator`.
    clamp
        Clamp converted outputs into ``[0, 1]`` instead of refusing out-of-range values.
    label_embedding
        For a conditional generator: the ``nn.Embedding`` inside ``model`` that its labels go through
        (what latent attribution hooks; see :meth:`BaseGenerator.label_embedding`). When not given, a
        ``model.label_embedding()`` method is used if the module has one (the dcgan and vae networks do).
    """

    def __init__(
        self,
        model: nn.Module | Callable[..., torch.Tensor],
        *,
        latent_shape: Sequence[int],
        image_shape: Sequence[int],
        output_range: Sequence[float] = (0.0, 1.0),
        class_names: Sequence[str] = (),
        condition: str | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 256,
        clamp: bool = False,
        label_embedding: nn.Embedding | None = None,
    ) -> None:
        if not callable(model):
            raise ConfigError(
                f"a wrapped generator must be a torch.nn.Module or callable; got {type(model).__name__}."
            )
        if device is None and isinstance(model, nn.Module):
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else None
        super().__init__(
            name=name or f"module:{getattr(type(model), '__name__', 'callable')}",
            latent_shape=latent_shape,
            image_shape=image_shape,
            class_names=class_names,
            condition=condition,
            device=device,
            batch_size=batch_size,
        )
        self.model = model
        self.output_range = _check_range(output_range)
        self.clamp = bool(clamp)
        self._passes_labels = bool(class_names) or _takes_two_arguments(model)
        if label_embedding is not None:
            if not isinstance(label_embedding, nn.Embedding):
                raise ConfigError(
                    f"label_embedding must be the torch.nn.Embedding the labels go through; got "
                    f"{type(label_embedding).__name__}."
                )
            if not self.class_names:
                raise ConfigError("label_embedding is for a conditional generator; pass class_names too.")
            if label_embedding.num_embeddings < self.num_classes:
                raise ConfigError(
                    f"label_embedding has {label_embedding.num_embeddings} rows for "
                    f"{self.num_classes} classes {list(self.class_names)}; pass the embedding of the labels."
                )
        self._label_embedding = label_embedding

    def label_embedding(self) -> nn.Embedding | None:
        """The embedding given to the constructor, else ``model.label_embedding()`` when it has one."""
        if self._label_embedding is not None or not self.class_names:
            return self._label_embedding
        own = getattr(self.model, "label_embedding", None) if isinstance(self.model, nn.Module) else None
        table = own() if callable(own) else None
        return table if isinstance(table, nn.Embedding) else None

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raw = self.model(z, labels) if self._passes_labels else self.model(z)
        if not isinstance(raw, torch.Tensor):
            raise GeneratorError(f"generator {self.name!r} returned {type(raw).__name__}, not a tensor.")
        lo, hi = self.output_range
        images = (raw.float() - lo) / (hi - lo)
        return images.clamp(0.0, 1.0) if self.clamp else images

    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None, rng: torch.Generator) -> torch.Tensor:
        module = self.model if isinstance(self.model, nn.Module) else None
        was_training = module.training if module is not None else False
        if module is not None:
            module.eval()  # BatchNorm must use its running statistics when sampling
        try:
            return self.forward(z, labels)
        finally:
            if module is not None:
                module.train(was_training)


def _takes_two_arguments(fn: Callable[..., Any]) -> bool:
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class OnnxGenerator(BaseGenerator):
    """An ONNX generator run by onnxruntime (``pip install 'auditkit[onnx]'``).

    Parameters
    ----------
    path
        The ``.onnx`` file.
    latent_shape, image_shape, output_range, class_names, condition, clamp
        As for :class:`ModuleGenerator`.
    z_input, labels_input
        Input names in the graph (default: the first input for ``z``, the second for labels).
    providers
        onnxruntime execution providers (default: CUDA when available, then CPU).

    ONNX graphs are not differentiable from Python: :meth:`forward` works without gradients only, so latent
    attribution needs the original torch module.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        latent_shape: Sequence[int],
        image_shape: Sequence[int],
        output_range: Sequence[float] = (0.0, 1.0),
        class_names: Sequence[str] = (),
        condition: str | None = None,
        z_input: str | None = None,
        labels_input: str | None = None,
        providers: Sequence[str] | None = None,
        batch_size: int = 256,
        clamp: bool = False,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(
                "ONNX generators need onnxruntime: pip install 'auditkit[onnx]' (or onnxruntime-gpu)."
            ) from None
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"ONNX generator file {path} does not exist; pass the path of the .onnx file.")
        super().__init__(
            name=f"onnx:{path.name}",
            latent_shape=latent_shape,
            image_shape=image_shape,
            class_names=class_names,
            condition=condition,
            batch_size=batch_size,
        )
        available = ort.get_available_providers()
        providers = (
            list(providers)
            if providers
            else [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        )
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt graphs
            raise WeightsError(f"cannot load ONNX generator {path}: {exc}. Re-export the model.") from None
        inputs = [i.name for i in self.session.get_inputs()]
        self.z_input = z_input or inputs[0]
        self.labels_input = labels_input or (inputs[1] if class_names and len(inputs) > 1 else None)
        for what, name in (("z_input", self.z_input), ("labels_input", self.labels_input)):
            if name is not None and name not in inputs:
                raise ConfigError(f"{what} {name!r} is not an input of {path.name}; its inputs are {inputs}.")
        if class_names and self.labels_input is None:
            raise ConfigError(
                f"{path.name} has one input {inputs}; a conditional generator needs a labels input."
            )
        self.output_range = _check_range(output_range)
        self.clamp = bool(clamp)
        self.path = path

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.requires_grad:
            raise GeneratorError(
                f"{self.name} is an ONNX graph and not differentiable; latent attribution needs the torch "
                "module (wrap it with ModuleGenerator), or use a perturbation method."
            )
        feed = {self.z_input: z.detach().cpu().numpy().astype(np.float32)}
        if self.labels_input is not None and labels is not None:
            feed[self.labels_input] = labels.cpu().numpy().astype(np.int64)
        raw = torch.from_numpy(np.asarray(self.session.run(None, feed)[0], dtype=np.float32))
        lo, hi = self.output_range
        images = (raw - lo) / (hi - lo)
        return images.clamp(0.0, 1.0) if self.clamp else images


class DiffusersGenerator(BaseGenerator):
    """A diffusers pipeline with ``class_labels`` or unconditional sampling (``pip install diffusers``).

    The pipeline is called with ``batch_size``, ``generator``, ``num_inference_steps`` and
    ``output_type="np"`` (images in ``[0, 1]``, NHWC), and for conditional pipelines ``class_labels``.
    Its latents are drawn by the pipeline itself, so :meth:`forward` is not available.
    """

    def __init__(
        self,
        pipeline: Any,
        *,
        image_shape: Sequence[int],
        class_names: Sequence[str] = (),
        condition: str | None = None,
        num_inference_steps: int = 50,
        batch_size: int = 16,
    ) -> None:
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise ConfigError(
                "diffusers pipelines need the diffusers package: pip install diffusers."
            ) from None
        super().__init__(
            name=f"diffusers:{type(pipeline).__name__}",
            latent_shape=(1,),
            image_shape=image_shape,
            class_names=class_names,
            condition=condition,
            batch_size=batch_size,
        )
        self.pipeline = pipeline
        if hasattr(pipeline, "set_progress_bar_config"):
            pipeline.set_progress_bar_config(disable=True)  # sample() shows one bar for the whole run
        self.num_inference_steps = int(num_inference_steps)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        raise GeneratorError(
            f"{self.name} draws its own latents; it has no differentiable forward(z). Use sample()."
        )

    def _generate(self, z: torch.Tensor, labels: torch.Tensor | None, rng: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=rng))
        kwargs: dict[str, Any] = {
            "batch_size": z.shape[0],
            "generator": torch.Generator().manual_seed(seed),
            "num_inference_steps": self.num_inference_steps,
            "output_type": "np",
        }
        if labels is not None:
            kwargs["class_labels"] = labels.tolist()
            kwargs.pop("batch_size")
        out = self.pipeline(**kwargs)
        images = np.asarray(out.images if hasattr(out, "images") else out[0], dtype=np.float32)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


__all__ = ["DiffusersGenerator", "ModuleGenerator", "OnnxGenerator"]
