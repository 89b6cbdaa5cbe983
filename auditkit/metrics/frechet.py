"""Fréchet distance between Gaussians fitted to features (the FID formula), in float64.

    d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½

The trace of the matrix square root is computed from a symmetric eigenvalue problem instead of
``scipy.linalg.sqrtm`` (a Schur decomposition of a non-symmetric matrix): with Σ₁ = L Lᵀ, the matrix
Lᵀ Σ₂ L is symmetric positive semi-definite and has the eigenvalues of Σ₁ Σ₂, so
tr (Σ₁ Σ₂)^½ = Σ √λᵢ(Lᵀ Σ₂ L). L is a Cholesky factor when Σ₁ is positive definite, else the symmetric
square root from ``eigh`` (rank-deficient covariances, fewer samples than dimensions). Round-off can make
tiny eigenvalues negative; they are clipped to 0, which is what the real part of sqrtm gives too.

A :class:`FrechetReference` keeps the factor of a reference covariance so that auditing many generators
against one data set pays for it once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from auditkit.errors import DataError

ArrayLike = torch.Tensor | np.ndarray


def _as_float64(x: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    t = t.to(device="cpu", dtype=torch.float64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} contains NaN or infinite values; check the features it was computed from.")
    return t


def feature_statistics(features: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (as ``numpy.cov(rowvar=False)``) of N×D features, in float64."""
    f = _as_float64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise DataError(f"features must be an N×D matrix with N ≥ 2; got shape {tuple(f.shape)}.")
    mu = f.mean(dim=0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


class FeatureStats:
    """Streaming, mergeable mean/covariance accumulator (float64 sums of x and xxᵀ).

    Batches are centred on the first batch's mean before accumulating, which keeps the float64 sums well
    conditioned for features far from the origin; shards merge by adding counts and sums, which is what
    a distributed all-reduce needs.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, batch: ArrayLike) -> FeatureStats:
        """Add an N×D batch of features."""
        f = _as_float64(batch, "features batch")
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise DataError(f"features batch must be N×{self.dim}; got shape {tuple(f.shape)}.")
        if self.shift is None:
            self.shift = f.mean(dim=0) if len(f) else torch.zeros(self.dim, dtype=torch.float64)
        c = f - self.shift
        self.n += f.shape[0]
        self.sum += c.sum(dim=0)
        self.outer += c.T @ c
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold another accumulator (e.g. another shard's) into this one."""
        if other.dim != self.dim:
            raise DataError(f"cannot merge statistics of dimension {other.dim} into {self.dim}.")
        if other.n == 0:
            return self
        if self.shift is None:
            self.shift = other.shift.clone()
        # Re-express the other's sums around this shift: Σ(x−a)(x−a)ᵀ with x−a = (x−b) + (b−a).
        delta = other.shift - self.shift
        self.outer += other.outer + torch.outer(other.sum, delta) + torch.outer(delta, other.sum)
        self.outer += other.n * torch.outer(delta, delta)
        self.sum += other.sum + other.n * delta
        self.n += other.n
        return self

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased covariance of everything added so far."""
        if self.n < 2 or self.shift is None:
            raise DataError(f"need at least 2 feature vectors for a covariance; have {self.n}.")
        m = self.sum / self.n
        sigma = (self.outer - self.n * torch.outer(m, m)) / (self.n - 1)
        return self.shift + m, (sigma + sigma.T) / 2


def _check_pair(mu: torch.Tensor, sigma: torch.Tensor, which: str) -> None:
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(
            f"mu{which} must be a D vector and sigma{which} a D×D matrix; got shapes {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}."
        )


def _sqrt_factor(sigma: torch.Tensor) -> torch.Tensor:
    """A matrix L with L Lᵀ = Σ: Cholesky when Σ is positive definite, else the eigen square root."""
    factor, info = torch.linalg.cholesky_ex(sigma)
    if int(info) == 0:
        return factor
    w, v = torch.linalg.eigh(sigma)
    return (v * w.clamp(min=0).sqrt()) @ v.T


@dataclass(frozen=True)
class FrechetReference:
    """Statistics of a reference set with the factor of its covariance, computed once."""

    mu: torch.Tensor
    sigma: torch.Tensor
    factor: torch.Tensor
    n: int | None = None

    @classmethod
    def from_stats(cls, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> FrechetReference:
        """Build from a mean and covariance (``n``: sample count, for the low-sample warning)."""
        m, s = _as_float64(mu, "mu1"), _as_float64(sigma, "sigma1")
        _check_pair(m, s, "1")
        s = (s + s.T) / 2
        return cls(m, s, _sqrt_factor(s), n)

    @classmethod
    def from_features(cls, features: ArrayLike) -> FrechetReference:
        """Build from N×D reference features."""
        mu, sigma = feature_statistics(features)
        return cls.from_stats(mu, sigma, n=int(np.shape(features)[0]))

    def distance(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> float:
        """Fréchet distance from this reference to the Gaussian (``mu``, ``sigma``)."""
        m2, s2 = _as_float64(mu, "mu2"), _as_float64(sigma, "sigma2")
        _check_pair(m2, s2, "2")
        if m2.shape != self.mu.shape:
            raise DataError(f"feature dimensions differ: reference {self.mu.shape[0]}, other {m2.shape[0]}.")
        _warn_low_samples(self.mu.shape[0], (self.n, n))
        s2 = (s2 + s2.T) / 2
        inner = self.factor.T @ s2 @ self.factor
        eig = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0)
        diff = self.mu - m2
        value = diff @ diff + self.sigma.trace() + s2.trace() - 2 * eig.sqrt().sum()
        return float(value)


def frechet_distance(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    *,
    n1: int | None = None,
    n2: int | None = None,
) -> float:
    """Fréchet distance between N(``mu1``, ``sigma1``) and N(``mu2``, ``sigma2``), in float64.

    ``n1`` and ``n2`` (sample counts, optional) enable the warning that a covariance estimated from fewer
    samples than dimensions is rank-deficient and biases the distance.
    """
    return FrechetReference.from_stats(mu1, sigma1, n=n1).distance(mu2, sigma2, n=n2)


def fid_from_features(real: ArrayLike, fake: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two N×D feature sets."""
    mu2, s2 = feature_statistics(fake)
    return FrechetReference.from_features(real).distance(mu2, s2, n=int(np.shape(fake)[0]))


def _warn_low_samples(dim: int, counts: Iterable[int | None]) -> None:
    low = [n for n in counts if n is not None and n < dim]
    if low:
        warnings.warn(
            f"{min(low)} samples for {dim}-dimensional features: the covariance is rank-deficient and the "
            f"Fréchet distance is biased upwards; use at least {dim} samples (10 000 or more for FID).",
            stacklevel=3,
        )


__all__ = [
    "FeatureStats",
    "FrechetReference",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
]
