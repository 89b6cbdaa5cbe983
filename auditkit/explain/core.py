"""One entry point for every attribution method: :func:`explain` and the :class:`Attribution` it returns.

The methods themselves are Captum's, SHAP's and LIME's (registered from ``captum_methods``,
``shap_methods`` and ``lime``); this module owns what they share: turning a judge and an attribute into a
model, checking images and targets, the differentiability check gradient methods need, eval mode, splitting
work under the memory budget, timing, and flagging non-finite maps. Methods are chosen by name from a small
registry (:func:`methods`, :func:`register_method`).

Conventions: images are float32 ``[0, 1]`` N×C×H×W; the model maps them to N×K scores (logits) or N scores
(a discriminator's realness); ``maps`` are N×1×H×W (channels summed, sign kept) and ``channel_maps``
N×C×H×W when the method has them and ``channels=True``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, ExplainError
from auditkit.explain._budget import memory_budget as _resolve_budget
from auditkit.explain._budget import rows_per_batch
from auditkit.explain._inputs import check_images

if TYPE_CHECKING:
    from auditkit.bias.judge import Judge


@dataclass(frozen=True)
class Method:
    """A registered attribution method.

    Attributes
    ----------
    name
        The name :func:`explain` takes.
    run
        ``run(model, images, target, *, seed, budget, **options) -> (maps, delta)``: ``maps`` N×C×H×W or
        N×1×H×W on any device, ``delta`` a per-image convergence delta or ``None``.
    defaults
        Every option the method accepts, with its default (unknown options are rejected).
    gradient
        Needs a differentiable torch model.
    stochastic
        The result depends on ``seed``.
    signed
        Maps take both signs (rendered with a diverging colour map around zero).
    library
        The package that computes it (its version goes into the record).
    """

    name: str
    run: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]
    defaults: Mapping[str, Any]
    gradient: bool
    stochastic: bool
    signed: bool
    library: str
    description: str = ""


_REGISTRY: dict[str, Method] = {}
_ALIASES = {"ig": "integrated_gradients", "gradcam": "grad_cam", "ixg": "input_x_gradient"}


def register_method(method: Method) -> None:
    """Add (or replace) a method in the registry under ``method.name``."""
    _REGISTRY[method.name] = method


def methods() -> dict[str, Method]:
    """The registered methods by name."""
    _load_builtin()
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    """The method called ``name`` (aliases: ``ig``, ``gradcam``, ``ixg``); ``ConfigError`` if unknown."""
    _load_builtin()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ConfigError(f"unknown attribution method {name!r}; known: {sorted(_REGISTRY)}.")
    return _REGISTRY[key]


@dataclass
class Attribution:
    """An attribution map and the record of how it was made.

    Attributes
    ----------
    method
        The method's registry name.
    maps
        N×1×H×W float32 (CPU): the attribution of every pixel, channels summed.
    channel_maps
        N×C×H×W float32 (CPU) when asked for with ``channels=True`` and the method has them, else ``None``.
    target
        int64 N: the output index explained for each image.
    options
        Every option the method ran with, defaults included.
    seed
        The seed (it matters for stochastic methods and the ``"noise"`` baseline).
    seconds
        Wall-clock time of the computation.
    delta
        Per-image convergence delta (integrated gradients, DeepLift) or ``None``.
    nonfinite
        Indices of images whose map has NaN or infinite entries (also warned about).
    signed
        Whether the maps take both signs.
    versions
        The computing library and its version.
    """

    method: str
    maps: torch.Tensor
    channel_maps: torch.Tensor | None
    target: torch.Tensor
    options: dict[str, Any]
    seed: int
    seconds: float
    delta: torch.Tensor | None
    nonfinite: list[int]
    signed: bool
    versions: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """The record without the maps, JSON-safe (tensors in options are summarised by shape)."""
        return {
            "method": self.method,
            "options": {k: _json_safe(v) for k, v in sorted(self.options.items())},
            "seed": self.seed,
            "seconds": self.seconds,
            "n": len(self),
            "shape": list(self.maps.shape[1:]),
            "target": self.target.tolist(),
            "delta": None if self.delta is None else [_finite_or_none(v) for v in self.delta.tolist()],
            "max_abs_delta": None if self.delta is None else _finite_or_none(self.delta.abs().max().item()),
            "nonfinite": list(self.nonfinite),
            "signed": self.signed,
            "versions": dict(self.versions),
        }


def explain(
    model: nn.Module | Judge | Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | str | None = None,
    method: str = "integrated_gradients",
    *,
    attribute: str | None = None,
    channels: bool = False,
    seed: int = 0,
    memory_budget: int | float | str | None = None,
    progress: bool = False,
    **options: Any,
) -> Attribution:
    """Attribute a model's output on ``images`` to their pixels.

    Parameters
    ----------
    model
        A torch module mapping N×C×H×W images to N×K scores (or N scores), a :class:`~auditkit.Judge`
        (with ``attribute``), or for perturbation methods (``occlusion``, ``lime``, ``shap_partition``) any
        callable doing the same. The model runs in eval mode; its own mode is restored afterwards.
    images
        float32 ``[0, 1]`` N×C×H×W, on any device (moved to the model's).
    target
        The output index explained: one int for all images, one per image, a value name of the judge's
        ``attribute``, or ``None``/``"predicted"`` for each image's highest-scoring output.
    method
        A registered name: ``integrated_gradients`` (``ig``), ``saliency``, ``input_x_gradient``,
        ``grad_cam``, ``occlusion``, ``deeplift``, ``shap_gradient``, ``shap_partition``, ``lime``.
    attribute
        With a judge: which attribute's head to explain.
    channels
        Also keep per-channel maps (``Attribution.channel_maps``) when the method has them.
    seed
        Seeds stochastic methods and the ``"noise"`` baseline; recorded.
    memory_budget
        Bytes (or ``"512MB"``) one batch of expanded inputs may take; default ``$AUDITKIT_MEMORY_BUDGET`` or
        512 MiB. Work is split to fit.
    progress
        Show a tqdm bar over image chunks.
    **options
        The method's own options (see ``methods()[name].defaults``); unknown ones raise ``ConfigError``.

    Returns
    -------
    Attribution
        The maps and the record (method, options, seed, runtime, convergence delta, non-finite images).

    Raises
    ------
    ExplainError
        A gradient method on a model whose output is not differentiable in its input (use ``lime``,
        ``occlusion`` or ``shap_partition``), or a model output of the wrong shape or not finite.
    """
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        raise ConfigError(
            f"{spec.name} does not take option(s) {unknown}; it takes {sorted(spec.defaults) or 'none'}."
        )
    opts = {**spec.defaults, **options}
    budget = _resolve_budget(memory_budget)
    module, vocab = _as_module(model, attribute, spec)
    images = check_images(images)
    seed = _check_seed(seed)
    device = _module_device(module)

    start = time.perf_counter()
    with _eval_mode(module):
        k = _check_output(module, images[:1].to(device), spec)
        targets = _resolve_target(module, images, target, k, vocab, device)
        chunk = rows_per_batch(_row_bytes(images), budget)
        parts: list[torch.Tensor] = []
        deltas: list[torch.Tensor] = []
        has_delta = False
        for lo in tqdm(range(0, images.shape[0], chunk), desc=spec.name, disable=not progress, unit="chunk"):
            # gradient methods differentiate w.r.t. x; asking up front keeps Captum from warning
            x = images[lo : lo + chunk].to(device).requires_grad_(spec.gradient)
            t = targets[lo : lo + chunk].to(device)
            maps, delta = spec.run(module, x, t, seed=seed, budget=budget, **opts)
            parts.append(_check_maps(maps, x, spec.name).detach().float().cpu())
            if delta is not None:
                has_delta = True
                deltas.append(delta.detach().float().cpu().reshape(-1))
    seconds = time.perf_counter() - start

    full = torch.cat(parts)
    pixel = full.sum(dim=1, keepdim=True) if full.shape[1] > 1 else full
    nonfinite = (~torch.isfinite(pixel.flatten(1)).all(dim=1)).nonzero().flatten().tolist()
    if nonfinite:
        warnings.warn(
            f"{spec.name} produced NaN or infinite attributions for image(s) {nonfinite[:10]}"
            f"{' …' if len(nonfinite) > 10 else ''}; they are flagged in Attribution.nonfinite and fail the "
            "explanation-quality checks. Check the model for NaN outputs on these images.",
            stacklevel=2,
        )
    return Attribution(
        method=spec.name,
        maps=pixel,
        channel_maps=full if channels and full.shape[1] == images.shape[1] else None,
        target=targets.cpu(),
        options=opts,
        seed=seed,
        seconds=seconds,
        delta=torch.cat(deltas) if has_delta else None,
        nonfinite=nonfinite,
        signed=spec.signed or bool((pixel < 0).any()),
        versions=_versions(spec.library),
    )


# --------------------------------------------------------------------------- targets of explanation


class _ScoreModule(nn.Module):
    """``images -> N×1`` from a module returning one score per image (a discriminator's realness)."""

    def __init__(self, net: nn.Module, label: int | None) -> None:
        super().__init__()
        self.net = net
        self.label = label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.label is None:
            return self.net(x).reshape(x.shape[0], -1)
        # one label for every row: attribution methods expand the batch (steps, windows, samples)
        labels = torch.full((x.shape[0],), self.label, dtype=torch.int64, device=x.device)
        return self.net(x, labels).reshape(x.shape[0], -1)


def discriminator_score(discriminator: nn.Module, label: int | None = None) -> nn.Module:
    """A GAN discriminator as an explainable model: ``images -> N×1`` realness logits (explain target 0).

    A projection discriminator scores an image *as* a class: pass that class index as ``label`` (it is
    used for every image, so explain the images of each class in their own call).
    """
    if label is not None and (isinstance(label, bool) or not isinstance(label, int) or label < 0):
        raise ConfigError(f"label must be a non-negative class index; got {label!r}.")
    return _ScoreModule(discriminator, label).eval()


class _CallableModule(nn.Module):
    """A plain callable as a module, for perturbation methods (it is never differentiated)."""

    def __init__(self, fn: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.differentiable = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.fn(x)
        return torch.as_tensor(out, dtype=torch.float32, device=x.device)


def _as_module(model: Any, attribute: str | None, spec: Method) -> tuple[nn.Module, tuple[str, ...] | None]:
    from auditkit.bias.judge import Judge  # the judge module imports torch models; import on use

    if isinstance(model, Judge):
        if attribute is None:
            raise ConfigError(f"explaining a judge needs attribute=…; it has {list(model.attributes)}.")
        return model.head(attribute), model.attributes[attribute]
    if attribute is not None:
        raise ConfigError("attribute=… applies to a Judge only; pass the module of that attribute instead.")
    if isinstance(model, nn.Module):
        return model, None
    if callable(model):
        if spec.gradient:
            raise ExplainError(
                f"{spec.name} needs gradients, but the model is a plain callable "
                f"({type(model).__name__}), not a torch module. Use method='lime', 'occlusion' or "
                "'shap_partition', which only call the model."
            )
        return _CallableModule(model), None
    raise ConfigError(f"model must be a torch module, a Judge or a callable; got {type(model).__name__}.")


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}.")
    return seed


def _module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


def _check_output(module: nn.Module, probe: torch.Tensor, spec: Method) -> int:
    """Run the model on one image; return the number of outputs K and check differentiability."""
    probe = probe.clone().requires_grad_(spec.gradient)
    with torch.set_grad_enabled(spec.gradient):
        try:
            out = module(probe)
        except RuntimeError as exc:
            raise ExplainError(f"the model failed on an input of shape {tuple(probe.shape)}: {exc}") from None
    if not isinstance(out, torch.Tensor):
        raise ExplainError(f"the model must return a tensor of scores; got {type(out).__name__}.")
    if out.ndim == 1:
        raise ExplainError(
            "the model returns one score per image (shape N); wrap it with "
            "auditkit.explain.discriminator_score(model) so it returns N×1."
        )
    if out.ndim != 2 or out.shape[0] != 1:
        raise ExplainError(f"the model must return N×K scores; for one image it returned {tuple(out.shape)}.")
    if not torch.isfinite(out).all():
        raise ExplainError("the model returned NaN or infinite scores; attributions would be meaningless.")
    if spec.gradient and not out.requires_grad:
        raise ExplainError(
            f"{spec.name} needs gradients, but the model's output is not differentiable in its input "
            "(no autograd graph: a no_grad block, numpy, an exported graph or a detach inside). Use "
            "method='lime', 'occlusion' or 'shap_partition', which only call the model."
        )
    return int(out.shape[1])


def _resolve_target(
    module: nn.Module,
    images: torch.Tensor,
    target: Any,
    k: int,
    vocab: tuple[str, ...] | None,
    device: torch.device,
) -> torch.Tensor:
    n = images.shape[0]
    if target is None or (isinstance(target, str) and target == "predicted"):
        with torch.no_grad():
            return torch.cat(
                [module(images[lo : lo + 256].to(device)).argmax(dim=1).cpu() for lo in range(0, n, 256)]
            )
    if isinstance(target, str):
        if vocab is None or target not in vocab:
            known = f"values {list(vocab)}" if vocab else "an int index"
            raise ConfigError(f"unknown target {target!r}; use {known} or 'predicted'.")
        target = vocab.index(target)
    if isinstance(target, int) and not isinstance(target, bool):
        t = torch.full((n,), target, dtype=torch.int64)
    else:
        t = torch.as_tensor(target).flatten()
        if t.is_floating_point() or t.dtype == torch.bool or t.numel() != n:
            raise ConfigError(f"target must be one int or {n} ints (one per image); got {target!r}.")
        t = t.long()
    if t.min() < 0 or t.max() >= k:
        raise ConfigError(
            f"target indices must lie in [0, {k}) for a model with {k} outputs; got {t.tolist()}."
        )
    return t


def _row_bytes(images: torch.Tensor) -> int:
    return math.prod(images.shape[1:]) * images.element_size()


def _check_maps(maps: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    n, c, h, w = x.shape
    if maps.shape not in ((n, c, h, w), (n, 1, h, w)):
        raise ExplainError(f"{name} returned maps of shape {tuple(maps.shape)} for images {tuple(x.shape)}.")
    return maps


def _versions(library: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in (library, "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, nn.Module):
        return type(value).__name__
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return repr(value)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


_LOADED = False


def _load_builtin() -> None:
    """Import the modules that register the built-in methods (captum, shap and lime import slowly)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import auditkit.explain.captum_methods  # noqa: F401
    import auditkit.explain.lime  # noqa: F401
    import auditkit.explain.shap_methods  # noqa: F401


__all__ = [
    "Attribution",
    "Method",
    "discriminator_score",
    "explain",
    "get_method",
    "methods",
    "register_method",
]
