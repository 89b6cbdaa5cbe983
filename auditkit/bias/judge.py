"""The judge: a small CNN with one classification head per attribute, and its held-out error.

The bias audit reads the attributes of generated images through the judge, so the judge's own mistakes
would show up as bias. Two things make that correctable and checkable:

* a **held-out confusion matrix** per attribute (rows = true value, columns = predicted value), measured
  on reference images the judge never trained on; the audit uses its row-normalised form,
  ``P(predicted | true)``, to correct group shares and widen their confidence intervals;
* **verifiable weights**: ``judge.safetensors`` (no pickle) plus ``judge.json`` (architecture, report,
  the weights file's SHA-256); :meth:`Judge.load` refuses a file whose hash or keys do not match.

Network: four conv stages (3×3 conv, BatchNorm, ReLU, then a 2×2 average pool while the map is at least 8
wide) → adaptive average pool to 4×4 → flatten → Linear → ReLU = the penultimate feature vector → one
Linear head per attribute. Choices, and why:

* The 4×4 grid is flattened rather than averaged away because position (left/centre/right) is an attribute.
* The fourth stage runs on that 4×4 grid so that every cell sees a whole shape before the flatten; without
  it, training stalled on some seeds with up to 5 % of small circles read as squares.
* The only nonlinearity is ReLU (each its own non-inplace module); pooling is by average and BatchNorm is
  affine at inference. DeepLift's attributions then sum exactly to ``f(x) - f(baseline)``. With max-pooling
  Captum's DeepLift missed that sum by up to 20 % with a black baseline; average pooling is also as
  accurate and cheaper here.

Training is plain PyTorch: AdamW, a one-cycle learning-rate schedule, the sum of the heads'
cross-entropies. The only augmentation is Gaussian pixel noise (see ``AUGMENT_NOISE``).

Why hand-written: torchvision's classifiers are single-head and sized for ImageNet; what is needed here is
a multi-head net small enough to train in a minute on one CPU core, plus its held-out error, which no
library keeps for us.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from tqdm.auto import tqdm

from auditkit._atomic import atomic_write_bytes, atomic_write_json, json_bytes
from auditkit._device import resolve_device
from auditkit.data.imageset import ImageSet, _check_images
from auditkit.errors import ConfigError, DataError, TrainingError, WeightsError
from auditkit.metrics.features import FeatureExtractor, module_extractor, register_extractor
from auditkit.store import RunInfo, RunStore

__all__ = ["Judge", "JudgeNet", "JudgeReport", "holdout_split", "train_judge"]

WEIGHTS_FILE = "judge.safetensors"
META_FILE = "judge.json"
FORMAT = "auditkit-judge"
FORMAT_VERSION = 1
# Training images get Gaussian pixel noise with a per-image std drawn uniformly from [0, AUGMENT_NOISE]:
# generated images are never pixel-perfect, and a judge trained with faint noise only (std 0.02) misread
# the size of half of the Shapes(noise=0.05) images in one of our runs. Noise changes no attribute;
# flips, shifts or colour jitter would (position, size, colour are labels), so there is no other.
AUGMENT_NOISE = 0.1
_GRID = 4  # the trunk's last feature map is pooled to _GRID × _GRID, keeping coarse position


# --------------------------------------------------------------------------- network


class JudgeNet(nn.Module):
    """Conv trunk → penultimate features → one linear head per attribute.

    Parameters
    ----------
    image_shape
        ``(C, H, W)`` of the images it takes.
    num_classes
        Number of values of every attribute, in attribute order (one head each).
    width
        Channels of the first conv stage; the next stages have ``2·width``, ``4·width`` and ``4·width``,
        and the penultimate feature vector has ``4·width`` entries.
    """

    def __init__(self, image_shape: Sequence[int], num_classes: Sequence[int], width: int = 16) -> None:
        super().__init__()
        c, h, w = (int(v) for v in image_shape)
        self.image_shape = (c, h, w)
        self.feature_dim = 4 * width
        layers: list[nn.Module] = []
        channels, side = c, min(h, w)
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if side >= 2 * _GRID:  # pool only while the map stays at least _GRID wide
                layers.append(nn.AvgPool2d(2))
                side //= 2
            channels = out
        layers += [
            nn.AdaptiveAvgPool2d(_GRID),
            nn.Flatten(),
            nn.Linear(channels * _GRID * _GRID, self.feature_dim),
            nn.ReLU(),
        ]
        self.trunk = nn.Sequential(*layers)
        # A list, not a ModuleDict: attribute names from a user's CSV may contain dots, which keys may not.
        self.heads = nn.ModuleList(nn.Linear(self.feature_dim, int(k)) for k in num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, N×``feature_dim``."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise DataError(
                f"the judge takes images of shape N×{'×'.join(map(str, self.image_shape))} (C×H×W); got "
                f"{tuple(x.shape)}. Resize the images, or train a judge on data of this shape."
            )
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits of every head, in attribute order."""
        z = self.features(x)
        return tuple(head(z) for head in self.heads)


class _FeatureModule(nn.Module):
    """``images → penultimate features``: what the feature extractor runs."""

    def __init__(self, net: JudgeNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


class _HeadModule(nn.Module):
    """``images → logits of one attribute``: a differentiable view for Captum, SHAP and LIME."""

    def __init__(self, net: JudgeNet, index: int) -> None:
        super().__init__()
        self.net = net
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.heads[self.index](self.net.features(x))


# --------------------------------------------------------------------------- report


@dataclass
class JudgeReport:
    """How well the judge reads each attribute on held-out reference images.

    Attributes
    ----------
    attributes
        Attribute name → its value names (the order of the confusion matrices' rows and columns).
    accuracy
        Attribute name → held-out accuracy.
    confusion
        Attribute name → confusion counts ``[true][predicted]``, as nested lists of ints.
    n_train, n_holdout
        Images trained on and held out.
    holdout
        Held-out fraction asked for.
    holdout_ids_sha256
        SHA-256 of the held-out images' ids joined by newlines, in data order (see :func:`holdout_split`).
    epochs, seed
        Training settings.
    train_seconds
        Wall time of the training loop.
    final_loss
        Mean training loss of the last epoch (sum over heads).
    device
        Where it was trained.
    """

    attributes: dict[str, tuple[str, ...]]
    accuracy: dict[str, float]
    confusion: dict[str, list[list[int]]]
    n_train: int
    n_holdout: int
    holdout: float
    holdout_ids_sha256: str
    epochs: int
    seed: int
    train_seconds: float
    final_loss: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    def confusion_rates(self, attribute: str) -> torch.Tensor:
        """``P(predicted | true)``: the confusion matrix with rows divided by their sums (float64, K×K).

        A value with no held-out image has an unknown row, returned as NaN.
        """
        counts = torch.tensor(self._confusion(attribute), dtype=torch.float64)
        return counts / counts.sum(dim=1, keepdim=True)  # 0/0 → NaN for a row never observed

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-safe data (lists instead of tuples)."""
        return {
            # A list, because auditkit writes JSON with sorted keys and the order is the heads' order.
            "attributes": [{"name": k, "values": list(v)} for k, v in self.attributes.items()],
            "accuracy": dict(self.accuracy),
            "confusion": {k: [list(map(int, row)) for row in m] for k, m in self.confusion.items()},
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
            "holdout": self.holdout,
            "holdout_ids_sha256": self.holdout_ids_sha256,
            "epochs": self.epochs,
            "seed": self.seed,
            "train_seconds": self.train_seconds,
            "final_loss": self.final_loss,
            "device": self.device,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeReport:
        """Inverse of :meth:`to_dict`."""
        attributes = {str(a["name"]): tuple(a["values"]) for a in data["attributes"]}
        return cls(
            attributes=attributes,
            accuracy={k: float(data["accuracy"][k]) for k in attributes},
            confusion={k: [[int(c) for c in row] for row in data["confusion"][k]] for k in attributes},
            n_train=int(data["n_train"]),
            n_holdout=int(data["n_holdout"]),
            holdout=float(data["holdout"]),
            holdout_ids_sha256=str(data["holdout_ids_sha256"]),
            epochs=int(data["epochs"]),
            seed=int(data["seed"]),
            train_seconds=float(data["train_seconds"]),
            final_loss=float(data["final_loss"]),
            device=str(data["device"]),
            extra=dict(data.get("extra", {})),
        )

    def _confusion(self, attribute: str) -> list[list[int]]:
        if attribute not in self.confusion:
            raise ConfigError(f"unknown attribute {attribute!r}; the judge knows {list(self.confusion)}.")
        return self.confusion[attribute]


# --------------------------------------------------------------------------- the judge


class Judge:
    """A trained attribute classifier: predictions, features, per-attribute heads, persistence.

    Build one with :func:`train_judge` or :meth:`Judge.load`. The network is kept in eval mode; every
    method takes float32 ``[0, 1]`` images of shape N×C×H×W (or an ``ImageSet``) and returns CPU tensors.

    Attributes
    ----------
    attributes
        Attribute name → value names, in head order (the column order of :meth:`predict`).
    image_shape
        ``(C, H, W)`` of the images it takes.
    network
        The :class:`JudgeNet`.
    report
        The held-out :class:`JudgeReport`.
    run_id
        The store run that trained it, if any.
    width
        The network's width (see :class:`JudgeNet`).
    """

    def __init__(
        self,
        network: JudgeNet,
        attributes: Mapping[str, Sequence[str]],
        report: JudgeReport,
        *,
        width: int,
        run_id: str | None = None,
        weights_sha256: str | None = None,
        source: str | None = None,
    ) -> None:
        self.network = network.eval()
        self.attributes: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in attributes.items()}
        self.image_shape: tuple[int, int, int] = network.image_shape
        self.report = report
        self.width = width
        self.run_id = run_id
        self.weights_sha256 = weights_sha256  # of the file it was loaded from / last saved to
        self.source = source

    def __repr__(self) -> str:
        acc = ", ".join(f"{k}={v:.3f}" for k, v in self.report.accuracy.items())
        return f"Judge(image_shape={self.image_shape}, held-out accuracy: {acc})"

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are."""
        return next(self.network.parameters()).device

    # -- inference

    def logits(self, images: torch.Tensor | ImageSet, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Logits of every attribute: name → float32 N×K (CPU)."""
        images = self._check(images)
        _positive_int("batch_size", batch_size)
        chunks: list[tuple[torch.Tensor, ...]] = []
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                batch = images[start : start + batch_size].to(self.device)
                chunks.append(tuple(t.float().cpu() for t in self.network(batch)))
        return {
            name: torch.cat([c[j] for c in chunks]) if chunks else torch.empty(0, len(vocab))
            for j, (name, vocab) in enumerate(self.attributes.items())
        }

    def predict_proba(
        self, images: torch.Tensor | ImageSet, batch_size: int = 256
    ) -> dict[str, torch.Tensor]:
        """Softmax probabilities of every attribute: name → float32 N×K (CPU)."""
        return {k: v.softmax(dim=1) for k, v in self.logits(images, batch_size).items()}

    def predict(self, images: torch.Tensor | ImageSet, batch_size: int = 256) -> torch.Tensor:
        """Predicted value indices, int64 N×A, columns in ``attributes`` order (as ``ImageSet.labels``)."""
        logits = self.logits(images, batch_size)
        return torch.stack([v.argmax(dim=1) for v in logits.values()], dim=1)

    def features(self, images: torch.Tensor | ImageSet, batch_size: int = 256) -> torch.Tensor:
        """Penultimate features, float32 N×D (CPU)."""
        images = self._check(images)
        _positive_int("batch_size", batch_size)
        out = torch.empty(images.shape[0], self.network.feature_dim)
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                batch = images[start : start + batch_size].to(self.device)
                out[start : start + batch.shape[0]] = self.network.features(batch).float().cpu()
        return out

    def head(self, attribute: str) -> nn.Module:
        """A module mapping images N×C×H×W to the N×K logits of one attribute (for Captum/SHAP/LIME).

        It shares its parameters with :attr:`network` and does not check pixel ranges (attribution
        methods feed it perturbed or interpolated images); gradients flow to the input.
        """
        if attribute not in self.attributes:
            raise ConfigError(f"unknown attribute {attribute!r}; the judge knows {list(self.attributes)}.")
        return _HeadModule(self.network, list(self.attributes).index(attribute)).eval()

    def feature_extractor(self, **options: Any) -> FeatureExtractor:
        """The penultimate features as a ``FeatureExtractor`` named ``"judge"``.

        ``options`` go to :func:`~auditkit.metrics.features.module_extractor` (``mode``, ``device``,
        ``batch_size``, ...). The extractor's ``info`` carries the weights file and its SHA-256 when known.
        """
        options.setdefault("name", "judge")
        options.setdefault("image_shape", self.image_shape)
        extractor = module_extractor(_FeatureModule(self.network).eval(), **options)
        extractor.info.update(
            network="auditkit judge (penultimate features)",
            weights=self.source,
            weights_sha256=self.weights_sha256,
            judge_run_id=self.run_id,
        )
        return extractor

    # -- persistence

    def save(self, directory: str | Path) -> Path:
        """Write ``judge.safetensors`` and ``judge.json`` into ``directory`` (created if missing), atomically.

        Returns the path of ``judge.json``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        blob, meta = self._serialise()
        atomic_write_bytes(directory / WEIGHTS_FILE, blob)  # weights first: the json vouches for them
        atomic_write_json(directory / META_FILE, meta)
        self.weights_sha256 = meta["weights"]["sha256"]
        self.source = str(directory / WEIGHTS_FILE)
        return directory / META_FILE

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None) -> Judge:
        """Load a judge saved by :meth:`save` or by :func:`train_judge` into a store run.

        Parameters
        ----------
        path
            A folder holding ``judge.json`` and ``judge.safetensors`` (a store run folder works), or the
            path of either file.
        device
            Where to put the network (default: the CPU).

        Raises
        ------
        WeightsError
            Naming the file and what to do, when a file is missing or unreadable, the weights' SHA-256
            differs from the one in ``judge.json``, or their keys/shapes do not fit the architecture.
        """
        path = Path(path).expanduser()
        directory = path if path.is_dir() or not path.suffix else path.parent
        meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
        if not meta_path.is_file():
            raise WeightsError(
                f"judge description {str(meta_path)!r} is missing; point Judge.load at a folder written by "
                "Judge.save or train_judge(store=...), or train a judge with train_judge."
            )
        meta = _read_meta(meta_path)
        if not weights_path.is_file():
            raise WeightsError(
                f"judge weights {str(weights_path)!r} are missing (described by {str(meta_path)!r}); "
                "restore the file, or train the judge again with train_judge."
            )
        data = weights_path.read_bytes()  # hashed and loaded from the same bytes
        digest = hashlib.sha256(data).hexdigest()
        expected = meta["weights"]["sha256"]
        if digest != expected:
            raise WeightsError(
                f"judge weights {str(weights_path)!r} have SHA-256 {digest}, but {str(meta_path)!r} records "
                f"{expected}: the file was changed or damaged. Restore both files from the same save, or "
                "train the judge again."
            )
        try:
            state = load_safetensors(data)
        except (SafetensorError, ValueError) as exc:
            raise WeightsError(
                f"judge weights {str(weights_path)!r} are not a readable safetensors file ({exc}); "
                "restore the file or train the judge again."
            ) from None
        arch = meta["architecture"]
        attributes = {str(a["name"]): tuple(a["values"]) for a in arch["attributes"]}
        network = JudgeNet(arch["image_shape"], [len(v) for v in attributes.values()], arch["width"])
        _check_state(network, state, weights_path)
        network.load_state_dict(state)
        network.to(_resolve_device(device) if device is not None else torch.device("cpu"))
        return cls(
            network,
            attributes,
            JudgeReport.from_dict(meta["report"]),
            width=int(arch["width"]),
            run_id=meta.get("run_id"),
            weights_sha256=digest,
            source=str(weights_path),
        )

    def _serialise(self) -> tuple[bytes, dict[str, Any]]:
        """The weights file's bytes and the ``judge.json`` content that describes them."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        blob = save_safetensors(state)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": {
                "network": "JudgeNet",
                "width": self.width,
                "image_shape": list(self.image_shape),
                # A list: JSON is written with sorted keys, and this order is the heads' order.
                "attributes": [{"name": k, "values": list(v)} for k, v in self.attributes.items()],
            },
            "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(blob).hexdigest()},
            "report": self.report.to_dict(),
            "run_id": self.run_id,
            "versions": {"torch": torch.__version__},
        }
        return blob, meta

    def _check(self, images: torch.Tensor | ImageSet) -> torch.Tensor:
        if isinstance(images, ImageSet):
            images = images.images
        _check_images(images)
        if tuple(images.shape[1:]) != self.image_shape:
            raise DataError(
                f"the judge takes images of shape N×{'×'.join(map(str, self.image_shape))} (C×H×W); got "
                f"{tuple(images.shape)}. Resize the images, or train a judge on data of this shape."
            )
        return images


# --------------------------------------------------------------------------- training


def load_judge(ref: Any, store: Any = None) -> Judge:
    """A judge from a ``Judge``, a judge folder or ``judge.safetensors`` file, or a run id in ``store``."""
    if isinstance(ref, Judge):
        return ref
    text = str(ref)
    if text.startswith("run-") and not Path(text).exists():
        from auditkit.store import RunStore

        return Judge.load((store or RunStore()).get_run(text).path)
    return Judge.load(text)


def holdout_split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded random split :func:`train_judge` uses: ``(train indices, held-out indices)``, both sorted.

    ``round(n · holdout)`` images are held out (at least one); the rest train.
    """
    n_holdout = min(max(round(n * holdout), 1), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_holdout:].sort().values, perm[:n_holdout].sort().values


def train_judge(
    data: ImageSet,
    *,
    attributes: Sequence[str] | None = None,
    holdout: float = 0.2,
    epochs: int = 6,
    batch_size: int = 128,
    lr: float = 3e-3,
    width: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    store: RunStore | None = None,
    name: str | None = None,
) -> Judge:
    """Train a judge on labelled reference data and measure its error on a held-out part of it.

    Parameters
    ----------
    data
        Labelled reference images.
    attributes
        Attributes to learn, in this order (default: all of ``data.attributes``).
    holdout
        Fraction of the images held out for the report, in (0, 1); the split is :func:`holdout_split`.
    epochs, batch_size, lr, width
        Training length, images per step, peak learning rate of the one-cycle schedule, network width.
    seed
        Seeds the split, the initial weights, the batch order and the augmentation noise: the same seed
        gives the same weights on the same device (bit for bit on the CPU).
    device
        ``None`` picks CUDA when available, else the CPU.
    progress
        Show a tqdm bar.
    store, name
        When a store is given, the training is a run of kind ``"judge"`` (named ``name``): per-epoch
        loss and final held-out accuracies are logged, ``judge.safetensors`` and ``judge.json`` become
        its artifacts, and its status ends ``"completed"`` (``"failed"``/``"interrupted"`` otherwise).

    Raises
    ------
    DataError
        Empty data, fewer than 2 images, or images that are not float32 in [0, 1].
    ConfigError
        Unknown attributes, out-of-range options, or a loss that became NaN (lower ``lr``).
    """
    if not isinstance(data, ImageSet):
        raise DataError(f"train_judge needs an auditkit ImageSet; got {type(data).__name__}.")
    if len(data) < 2:
        raise DataError(
            f"train_judge needs at least 2 labelled images (some to train on, some to hold out); "
            f"got {len(data)}."
        )
    _check_images(data.images)
    names = _select_attributes(data, attributes)
    if not (isinstance(holdout, int | float) and 0 < holdout < 1):
        raise ConfigError(f"holdout must be a fraction strictly between 0 and 1; got {holdout!r}.")
    for label, value in (("epochs", epochs), ("batch_size", batch_size), ("width", width)):
        _positive_int(label, value)
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"lr must be a finite positive number; got {lr!r}.")
    dev = _resolve_device(device)
    columns = [list(data.attributes).index(a) for a in names]
    vocab = {a: data.attributes[a] for a in names}
    train_idx, hold_idx = holdout_split(len(data), float(holdout), seed)
    _warn_thin_holdout(data.labels[hold_idx][:, columns], vocab)
    hold_ids = [data.ids[i] for i in hold_idx.tolist()]
    config = {
        "attributes": names,
        "holdout": float(holdout),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": float(lr),
        "width": width,
        "seed": seed,
        "device": str(dev),
        "augment_noise": AUGMENT_NOISE,
        "data": {"n": len(data), "image_shape": list(data.image_shape), "info": _json_safe(data.info)},
    }
    run = store.create_run("judge", name=name, config=config) if store is not None else None
    # Per-epoch logging goes straight to the store, so a run stopped midway still shows its losses.
    log = functools.partial(store.log_metrics, run.id) if store is not None and run is not None else None
    try:
        network, final_loss, seconds = _fit(
            data.images[train_idx],
            data.labels[train_idx][:, columns],
            vocab,
            epochs=epochs,
            batch_size=batch_size,
            lr=float(lr),
            width=width,
            seed=seed,
            device=dev,
            progress=progress,
            log=log,
        )
        judge = Judge(
            network,
            vocab,
            JudgeReport(
                attributes=vocab,
                accuracy={},
                confusion={},
                n_train=len(train_idx),
                n_holdout=len(hold_idx),
                holdout=float(holdout),
                holdout_ids_sha256=hashlib.sha256("\n".join(hold_ids).encode()).hexdigest(),
                epochs=epochs,
                seed=seed,
                train_seconds=seconds,
                final_loss=final_loss,
                device=str(dev),
                extra={"batch_size": batch_size, "lr": float(lr), "augment_noise": AUGMENT_NOISE},
            ),
            width=width,
            run_id=run.id if run else None,
        )
        predicted = judge.predict(data.images[hold_idx])
        truth = data.labels[hold_idx][:, columns]
        for j, attr in enumerate(names):
            judge.report.accuracy[attr] = int((predicted[:, j] == truth[:, j]).sum()) / len(hold_idx)
            judge.report.confusion[attr] = _confusion(truth[:, j], predicted[:, j], len(vocab[attr]))
        if store is not None and run is not None:
            store.log_metrics(
                run.id, {f"holdout/accuracy/{a}": v for a, v in judge.report.accuracy.items()}, step=epochs
            )
            blob, meta = judge._serialise()
            store.write_artifact(run.id, WEIGHTS_FILE, blob)
            store.write_artifact(run.id, META_FILE, json_bytes(meta), media_type="application/json")
            judge.weights_sha256 = meta["weights"]["sha256"]
            judge.source = str(run.path / WEIGHTS_FILE)
    except KeyboardInterrupt:
        _set_status(store, run, "interrupted")
        raise
    except BaseException:
        _set_status(store, run, "failed")
        raise
    _set_status(store, run, "completed")
    return judge


def _fit(
    images: torch.Tensor,
    labels: torch.Tensor,
    vocab: Mapping[str, tuple[str, ...]],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    width: int,
    seed: int,
    device: torch.device,
    progress: bool,
    log: Callable[..., object] | None,
) -> tuple[JudgeNet, float, float]:
    """The training loop; returns ``(network in eval mode, last epoch's mean loss, seconds)``."""
    # Initial weights from the seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = JudgeNet(images.shape[1:], [len(v) for v in vocab.values()], width)
    network.to(device).train()
    order_rng = torch.Generator().manual_seed(seed + 1)
    noise_rng = torch.Generator().manual_seed(seed + 2)
    n = images.shape[0]
    # Drop a last batch smaller than half a batch: a batch of 1 would break BatchNorm's statistics.
    steps_per_epoch = max(n // batch_size + (n % batch_size >= batch_size // 2), 1)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    total_steps = epochs * steps_per_epoch
    if total_steps >= 4:
        # the warm-up must span at least one step or OneCycleLR divides by zero (tiny data, one epoch)
        schedule: Any = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=total_steps, pct_start=min(0.5, max(0.25, 2.0 / total_steps))
        )
    else:  # too few steps for a schedule: train at the peak rate
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    started = time.perf_counter()
    epoch_loss = float("nan")
    bar = tqdm(total=epochs * steps_per_epoch, desc="judge", unit="step", disable=not progress)
    with bar:
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=order_rng)
            total = 0.0
            for step in range(steps_per_epoch):
                idx = perm[step * batch_size : (step + 1) * batch_size]
                x = images[idx]
                # Noise drawn on the CPU from our generator: the same numbers whatever the device.
                sigma = AUGMENT_NOISE * torch.rand(x.shape[0], 1, 1, 1, generator=noise_rng)
                x = (x + sigma * torch.randn(x.shape, generator=noise_rng)).clamp_(0.0, 1.0)
                x, y = x.to(device), labels[idx].to(device)
                outputs = network(x)
                loss = sum(F.cross_entropy(out, y[:, j]) for j, out in enumerate(outputs))
                assert isinstance(loss, torch.Tensor)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the judge's training loss became {float(loss.detach())} at epoch {epoch + 1}, step "
                        f"{step + 1} (lr={lr}); lower lr (e.g. {lr / 10:g}) or check the data for "
                        "constant or corrupted images."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.4f}")
            epoch_loss = total / steps_per_epoch
            if log is not None:
                log({"train/loss": epoch_loss}, step=epoch + 1)
    return network.eval(), epoch_loss, time.perf_counter() - started


# --------------------------------------------------------------------------- helpers


def _set_status(store: RunStore | None, run: RunInfo | None, status: str) -> None:
    if store is not None and run is not None:
        store.set_run_status(run.id, status)


def _select_attributes(data: ImageSet, attributes: Sequence[str] | None) -> list[str]:
    if attributes is None:
        names = list(data.attributes)
    elif isinstance(attributes, str):
        names = [attributes]
    else:
        names = [str(a) for a in attributes]
    unknown = [a for a in names if a not in data.attributes]
    if unknown:
        raise ConfigError(
            f"unknown attribute(s) {unknown}; this data set has {list(data.attributes) or 'none'}."
        )
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"attributes must name at least one attribute, each once; got {names}.")
    return names


def _warn_thin_holdout(labels: torch.Tensor, vocab: Mapping[str, tuple[str, ...]]) -> None:
    thin = []
    for j, (attr, values) in enumerate(vocab.items()):
        counts = torch.bincount(labels[:, j], minlength=len(values)).tolist()
        thin += [f"{attr}={v} ({c})" for v, c in zip(values, counts, strict=True) if c < 2]
    if thin:
        warnings.warn(
            f"fewer than 2 held-out images for {', '.join(thin)}: the judge's error on these values is "
            "barely measured, and the bias audit's correction for them will be unreliable. Use more "
            "reference data or a larger holdout.",
            UserWarning,
            stacklevel=3,
        )


def _confusion(truth: torch.Tensor, predicted: torch.Tensor, k: int) -> list[list[int]]:
    flat = torch.bincount(truth * k + predicted, minlength=k * k)
    return flat.view(k, k).tolist()


def _positive_int(label: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{label} must be a positive integer; got {value!r}.")
    return value


_resolve_device = resolve_device


def _json_safe(value: Any) -> Any:
    """``value`` as JSON data; anything JSON cannot hold becomes its string (e.g. a path in ``info``)."""
    return json.loads(json.dumps(value, default=str, allow_nan=False)) if value else {}


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"judge description {str(path)!r} is not readable JSON ({exc}); restore it from the same "
            "save as judge.safetensors, or train the judge again."
        ) from None
    try:
        ok = (
            meta["format"] == FORMAT
            and isinstance(meta["weights"]["sha256"], str)
            and all(isinstance(a["name"], str) for a in meta["architecture"]["attributes"])
            and len(meta["architecture"]["image_shape"]) == 3
            and isinstance(meta["architecture"]["width"], int)
            and isinstance(meta["report"], dict)
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise WeightsError(
            f"{str(path)!r} is not an auditkit judge description (format {FORMAT!r}); point Judge.load at "
            "a folder written by Judge.save or train_judge(store=...)."
        )
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise WeightsError(
            f"{str(path)!r} was written by a newer auditkit (judge format {meta['format_version']}, this "
            f"one reads up to {FORMAT_VERSION}); upgrade auditkit to load it."
        )
    return meta


def _check_state(network: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise WeightsError(
            f"judge weights {str(path)!r} do not fit the architecture in judge.json ({'; '.join(parts)}); "
            "the two files come from different judges. Restore both from the same save, or train again."
        )


def _judge_extractor(
    path: str | Path,
    *,
    mode: str = "exact",
    device: str | torch.device | None = None,
    batch_size: int = 64,
) -> FeatureExtractor:
    """Registry factory: ``get_extractor("judge", path=...)`` loads a saved judge's feature extractor."""
    judge = Judge.load(path, device=device)
    return judge.feature_extractor(mode=mode, batch_size=batch_size)


# replace=True: re-importing this module (reloads, tests) must not fail on the earlier registration.
register_extractor("judge", _judge_extractor, replace=True)
