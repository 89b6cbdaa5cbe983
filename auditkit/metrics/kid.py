"""Kernel Inception Distance: the unbiased MMD² under a polynomial kernel, averaged over random subsets.

    k(x, y) = (γ x·y + c)^d,  γ = 1/D, c = 1, d = 3 by default (Bińkowski et al. 2018)

    MMD²ᵤ = Σ_{i≠j} k(xᵢ, xⱼ) / m(m−1) + Σ_{i≠j} k(yᵢ, yⱼ) / m(m−1) − 2 Σ_{i,j} k(xᵢ, yⱼ) / m²

The definition is torchmetrics' ``KernelInceptionDistance`` (itself torch-fidelity's and the paper's):
``subsets`` draws of ``subset_size`` samples without replacement from each set, the mean and the population
standard deviation of the per-subset MMD². Why hand-written: torchmetrics only offers it as a stateful
``Metric`` around an Inception network and loops over subsets in Python; this is the functional core over
features, in float64, with subsets evaluated in batches (``bmm``) under a memory budget. The subsets are
drawn as torchmetrics draws them (per subset a ``randperm`` of the real set, then of the fake set) from a
``torch.Generator`` seeded with ``seed``, so ``seed=s`` reproduces torchmetrics after
``torch.manual_seed(s)`` on CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from auditkit.errors import ConfigError, DataError

# Bytes of float64 work memory per batch of subsets (gathered features + three m×m kernel matrices).
_BATCH_BYTES = 256 * 2**20


def _features(x: torch.Tensor | np.ndarray, name: str, device: torch.device | None = None) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x))
    t = t.to(device=device if device is not None else t.device, dtype=torch.float64)
    if t.ndim != 2 or t.shape[1] < 1:
        raise DataError(f"{name} features must be an N×D matrix; got shape {tuple(t.shape)}.")
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} features contain NaN or infinite values; check the feature extractor.")
    return t


def _offdiag_kernel_sum(a: torch.Tensor, b: torch.Tensor, gamma: float, coef: float, degree: int, same: bool):
    """Per-batch Σ k(aᵢ, bⱼ) over all pairs, or over i ≠ j when ``a`` and ``b`` are the same sample."""
    k = torch.bmm(a, b.mT).mul_(gamma).add_(coef).pow_(degree)
    total = k.sum(dim=(1, 2))
    return total - k.diagonal(dim1=1, dim2=2).sum(dim=1) if same else total


def _mmd2_batched(x: torch.Tensor, y: torch.Tensor, gamma: float, coef: float, degree: int) -> torch.Tensor:
    """Unbiased MMD² for each of B pairs of m-sample subsets, ``x`` and ``y`` of shape B×m×D."""
    m = x.shape[1]
    within = _offdiag_kernel_sum(x, x, gamma, coef, degree, True) + _offdiag_kernel_sum(
        y, y, gamma, coef, degree, True
    )
    between = _offdiag_kernel_sum(x, y, gamma, coef, degree, False)
    return within / (m * (m - 1)) - 2 * between / m**2


def polynomial_mmd2(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
) -> float:
    """Unbiased MMD² between two equally sized m×D samples under k(x, y) = (γ x·y + c)^d (γ = 1/D)."""
    a = _features(x, "x")
    b = _features(y, "y", device=a.device)
    if a.shape != b.shape or a.shape[0] < 2:
        raise DataError(
            f"x and y must be m×D samples of the same shape with m ≥ 2; got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )
    gamma = 1.0 / a.shape[1] if gamma is None else float(gamma)
    return float(_mmd2_batched(a[None], b[None], gamma, coef, degree)[0])


def kernel_inception_distance(
    real: torch.Tensor | np.ndarray,
    fake: torch.Tensor | np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between two feature sets: mean and standard deviation of the unbiased MMD² over subsets.

    Parameters
    ----------
    real, fake
        N×D features (e.g. Inception pool features); tensors are evaluated on their device, in float64.
    subsets, subset_size
        Number of random subsets and samples per subset (drawn without replacement from each set).
    degree, gamma, coef
        Polynomial kernel (γ x·y + c)^d; ``gamma=None`` means 1/D.
    seed
        Seed of the ``torch.Generator`` that draws the subsets (same seed, same numbers).

    Returns
    -------
    mean, std
        Mean and population standard deviation (as torchmetrics and torch-fidelity) of the MMD² values.

    Raises
    ------
    ConfigError
        If ``subset_size`` exceeds either set (lower it, or give more samples), or an option is invalid.
    DataError
        If the features are not N×D, differ in D, or contain NaN/infinity.
    """
    r = _features(real, "real")
    f = _features(fake, "fake", device=r.device)
    if r.shape[1] != f.shape[1]:
        raise DataError(
            f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}; both must come "
            "from the same feature extractor."
        )
    if not (isinstance(subsets, int) and subsets >= 1):
        raise ConfigError(f"subsets must be an integer ≥ 1; got {subsets!r}.")
    if not (isinstance(subset_size, int) and subset_size >= 2):
        raise ConfigError(
            f"subset_size must be an integer ≥ 2 (the estimator is unbiased); got {subset_size!r}."
        )
    if not (isinstance(degree, int) and degree >= 1):
        raise ConfigError(f"degree must be a positive integer; got {degree!r}.")
    if subset_size > min(len(r), len(f)):
        raise ConfigError(
            f"subset_size {subset_size} exceeds the samples available (real {len(r)}, fake {len(f)}); "
            "lower subset_size or provide more samples."
        )
    gamma = 1.0 / r.shape[1] if gamma is None else float(gamma)

    # Draw every subset first, in torchmetrics' order, so batching does not change the random stream.
    generator = torch.Generator().manual_seed(seed)
    idx_real = torch.empty(subsets, subset_size, dtype=torch.long)
    idx_fake = torch.empty(subsets, subset_size, dtype=torch.long)
    for s in range(subsets):
        idx_real[s] = torch.randperm(len(r), generator=generator)[:subset_size]
        idx_fake[s] = torch.randperm(len(f), generator=generator)[:subset_size]
    idx_real, idx_fake = idx_real.to(r.device), idx_fake.to(r.device)

    per_subset = 8 * (2 * subset_size * r.shape[1] + 3 * subset_size**2)
    batch = max(1, _BATCH_BYTES // per_subset)
    scores = torch.cat(
        [
            _mmd2_batched(r[idx_real[i : i + batch]], f[idx_fake[i : i + batch]], gamma, coef, degree)
            for i in range(0, subsets, batch)
        ]
    )
    return float(scores.mean()), float(scores.std(unbiased=False))


__all__ = ["kernel_inception_distance", "polynomial_mmd2"]
