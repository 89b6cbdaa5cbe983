"""Captum's attribution methods behind :func:`auditkit.explain.explain`.

Each adapter calls Captum with the options it is given and adds only what Captum leaves to the caller:
baselines by name (:mod:`auditkit.explain.baselines`), internal batch sizes from the memory budget, the
last convolution found for Grad-CAM, and a copy of the model with in-place activations switched off for
DeepLift (its hooks need each ReLU's input and output to be distinct tensors).
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
from captum.attr import (
    DeepLift,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from torch import nn

from auditkit.errors import ConfigError, ExplainError
from auditkit.explain._budget import rows_per_batch
from auditkit.explain.baselines import make_baseline
from auditkit.explain.core import Method, register_method


def _row_bytes(x: torch.Tensor) -> int:
    return math.prod(x.shape[1:]) * x.element_size()


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    baseline: str | float | torch.Tensor = "black",
    blur_sigma: float | None = None,
    n_steps: int = 50,
    integration: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients from ``baseline`` (Sundararajan et al. 2017), with the convergence delta."""
    if n_steps < 1:
        raise ConfigError(f"n_steps must be at least 1; got {n_steps}.")
    base = make_baseline(x, baseline, seed=seed, blur_sigma=blur_sigma)
    batch = internal_batch_size or rows_per_batch(_row_bytes(x), budget)
    attr, delta = IntegratedGradients(model).attribute(
        x,
        baselines=base,
        target=target,
        n_steps=n_steps,
        method=integration,
        internal_batch_size=max(batch, x.shape[0]),  # captum needs at least one row per image per pass
        return_convergence_delta=True,
    )
    return attr, delta


def saliency(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, seed: int, budget: int, abs: bool = True
) -> tuple[torch.Tensor, None]:
    """The gradient of the target score (Simonyan et al. 2014); absolute value by default, as Captum."""
    return Saliency(model).attribute(x, target=target, abs=abs), None


def input_x_gradient(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, seed: int, budget: int
) -> tuple[torch.Tensor, None]:
    """Input times gradient (Shrikumar et al. 2016)."""
    return InputXGradient(model).attribute(x, target=target), None


def last_conv(model: nn.Module) -> tuple[str, nn.Module]:
    """The last ``nn.Conv2d`` in the model's module order (Grad-CAM's default layer), with its name."""
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ExplainError(
            "grad_cam found no nn.Conv2d in the model; pass layer=<module or dotted name> of a layer whose "
            "output is a spatial feature map, or use another method."
        )
    return convs[-1]


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    layer: str | nn.Module | None = None,
    relu: bool = True,
    interpolate: str = "bilinear",
) -> tuple[torch.Tensor, None]:
    """Grad-CAM (Selvaraju et al. 2017) on ``layer`` (default: the last convolution), upsampled."""
    if layer is None:
        _, module = last_conv(model)
    elif isinstance(layer, str):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            raise ConfigError(f"the model has no layer {layer!r}; its layers: {names[:30]}.") from None
    else:
        module = layer
    cam = LayerGradCam(model, module).attribute(x, target=target, relu_attributions=relu)
    if cam.ndim != 4:
        raise ExplainError(
            f"grad_cam's layer output has shape {tuple(cam.shape)}; pick a layer with a spatial map "
            "(N×C×h×w)."
        )
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode=interpolate), None


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    window: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    baseline: str | float | torch.Tensor = "black",
    blur_sigma: float | None = None,
) -> tuple[torch.Tensor, None]:
    """Occlusion (Zeiler & Fergus 2014): the score drop when a window of all channels is set to the baseline.

    ``window`` defaults to one eighth of each side (at least 2 pixels), ``stride`` to half the window.
    """
    c, h, w = x.shape[1:]
    win = _pair(window, (max(2, h // 8), max(2, w // 8)), "window")
    step = _pair(stride, (max(1, win[0] // 2), max(1, win[1] // 2)), "stride")
    base = make_baseline(x, baseline, seed=seed, blur_sigma=blur_sigma)
    per_eval = max(1, rows_per_batch(_row_bytes(x), budget, grad=False) // x.shape[0])
    attr = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(c, *win),
        strides=(c, *step),
        baselines=base,
        target=target,
        perturbations_per_eval=per_eval,
    )
    return attr, None


def deeplift(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    baseline: str | float | torch.Tensor = "black",
    blur_sigma: float | None = None,
    multiply_by_inputs: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepLift, rescale rule (Shrikumar et al. 2017), on a copy of the model without in-place activations.

    Only activations that are modules get DeepLift's rule; functional ones (``F.relu``) pass gradients.
    """
    net = without_inplace(model)
    base = make_baseline(x, baseline, seed=seed, blur_sigma=blur_sigma)
    with warnings.catch_warnings():  # captum announces the hooks it sets on every call
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
        attr, delta = DeepLift(net, multiply_by_inputs=multiply_by_inputs).attribute(
            x, baselines=base, target=target, return_convergence_delta=True
        )
    return attr, delta


def without_inplace(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose modules have ``inplace=False`` (the caller's model is untouched)."""
    net = copy.deepcopy(model)
    for m in net.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    return net.eval()


def _pair(value: int | tuple[int, int] | None, default: tuple[int, int], label: str) -> tuple[int, int]:
    if value is None:
        return default
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ConfigError(f"{label} must be a positive int or a pair (height, width); got {value!r}.")
    return pair  # type: ignore[return-value]


register_method(
    Method(
        "integrated_gradients",
        integrated_gradients,
        {"baseline": "black", "blur_sigma": None, "n_steps": 50, "integration": "gausslegendre",
         "internal_batch_size": None},
        gradient=True, stochastic=False, signed=True, library="captum",
        description="Integrated gradients along the straight path from a baseline (black, blurred, noise).",
    )
)  # fmt: skip
register_method(
    Method("saliency", saliency, {"abs": True}, gradient=True, stochastic=False, signed=False,
           library="captum", description="Absolute gradient of the target score.")
)  # fmt: skip
register_method(
    Method("input_x_gradient", input_x_gradient, {}, gradient=True, stochastic=False, signed=True,
           library="captum", description="Input times gradient.")
)  # fmt: skip
register_method(
    Method("grad_cam", grad_cam, {"layer": None, "relu": True, "interpolate": "bilinear"}, gradient=True,
           stochastic=False, signed=False, library="captum",
           description="Grad-CAM on the last convolution (or layer=…), upsampled to the image.")
)  # fmt: skip
register_method(
    Method("occlusion", occlusion, {"window": None, "stride": None, "baseline": "black", "blur_sigma": None},
           gradient=False, stochastic=False, signed=True, library="captum",
           description="Score drop when a sliding window is set to the baseline.")
)  # fmt: skip
register_method(
    Method("deeplift", deeplift, {"baseline": "black", "blur_sigma": None, "multiply_by_inputs": True},
           gradient=True, stochastic=False, signed=True, library="captum",
           description="DeepLift rescale rule against a baseline.")
)  # fmt: skip
