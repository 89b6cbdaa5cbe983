"""SHAP's image explainers behind :func:`auditkit.explain.explain`.

``shap_gradient`` is ``shap.GradientExplainer`` (expected gradients: integrated gradients averaged over a
background set and random path points); ``shap_partition`` is ``shap.PartitionExplainer`` with SHAP's blur
image masker (hierarchical Owen values over pixel regions; it only calls the model). The adapters convert
between auditkit's N×C×H×W tensors and SHAP's layouts, pick each image's target output, and size SHAP's
batches from the memory budget.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from auditkit.errors import ConfigError, ExplainError
from auditkit.explain._budget import rows_per_batch
from auditkit.explain.baselines import make_baseline
from auditkit.explain.core import Method, register_method


def shap_gradient(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    background: str | float | torch.Tensor = "blurred",
    blur_sigma: float | None = None,
    nsamples: int = 200,
    local_smoothing: float = 0.0,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, None]:
    """``shap.GradientExplainer`` with ``background`` images (a name from ``baselines``, or a B×C×H×W tensor).

    A named background is built from the images explained (``"blurred"``: their blurred copies), so the
    result for an image depends on which images share its chunk; pass a fixed tensor for results that do
    not.
    """
    import shap  # imports numba and friends: only when used

    if nsamples < 1:
        raise ConfigError(f"nsamples must be at least 1; got {nsamples}.")
    if isinstance(background, torch.Tensor) and background.ndim == 4:
        data = background.to(x)
    else:
        data = make_baseline(x, background, seed=seed, blur_sigma=blur_sigma)
    size = batch_size or rows_per_batch(math.prod(x.shape[1:]) * 4, budget)
    explainer = shap.GradientExplainer(model, data, batch_size=size, local_smoothing=local_smoothing)
    values = explainer.shap_values(x, nsamples=nsamples, rseed=seed)
    values = np.asarray(values)  # N×C×H×W×K: one map per model output
    if values.ndim != 5:
        raise ExplainError(
            f"shap.GradientExplainer returned values of shape {values.shape}; expected N×C×H×W×K."
        )
    picked = values[np.arange(x.shape[0]), ..., target.cpu().numpy()]
    return torch.from_numpy(np.ascontiguousarray(picked)).float(), None


def shap_partition(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    blur: int | None = None,
    max_evals: int = 500,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, None]:
    """``shap.PartitionExplainer`` with the ``blur(k, k)`` image masker; ``blur`` defaults to a quarter side.

    Deterministic: the partition tree is built from the image shape and the masker blurs, nothing is drawn.
    """
    import shap

    if max_evals < 2:
        raise ConfigError(f"max_evals must be at least 2; got {max_evals}.")
    c, h, w = x.shape[1:]
    k = blur if blur is not None else max(3, min(h, w) // 4)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"blur must be a positive kernel size in pixels; got {blur!r}.")
    device = x.device

    def scores(batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(batch)).float().permute(0, 3, 1, 2).to(device)
        with torch.no_grad():
            return model(images).float().cpu().numpy()

    masker = shap.maskers.Image(f"blur({k},{k})", (h, w, c))
    explainer = shap.PartitionExplainer(scores, masker)
    size = batch_size or min(max_evals, rows_per_batch(math.prod(x.shape[1:]) * 4, budget, grad=False))
    hwc = x.permute(0, 2, 3, 1).cpu().numpy()
    out = np.zeros((x.shape[0], c, h, w), dtype=np.float32)
    targets = target.cpu().numpy()
    for t in np.unique(targets):  # SHAP explains one output list per call; group images by target
        rows = np.flatnonzero(targets == t)
        result = explainer(hwc[rows], max_evals=max_evals, batch_size=size, outputs=[int(t)], silent=True)
        out[rows] = np.transpose(np.asarray(result.values)[..., 0], (0, 3, 1, 2))
    return torch.from_numpy(out), None


register_method(
    Method("shap_gradient", shap_gradient,
           {"background": "blurred", "blur_sigma": None, "nsamples": 200, "local_smoothing": 0.0,
            "batch_size": None},
           gradient=True, stochastic=True, signed=True, library="shap",
           description="SHAP GradientExplainer (expected gradients) against a background set.")
)  # fmt: skip
register_method(
    Method("shap_partition", shap_partition, {"blur": None, "max_evals": 500, "batch_size": None},
           gradient=False, stochastic=False, signed=True, library="shap",
           description="SHAP PartitionExplainer with a blur image masker (Owen values over pixel regions).")
)  # fmt: skip
