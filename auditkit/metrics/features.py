"""Feature extractors: the standard FID Inception-v3, the judge's features, or any module the user passes.

The Inception network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow-compatible FID
graph that torchmetrics' ``FrechetInceptionDistance`` also uses), not a copy of it. What auditkit adds is
weights management, which that library lacks for offline use:

* **Offline.** The weights come from a local file: ``weights=PATH`` (the CLI's ``--inception-weights``;
  a folder is searched for the standard names) or ``$AUDITKIT_WEIGHTS_DIR/<standard name>``. Nothing is
  ever downloaded; a missing file raises one ``WeightsError`` naming the file, its hash and where to put
  it. The module is constructed from the already-loaded tensors, so torch-fidelity's URL is never touched.
* **Verified.** The file's SHA-256 must equal the full hash the user passes (``sha256=``), else start with
  the hex prefix carried by its name (torch.hub's ``-<hash>.`` convention, at least 8 digits; both standard
  names carry ``6726825d``), else start with the standard prefix ``6726825d``. ``verify=False`` loads
  custom weights unchecked and says so in ``info`` (``verified=False``) for the report's manifest. The
  bytes hashed are the bytes loaded, read once.
* **Safe loading.** ``torch.load(weights_only=True)`` (or safetensors); never an arbitrary unpickle.
* **Two layouts.** torch-fidelity's file (``weights-inception-2015-12-05-6726825d.pth``) and pytorch-fid's
  (``pt_inception-2015-12-05-6726825d.pth``) share one key layout (see ``_PYTORCH_FID_BLOCKS`` for the
  facts); the state dict of pytorch-fid's ``InceptionV3`` wrapper (``blocks.*`` keys, no classifier) is
  remapped. Wrong keys or shapes raise a ``WeightsError`` that lists a few of them.

Inputs are auditkit images (float32 in ``[0, 1]``, N×C×H×W; 1 channel is replicated to 3). The Inception
graph takes uint8, so they are quantised exactly as torchmetrics' FID does with ``normalize=True``:
``(x * 255).byte()``, which truncates. Images that came from 8-bit files (``k / 255``) round-trip exactly;
other values lose up to 1/255. torch-fidelity then resizes to 299×299 with its TensorFlow-1-compatible
bilinear resize. torchmetrics 1.9's ``FrechetInceptionDistance`` defaults to ``antialias=True``, a different
resize: auditkit's exact features equal torchmetrics' only with ``antialias=False``.

Precision modes: ``exact`` (the default for reports: fp32, TF32 off during the call, the reference graph
and resize; equal to torch-fidelity's own output) and ``fast`` (bf16 autocast, channels_last, optionally
``torch.compile`` on CUDA). Measure what ``fast`` changes with :func:`mode_deviation`;
``compute_metrics(mode="fast")`` does so on a 256-image probe of each source and stores it with the result
(``auditkit.metrics.compute.fast_deviation``). Outputs are float32 tensors on the CPU, N×dim (the metrics
upcast to float64 themselves).

Cost: the Inception graph needs about 5.7 GFLOP per image, a few images per second on 2 CPU cores; a
progress bar with an ETA shows while it runs. CPU audits therefore default to the judge classifier's
features (registered as ``"judge"`` by the judge's module), with Inception features opt-in.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from auditkit._device import resolve_device
from auditkit.data.imageset import ImageSet, _check_images
from auditkit.errors import ConfigError, WeightsError

WEIGHTS_ENV = "AUDITKIT_WEIGHTS_DIR"
INCEPTION_SHA256_PREFIX = "6726825d"
# torch-fidelity's name first: it is the file torch-fidelity and torchmetrics would fetch.
INCEPTION_FILE_NAMES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
INCEPTION_URL = (  # for the error message only: auditkit never fetches it
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_OUTPUTS: dict[str, int] = {
    "64": 64,
    "192": 192,
    "768": 768,
    "2048": 2048,
    "logits_unbiased": 1008,
    "logits": 1008,
}
MODES = ("exact", "fast")

# torch.hub's HASH_REGEX is r"-([a-f0-9]*)\." (any length, even empty). Requiring 8+ digits keeps names
# such as "inception-2015.pth" from being read as a 4-digit hash.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")
_SHA256_FULL = re.compile(r"[0-9a-f]{64}")

# Layout facts, from the two packages' module definitions:
# * torch-fidelity's FeatureExtractorInceptionV3 names its layers Conv2d_1a_3x3 ... Mixed_7c and fc, with
#   BasicConv2d blocks holding ``conv`` and ``bn``. pytorch-fid's fid_inception_v3() is torchvision's
#   Inception3(num_classes=1008, aux_logits=False) with the FID blocks patched in under the same names,
#   and it loads pt_inception-...pth into it strictly. The two state dicts therefore have the same 566
#   keys and shapes (checked in tests), so the two released files load without any renaming.
# * pytorch-fid's InceptionV3 wrapper (the module its FID code runs) re-groups those layers as
#   ``blocks.<block>.<index>`` and drops fc (its forward stops at the 2048-d pool). Its state dict is
#   remapped with this table; the unlisted indices (blocks.0.3, blocks.1.2, blocks.3.3) are pooling layers
#   without parameters. Such a file gives the pool features but no logits.
_PYTORCH_FID_BLOCKS = {
    "blocks.0.0": "Conv2d_1a_3x3",
    "blocks.0.1": "Conv2d_2a_3x3",
    "blocks.0.2": "Conv2d_2b_3x3",
    "blocks.1.0": "Conv2d_3b_1x1",
    "blocks.1.1": "Conv2d_4a_3x3",
    "blocks.2.0": "Mixed_5b",
    "blocks.2.1": "Mixed_5c",
    "blocks.2.2": "Mixed_5d",
    "blocks.2.3": "Mixed_6a",
    "blocks.2.4": "Mixed_6b",
    "blocks.2.5": "Mixed_6c",
    "blocks.2.6": "Mixed_6d",
    "blocks.2.7": "Mixed_6e",
    "blocks.3.0": "Mixed_7a",
    "blocks.3.1": "Mixed_7b",
    "blocks.3.2": "Mixed_7c",
}
_BLOCK_KEY = re.compile(r"^(blocks\.\d+\.\d+)\.(.+)$")
_SHOWN = 5  # offending keys listed in an error message


# --------------------------------------------------------------------------- the extractor


@dataclass(eq=False)
class FeatureExtractor:
    """A network that turns auditkit images into feature vectors, with what a manifest needs to know.

    Build one with :func:`get_extractor`, :func:`inception_extractor` or :func:`module_extractor`.

    Attributes
    ----------
    name
        Registry name (``"inception"``) or a label for a user module.
    module
        The network; called on ``prepare(batch)`` and returning one tensor per entry of ``outputs``.
    outputs
        Names of the outputs, in the module's order; the first is what :meth:`extract` returns.
    dims
        Dimension of every output (empty until known for a user module: see :meth:`extract_all`).
    info
        JSON-serialisable identity for reports and cache keys: name, weights path, sha256, verified,
        layout, mode, device, outputs, dims and the input conversion.
    prepare
        Turns a float32 ``[0, 1]`` batch (already on ``device``) into the module's input.
    mode
        ``"exact"`` or ``"fast"`` (see the module docstring).
    device
        Where the module runs; images are moved there one batch at a time.
    batch_size
        Default images per forward pass.
    compile
        Whether ``fast`` mode runs the module through ``torch.compile`` (CUDA only).
    """

    name: str
    module: nn.Module = field(repr=False)
    outputs: tuple[str, ...]
    dims: dict[str, int]
    info: dict[str, Any] = field(repr=False)
    prepare: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    mode: str = "exact"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 32
    compile: bool = False
    owns_module: bool = False  # True when auditkit built the module and may convert or copy it freely
    _call: Callable[..., Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_mode(self.mode)
        if self.compile and self.mode == "exact":
            raise ConfigError("compile=True needs mode='fast': exact mode runs the reference graph as it is.")
        _check_batch_size(self.batch_size)
        self.info.update(mode=self.mode, device=str(self.device), outputs=list(self.outputs))
        self.info["dims"] = dict(self.dims)
        if self.mode == "fast" and self.owns_module:
            # Weights in channels_last too, so convolutions need no layout conversion on the GPU.
            self.module.to(memory_format=torch.channels_last)
        self._call = self.module
        if self.compile and self.mode == "fast" and self.device.type == "cuda":
            self._call = torch.compile(self.module)
        self.info["compile"] = self._call is not self.module

    @property
    def dim(self) -> int:
        """Dimension of the first output (what :meth:`extract` returns)."""
        if self.outputs[0] not in self.dims:
            raise ConfigError(
                f"the dimension of extractor {self.name!r} is not known yet: it is found by a dry run on "
                "the first images; call extract() once, or build it with image_shape=(C, H, W)."
            )
        return self.dims[self.outputs[0]]

    def extract(
        self,
        images: torch.Tensor | ImageSet,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> torch.Tensor:
        """Features of the first output, float32 N×dim on the CPU (see :meth:`extract_all`)."""
        return self.extract_all(images, batch_size=batch_size, progress=progress)[self.outputs[0]]

    def extract_all(
        self,
        images: torch.Tensor | ImageSet,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Every output for every image, in one pass of the network.

        Parameters
        ----------
        images
            float32 ``[0, 1]`` N×C×H×W tensor (C = 1 or 3), or an ``ImageSet``.
        batch_size
            Images per forward pass; only one batch is on the device (and resized) at a time.
        progress
            Show a tqdm bar with an ETA; ``None`` shows it when there are more than two batches.

        Returns
        -------
        dict
            Output name to a float32 CPU tensor of shape N×dim.
        """
        if isinstance(images, ImageSet):
            images = images.images
        _check_images(images)
        bs = _check_batch_size(self.batch_size if batch_size is None else batch_size)
        n = images.shape[0]
        if any(k not in self.dims for k in self.outputs):
            self._dry_run(tuple(images.shape[1:]))
        result = {k: torch.empty(n, self.dims[k], dtype=torch.float32) for k in self.outputs}
        n_batches = math.ceil(n / bs)
        show = n_batches > 2 if progress is None else bool(progress)
        desc = f"{self.name} features ({self.mode}, {self.device.type})"
        with self._running(), tqdm(total=n, unit="img", desc=desc, disable=not show) as bar:
            for start in range(0, n, bs):
                batch = images[start : start + bs].to(self.device)
                for key, value in zip(self.outputs, self._forward(batch), strict=True):
                    if value.shape != (batch.shape[0], self.dims[key]):
                        raise ConfigError(
                            f"extractor {self.name!r} gave output {key!r} of shape {tuple(value.shape)} for "
                            f"{batch.shape[0]} images; expected ({batch.shape[0]}, {self.dims[key]}). Its "
                            "output size must not depend on the batch or the image."
                        )
                    result[key][start : start + batch.shape[0]] = value.float().cpu()
                bar.update(batch.shape[0])
        return result

    def with_mode(self, mode: str, *, compile: bool = False) -> FeatureExtractor:
        """The same network and weights in another precision mode (to measure :func:`mode_deviation`).

        A module auditkit built is copied, so the two extractors never share memory-format changes; a
        user's module is shared as it is.
        """
        _check_mode(mode)
        if mode == self.mode and compile == self.compile:
            return self
        module = self.module
        if self.owns_module:
            module = copy.deepcopy(self.module).to(memory_format=torch.contiguous_format)
        info = {k: v for k, v in self.info.items() if k not in ("mode", "compile")}
        if mode == "fast" and self.device.type == "cpu":
            _warn_fast_on_cpu()
        return FeatureExtractor(
            name=self.name,
            module=module,
            outputs=self.outputs,
            dims=dict(self.dims),
            info=info,
            prepare=self.prepare,
            mode=mode,
            device=self.device,
            batch_size=self.batch_size,
            compile=compile,
            owns_module=self.owns_module,
        )

    # -- internals

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.prepare(batch)
        if self.mode == "fast":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                out = self._call(x)  # type: ignore[misc]
        else:
            out = self._call(x)  # type: ignore[misc]
        values = (out,) if isinstance(out, torch.Tensor) else out
        if not isinstance(values, tuple | list) or not all(isinstance(v, torch.Tensor) for v in values):
            raise ConfigError(
                f"extractor {self.name!r}: the module must return a tensor (or a tuple of tensors, one per "
                f"output); got {type(out).__name__}. Wrap it so that it returns its feature tensor."
            )
        if len(values) != len(self.outputs):
            raise ConfigError(
                f"extractor {self.name!r} returned {len(values)} tensors for outputs {list(self.outputs)}."
            )
        return tuple(v.reshape(v.shape[0], -1) for v in values)

    @contextmanager
    def _running(self) -> Iterator[None]:
        # every submodule's own flag is restored, not the root's pushed down: a wrapper built in training
        # mode around an eval-mode network (the judge's) must not leave that network training
        modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()  # batch norm and dropout in inference behaviour, whatever the caller left
        try:
            with torch.no_grad(), _exact_numerics() if self.mode == "exact" else nullcontext():
                yield
        finally:
            for m, mode in modes:
                m.training = mode

    def _dry_run(self, image_shape: tuple[int, ...]) -> None:
        # One image through the module: the cheapest way to learn a user module's output size.
        with self._running():
            values = self._forward(torch.zeros(1, *image_shape, device=self.device))
        self.dims.update({k: int(v.shape[1]) for k, v in zip(self.outputs, values, strict=True)})
        self.info["dims"] = dict(self.dims)


# The per-operator fp32 switches of torch >= 2.9 (CUDA matmuls, cuDNN and oneDNN kernels). They are read
# and set one by one because torch 2.9+ raises on the legacy global getters (allow_tf32,
# get_float32_matmul_precision) once a user has mixed the legacy and the new API.
_FP32_SWITCHES = (
    ("cuda", "matmul"),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)


@contextmanager
def _exact_numerics() -> Iterator[None]:
    """IEEE fp32 arithmetic for the duration of a call (no TF32 on CUDA, no bf16 in oneDNN), then restored.

    These are process-wide switches; the previous values come back even if the call fails.
    """
    switches = [getattr(getattr(torch.backends, b, None), op, None) for b, op in _FP32_SWITCHES]
    if all(s is not None and hasattr(s, "fp32_precision") for s in switches):
        saved = [s.fp32_precision for s in switches]
        try:
            for s in switches:
                s.fp32_precision = "ieee"
            yield
        finally:
            for s, value in zip(switches, saved, strict=True):
                s.fp32_precision = value
        return
    # Older torch: the legacy switches are the only ones.
    old = (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    try:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])  # first: it also sets cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = old[1]
        torch.backends.cudnn.allow_tf32 = old[2]


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}.")
    return batch_size


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(
            f"precision mode must be one of {list(MODES)}; got {mode!r}. 'exact' (fp32) is the reference "
            "for reports; 'fast' (bf16) is faster on GPUs and its deviation is measured."
        )


def _warn_fast_on_cpu() -> None:
    warnings.warn(
        "precision mode 'fast' on the CPU: bf16 autocast is rarely faster than fp32 there, and it changes "
        "the features; use mode='exact' there.",
        RuntimeWarning,
        stacklevel=3,
    )


_resolve_device = resolve_device


# --------------------------------------------------------------------------- comparing modes


def mode_deviation(
    reference: FeatureExtractor,
    other: FeatureExtractor,
    images: torch.Tensor | ImageSet,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """How far ``other``'s features are from ``reference``'s on the same images.

    Parameters
    ----------
    reference, other
        Extractors with the same outputs, typically ``e.with_mode("exact")`` and ``e`` in ``fast`` mode.
    images
        A sample of the images being audited (a few hundred are plenty).

    Returns
    -------
    dict
        ``{"reference_mode", "mode", "n_images", "outputs": {name: {"relative", "max_abs"}}}`` where
        ``relative`` is ``‖other − reference‖_F / ‖reference‖_F`` over all images; store it with the
        result that used ``other``.
    """
    if reference.outputs != other.outputs:
        raise ConfigError(
            f"cannot compare extractors with different outputs: {list(reference.outputs)} vs "
            f"{list(other.outputs)}; build both with the same outputs."
        )
    a = reference.extract_all(images, batch_size=batch_size)
    b = other.extract_all(images, batch_size=batch_size)
    per_output = {}
    for key in reference.outputs:
        ref, diff = a[key].double(), (b[key].double() - a[key].double())
        norm = float(torch.linalg.vector_norm(ref))
        per_output[key] = {
            "relative": float(torch.linalg.vector_norm(diff)) / norm if norm > 0 else float("nan"),
            "max_abs": float(diff.abs().max()) if diff.numel() else 0.0,
        }
    return {
        "reference_mode": reference.mode,
        "mode": other.mode,
        "n_images": int(next(iter(a.values())).shape[0]),
        "outputs": per_output,
    }


# --------------------------------------------------------------------------- Inception weights


def resolve_inception_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """Find the Inception weights file: ``weights`` (a file, or a folder holding a standard name), else
    ``$AUDITKIT_WEIGHTS_DIR/<standard name>``; else raise a ``WeightsError`` saying where to put it."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path.absolute()
        if path.is_dir():
            found = _standard_file_in(path)
            if found is not None:
                return found
            raise WeightsError(_missing_message(f"the folder {str(path)!r} holds none of them"))
        raise WeightsError(_missing_message(f"the file {str(path)!r} does not exist"))
    folder = os.environ.get(WEIGHTS_ENV, "").strip()
    if folder:
        found = _standard_file_in(Path(folder).expanduser())
        if found is not None:
            return found
        raise WeightsError(_missing_message(f"{WEIGHTS_ENV}={folder!r} holds none of them"))
    raise WeightsError(_missing_message(f"no weights path was given and {WEIGHTS_ENV} is not set"))


def _standard_file_in(folder: Path) -> Path | None:
    for name in INCEPTION_FILE_NAMES:
        if (folder / name).is_file():
            return (folder / name).absolute()
    return None


def _missing_message(where: str) -> str:
    names = " or ".join(repr(n) for n in INCEPTION_FILE_NAMES)
    return (
        f"Inception weights not found: {where}. The FID Inception-v3 needs the standard weights file "
        f"{names} (torch-fidelity's or pytorch-fid's name; same weights), whose SHA-256 starts with "
        f"{INCEPTION_SHA256_PREFIX}. Put it in the folder named by {WEIGHTS_ENV}, or pass its path "
        f"(--inception-weights PATH, or weights=PATH). auditkit never downloads it by itself: fetch it "
        f"once on a connected machine (e.g. {INCEPTION_URL}) and copy it here. On the CPU, the judge's "
        f"features need no download and are much faster."
    )


def _expected_hash(path: Path, sha256: str | None) -> tuple[str, str]:
    """The hash (full or prefix) the file must match, and where that expectation comes from."""
    if sha256 is not None:
        return sha256, "the SHA-256 you passed"
    match = _HASH_IN_NAME.search(path.name)
    if match:
        return match.group(1), "the hash prefix its file name carries (torch.hub's '-<hash>.' convention)"
    return INCEPTION_SHA256_PREFIX, "the standard FID Inception weights' hash prefix"


def _read_state_dict(data: bytes, path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or safetensors errors all mean the same to a user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"cannot read Inception weights {str(path)!r} as a state dict (torch.load(weights_only=True), or "
            f"safetensors for .safetensors files): {first[:300]}. auditkit loads tensors only, never pickled "
            "objects; save the weights with "
            "torch.save(model.state_dict(), path), or use the standard file."
        ) from None
    if not isinstance(state, Mapping):
        raise WeightsError(
            f"Inception weights {str(path)!r} hold a {type(state).__name__}, not a state dict (a mapping of "
            "parameter names to tensors); save model.state_dict(), or use the standard file."
        )
    return dict(state)


@functools.cache
def _inception_reference() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torch-fidelity's own module, read from a parameter-free skeleton (meta device)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        # The constructor loads weights from the path it is given; a skeleton only needs the layer
        # shapes, so loading is skipped (and no URL is touched: a path is always given).
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.device("meta"):
        skeleton = _Skeleton("skeleton", ["2048"], feature_extractor_weights_path=empty)
    return {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}


def _to_torch_fidelity_layout(
    state: dict[str, Any], path: Path, need_fc: bool
) -> tuple[dict[str, torch.Tensor], str]:
    """Rename keys to torch-fidelity's layout and check them; returns ``(state, layout name)``."""
    reference = _inception_reference()
    state = {str(k): v for k, v in state.items()}  # weights_only also admits int keys: name them uniformly
    layout = "pytorch-fid-blocks" if any(k.startswith("blocks.") for k in state) else "torch-fidelity"
    if layout == "pytorch-fid-blocks":
        renamed: dict[str, Any] = {}
        for key, value in state.items():
            match = _BLOCK_KEY.match(key)
            if match and match.group(1) in _PYTORCH_FID_BLOCKS:
                renamed[f"{_PYTORCH_FID_BLOCKS[match.group(1)]}.{match.group(2)}"] = value
            else:
                renamed[key] = value  # reported as unexpected below, under its own name
        state = renamed
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    unexpected = sorted(k for k in state if k not in reference)
    # num_batches_tracked is absent from files saved before torch 0.4.1 and never used at inference.
    optional = {k for k in reference if k.endswith(".num_batches_tracked")}
    if layout == "pytorch-fid-blocks":
        optional |= {"fc.weight", "fc.bias"}  # pytorch-fid's wrapper has no classifier
    missing = sorted(k for k in reference if k not in state and k not in optional)
    wrong = [
        f"{k}: {tuple(v.shape)} instead of {reference[k]}"
        for k, v in state.items()
        if k in reference and isinstance(v, torch.Tensor) and tuple(v.shape) != reference[k]
    ]
    if not_tensors or unexpected or missing or wrong:
        parts = []
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong),
            ("values that are not tensors", not_tensors),
        ):
            if items:
                shown = ", ".join(items[:_SHOWN]) + (
                    f", ... ({len(items)} in all)" if len(items) > _SHOWN else ""
                )
                parts.append(f"{label}: {shown}")
        raise WeightsError(
            f"Inception weights {str(path)!r} do not fit the FID Inception-v3 (read as the {layout} layout): "
            + "; ".join(parts)
            + ". Use the standard file (torch-fidelity's or pytorch-fid's), or a state dict of "
            "torch-fidelity's FeatureExtractorInceptionV3 or pytorch-fid's InceptionV3."
        )
    if need_fc and "fc.weight" not in state:
        raise WeightsError(
            f"Inception weights {str(path)!r} come from pytorch-fid's InceptionV3 wrapper, which has no "
            "classifier (fc), so the logits (for the Inception Score) cannot be computed; ask only for pool "
            "features (outputs=('2048',)), or use the standard file, which has fc."
        )
    full = dict(state)
    for key in optional - set(state):
        if key.endswith(".num_batches_tracked"):
            full[key] = torch.tensor(0, dtype=torch.long)
        else:  # fc of a wrapper file: never used for pool features; NaN makes any accidental use visible
            full[key] = torch.full(reference[key], float("nan"))
    return full, layout


def _build_torch_fidelity(state: Mapping[str, torch.Tensor], outputs: Sequence[str]) -> nn.Module:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # torch-fidelity downloads when feature_extractor_weights_path is None, and otherwise unpickles
    # whatever it is given without restriction. We give it an in-memory copy of the tensors we loaded and
    # checked, so no URL is touched and its loader only ever sees bytes auditkit itself wrote.
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    return FeatureExtractorInceptionV3(
        "inception-v3-compat", list(outputs), feature_extractor_weights_path=buffer
    )


def _to_uint8_rgb(batch: torch.Tensor) -> torch.Tensor:
    # Exactly torchmetrics' FID with normalize=True: truncation, not rounding (k/255 round-trips exactly).
    x = (batch * 255).byte()
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def inception_extractor(
    weights: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = None,
    verify: bool = True,
    mode: str = "exact",
    device: str | torch.device | None = None,
    outputs: Sequence[str] | str = ("2048", "logits_unbiased"),
    batch_size: int = 32,
    compile: bool = False,
) -> FeatureExtractor:
    """The standard FID Inception-v3 (torch-fidelity's graph) from a local, verified weights file.

    Parameters
    ----------
    weights
        The weights file, or a folder holding a standard name; ``None`` looks in ``$AUDITKIT_WEIGHTS_DIR``.
    sha256
        The file's full SHA-256 (64 hex digits), for custom weights; overrides the hash in the name.
    verify
        ``False`` skips the hash check (custom weights); ``info["verified"]`` then says ``False``.
    mode
        ``"exact"`` (fp32, reference graph; the default for reports) or ``"fast"`` (bf16, channels_last).
    device
        ``None`` picks CUDA when available, else the CPU.
    outputs
        Any of ``"64"``, ``"192"``, ``"768"``, ``"2048"`` (pool features, for FID/KID/PRDC),
        ``"logits_unbiased"`` (for IS, as torch-fidelity computes it) and ``"logits"``.
    batch_size
        Default images per forward pass.
    compile
        ``torch.compile`` the network in ``fast`` mode on CUDA (ignored with a warning elsewhere).

    Raises
    ------
    WeightsError
        The file is missing, has the wrong hash, or does not hold Inception-v3 weights.
    ConfigError
        An option is invalid.
    """
    _check_mode(mode)
    _check_batch_size(batch_size)
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    bad = [o for o in outputs if o not in INCEPTION_OUTPUTS]
    if not outputs or bad or len(set(outputs)) != len(outputs):
        raise ConfigError(
            f"Inception outputs must be distinct names among {list(INCEPTION_OUTPUTS)}; got {list(outputs)}."
        )
    if sha256 is not None:
        sha256 = str(sha256).strip().lower()
        if not _SHA256_FULL.fullmatch(sha256):
            raise ConfigError(f"sha256 must be the file's full SHA-256, 64 hex digits; got {sha256!r}.")
        if not verify:
            raise ConfigError("sha256= and verify=False contradict each other; pass one of them.")
    if compile and mode == "exact":
        raise ConfigError("compile=True needs mode='fast': exact mode runs the reference graph as it is.")
    dev = _resolve_device(device)
    if compile and dev.type != "cuda":
        warnings.warn("compile=True is used on CUDA only; running uncompiled on the CPU.", stacklevel=2)
        compile = False
    if mode == "fast" and dev.type == "cpu":
        _warn_fast_on_cpu()

    path = resolve_inception_weights(weights)
    data = path.read_bytes()  # hashed and loaded from the same bytes: nothing can change in between
    digest = hashlib.sha256(data).hexdigest()
    expected: str | None = None
    if verify:
        expected, source = _expected_hash(path, sha256)
        if not digest.startswith(expected):
            raise WeightsError(
                f"Inception weights {str(path)!r} have SHA-256 {digest}, which does not "
                f"{'equal' if len(expected) == 64 else 'start with'} {expected} ({source}). The file is "
                f"damaged or not the expected weights: replace it with the standard file (SHA-256 starting "
                f"with {INCEPTION_SHA256_PREFIX}) in {WEIGHTS_ENV} or at --inception-weights. For custom "
                "weights pass sha256=<their full hash>, or verify=False, which the "
                "report records as unverified."
            )
    else:
        warnings.warn(
            f"Inception weights {str(path)!r} loaded WITHOUT hash verification (verify=False); "
            "the result records them as unverified.",
            UserWarning,
            stacklevel=2,
        )
    state, layout = _to_torch_fidelity_layout(
        _read_state_dict(data, path), path, need_fc=any(o.startswith("logits") for o in outputs)
    )
    module = _build_torch_fidelity(state, outputs).to(dev)
    del state, data

    import torch_fidelity

    info = {
        "name": "inception",
        "network": "torch-fidelity FeatureExtractorInceptionV3 (TensorFlow-compatible FID Inception-v3)",
        "library": f"torch-fidelity {torch_fidelity.__version__}",
        "weights": str(path),
        "sha256": digest,
        "sha256_of": "file",
        "verified": bool(verify),
        "expected_sha256": expected,
        "standard": digest.startswith(INCEPTION_SHA256_PREFIX),
        "layout": layout,
        "input": "float [0,1] -> uint8 by (x*255).byte() (truncation, as torchmetrics normalize=True); "
        "1 channel replicated to 3; torch-fidelity's TF1-compatible bilinear resize to 299x299",
    }
    return FeatureExtractor(
        name="inception",
        module=module,
        outputs=outputs,
        dims={o: INCEPTION_OUTPUTS[o] for o in outputs},
        info=info,
        prepare=_to_uint8_rgb,
        mode=mode,
        device=dev,
        batch_size=batch_size,
        compile=compile,
        owns_module=True,
    )


# --------------------------------------------------------------------------- user modules


def _state_fingerprint(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes, values), for manifests and cache keys."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _identity(batch: torch.Tensor) -> torch.Tensor:
    return batch


def module_extractor(
    module: nn.Module,
    *,
    name: str | None = None,
    mode: str = "exact",
    device: str | torch.device | None = None,
    image_shape: tuple[int, int, int] | None = None,
    batch_size: int = 64,
) -> FeatureExtractor:
    """Wrap any ``nn.Module`` as an extractor: it gets float32 ``[0, 1]`` N×C×H×W images and its output is
    flattened to N×D.

    Parameters
    ----------
    module
        Used as it is (not copied); it runs in eval mode during extraction and its mode is restored after.
    name
        Label for reports (default ``"module:<ClassName>"``).
    device
        Moves the module there (``module.to(device)``); ``None`` keeps it where its parameters are.
    image_shape
        ``(C, H, W)``: find the output size now by a dry run on one blank image; otherwise it is found at
        the first :meth:`FeatureExtractor.extract_all`.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"expected a torch.nn.Module; got {type(module).__name__}.")
    _check_mode(mode)
    if device is None:
        first = next(iter(module.parameters()), None)
        dev = first.device if first is not None else torch.device("cpu")
    else:
        dev = _resolve_device(device)
        module.to(dev)
    if mode == "fast" and dev.type == "cpu":
        _warn_fast_on_cpu()
    label = name or f"module:{type(module).__name__}"
    info = {
        "name": label,
        "network": f"{type(module).__module__}.{type(module).__qualname__}",
        "weights": None,
        "sha256": _state_fingerprint(module),
        "sha256_of": "state_dict",
        "verified": None,  # nothing to verify against: the module is the user's own
        "layout": None,
        "input": "float32 [0,1] N×C×H×W as given; output flattened to N×D",
    }
    extractor = FeatureExtractor(
        name=label,
        module=module,
        outputs=("features",),
        dims={},
        info=info,
        prepare=_identity,
        mode=mode,
        device=dev,
        batch_size=batch_size,
    )
    if image_shape is not None:
        extractor._dry_run(tuple(image_shape))
    return extractor


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[..., FeatureExtractor]] = {"inception": inception_extractor}


def register_extractor(name: str, factory: Callable[..., FeatureExtractor], *, replace: bool = False) -> None:
    """Make ``factory(**options)`` available as ``get_extractor(name, **options)`` (e.g. ``"judge"``)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"an extractor name must be a non-empty string; got {name!r}.")
    if name in _REGISTRY and not replace:
        raise ConfigError(
            f"feature extractor {name!r} is already registered; pass replace=True to replace it."
        )
    _REGISTRY[name] = factory


def known_extractors() -> tuple[str, ...]:
    """Names :func:`get_extractor` accepts."""
    return tuple(sorted(_REGISTRY))


def get_extractor(name_or_module: str | nn.Module | FeatureExtractor, **options: Any) -> FeatureExtractor:
    """An extractor by registry name (``"inception"``, ``"judge"`` with ``path=``) or from a module.

    ``options`` go to the factory (:func:`inception_extractor` for ``"inception"``,
    :func:`module_extractor` for a module); an extractor passed in is returned as it is.
    """
    if isinstance(name_or_module, FeatureExtractor):
        if options:
            raise ConfigError(f"options {sorted(options)} cannot be applied to an existing extractor.")
        return name_or_module
    if isinstance(name_or_module, nn.Module):
        factory: Callable[..., FeatureExtractor] = module_extractor
        label = type(name_or_module).__name__
        args: tuple[Any, ...] = (name_or_module,)
    elif isinstance(name_or_module, str):
        if name_or_module == "judge" and name_or_module not in _REGISTRY:
            from auditkit.bias.judge import _judge_extractor  # imported late: bias imports this module

            register_extractor("judge", _judge_extractor)
        if name_or_module not in _REGISTRY:
            raise ConfigError(
                f"unknown feature extractor {name_or_module!r}; known: {list(known_extractors())}, or pass a "
                "torch.nn.Module. Others (such as the judge classifier's features) appear once registered "
                "with register_extractor()."
            )
        factory, label, args = _REGISTRY[name_or_module], name_or_module, ()
    else:
        raise ConfigError(
            "a feature extractor is a registered name or a torch.nn.Module; "
            f"got {type(name_or_module).__name__}."
        )
    try:
        inspect.signature(factory).bind(*args, **options)
    except TypeError as exc:
        raise ConfigError(f"bad options for feature extractor {label!r}: {exc}.") from None
    return factory(*args, **options)


__all__ = [
    "INCEPTION_FILE_NAMES",
    "INCEPTION_OUTPUTS",
    "INCEPTION_SHA256_PREFIX",
    "MODES",
    "WEIGHTS_ENV",
    "FeatureExtractor",
    "get_extractor",
    "inception_extractor",
    "known_extractors",
    "mode_deviation",
    "module_extractor",
    "register_extractor",
    "resolve_inception_weights",
]
