"""Kernel Inception Distance: the unbiased MMD² with a cubic polynomial kernel, averaged over subsets.

k(x, y) = (γ x·y + c)^d with γ = 1/D, c = 1, d = 3 by default (Bińkowski et al. 2018). Subsets are drawn
as torchmetrics' ``KernelInceptionDistance`` draws them (a ``randperm`` of the real set, then of the fake
set, per subset), from a seeded ``torch.Generator``, so a given seed reproduces torchmetrics' numbers under
the same global seed; the standard deviation over subsets is the population one, as in torchmetrics and
torch-fidelity.
"""

from __future__ import annotations

import numpy as np
import torch

from auditkit.errors import ConfigError, DataError


def _features(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise DataError(f"{name} features must be an N×D matrix; got shape {tuple(t.shape)}.")
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} features contain NaN or infinite values.")
    return t


def polynomial_mmd2(
    x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0
) -> torch.Tensor:
    """Unbiased MMD² between two equally sized samples under the polynomial kernel."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    m = x.shape[0]
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def kernel_inception_distance(
    real: torch.Tensor | np.ndarray,
    fake: torch.Tensor | np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between two N×D feature sets: mean and standard deviation of MMD² over random subsets.

    Raises
    ------
    ConfigError
        If ``subset_size`` exceeds either set (lower it, or give more samples), or options are invalid.
    """
    r, f = _features(real, "real"), _features(fake, "fake")
    if r.shape[1] != f.shape[1]:
        raise DataError(f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}.")
    if subsets < 1 or subset_size < 2:
        raise ConfigError(f"need subsets ≥ 1 and subset_size ≥ 2; got {subsets} and {subset_size}.")
    if subset_size > min(len(r), len(f)):
        raise ConfigError(
            f"subset_size {subset_size} exceeds the samples available (real {len(r)}, fake {len(f)}); "
            "lower subset_size or provide more images."
        )
    generator = torch.Generator().manual_seed(seed)
    scores = []
    for _ in range(subsets):
        ri = torch.randperm(len(r), generator=generator)[:subset_size]
        fi = torch.randperm(len(f), generator=generator)[:subset_size]
        scores.append(polynomial_mmd2(r[ri], f[fi], degree, gamma, coef))
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))
