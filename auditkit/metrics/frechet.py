"""Fréchet distance between Gaussians fitted to features (the FID formula), in float64.

    d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^½

Why hand-written: the usual implementations take ``scipy.linalg.sqrtm(Σ₁ Σ₂)`` (pytorch-fid; a complex
Schur decomposition of a non-symmetric matrix, ~14 s at 2048-d on two cores and prone to spurious
imaginary parts) or ``eigvals(Σ₁ Σ₂)`` (torchmetrics; a non-symmetric eigenproblem). Only the trace of the
square root is needed, and it comes from a *symmetric* eigenproblem: with any factor Σ₁ = L Lᵀ, the matrix
Lᵀ Σ₂ L is symmetric positive semi-definite with the eigenvalues of Σ₁ Σ₂, so

    tr (Σ₁ Σ₂)^½ = Σᵢ √λᵢ(Lᵀ Σ₂ L).

L is the Cholesky factor, and Lᵀ Σ₂ L is formed by LAPACK's ``dsygst`` (itype 2: the reduction step of the
generalised problem Σ₂ Σ₁ x = λ x), so the whole distance costs one Cholesky, one ``sygst`` and one
eigenvalues-only ``syevd`` — about 2.7 d³ flops, all in LAPACK through scipy. If Σ₁ is singular (fewer
samples than dimensions) the roles swap when Σ₂ is positive definite, else L is the symmetric square root
from ``eigh`` with round-off negatives clipped to 0. Eigenvalues of Lᵀ Σ₂ L that round-off makes slightly
negative are clipped to 0 too, which is what the real part of ``sqrtm`` gives.

Two shortcuts, both tested against the plain formula:

- :class:`FrechetReference` keeps the Cholesky factor of a reference covariance, so auditing many generators
  against one data set pays for it once;
- :func:`fid_from_features`, when both sets have fewer samples than dimensions, uses that the non-zero
  eigenvalues of Σ₁ Σ₂ are the squared singular values of A Bᵀ / √((n₁−1)(n₂−1)) (A, B the centred feature
  matrices): an n₁×n₂ SVD instead of a d×d eigenproblem.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import torch
from scipy.linalg import lapack

from auditkit.errors import DataError

ArrayLike = torch.Tensor | np.ndarray


# ---------------------------------------------------------------------------------------------------------
# Feature statistics


def _tensor64(x: ArrayLike, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """``x`` as a float64 tensor (on ``device``, else where it already is), rejecting NaN and infinity."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(x))
    t = t.to(device=device if device is not None else t.device, dtype=torch.float64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} contains NaN or infinite values; check the features it was computed from.")
    return t


def feature_statistics(features: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of N×D features, in float64.

    Parameters
    ----------
    features
        N×D tensor or array, N ≥ 2. Tensors stay on their device.

    Returns
    -------
    mu, sigma
        D vector and D×D matrix, equal to ``numpy.mean(axis=0)`` and ``numpy.cov(rowvar=False)``.
    """
    f = _tensor64(features, "features")
    if f.ndim != 2 or f.shape[0] < 2 or f.shape[1] < 1:
        raise DataError(f"features must be an N×D matrix with N ≥ 2; got shape {tuple(f.shape)}.")
    mu = f.mean(dim=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, (sigma + sigma.T) / 2


class FeatureStats:
    """Streaming, mergeable mean and covariance of feature batches (float64 sums around a shift).

    The state is a count ``n`` and the sums Σ(x − s) and Σ(x − s)(x − s)ᵀ around a shift ``s``. Plain sums
    of x and xxᵀ lose about log₁₀(‖μ‖²/σ²) digits to cancellation when the covariance is formed; around a
    shift close to the mean nothing cancels, so the float64 result matches ``numpy.cov`` to ~1e-13 even for
    features far from the origin. The shift is the first batch's mean unless given.

    Shards merge exactly with :meth:`merge` (it re-centres sums taken around different shifts). When every
    process is constructed with the same ``shift`` (e.g. zeros, or a reference mean), the state is purely
    additive: ``n``, ``sum`` and ``outer`` can be all-reduced with a sum (what a distributed metric needs).

    Parameters
    ----------
    dim
        Feature dimension D.
    shift
        Optional fixed shift (D vector); give the same one to every shard for sum-reducible state.
    device
        Where the sums live (default CPU); batches are moved there. Use the GPU for GPU features.
    """

    def __init__(self, dim: int, *, shift: ArrayLike | None = None, device: torch.device | str | None = None):
        if dim < 1:
            raise DataError(f"dim must be a positive feature dimension; got {dim}.")
        self.dim = dim
        self.device = torch.device(device if device is not None else "cpu")
        self.n = 0
        self.shift: torch.Tensor | None = None
        if shift is not None:
            self.shift = _tensor64(shift, "shift", self.device)
            if self.shift.shape != (dim,):
                raise DataError(
                    f"shift must be a vector of length {dim}; got shape {tuple(self.shift.shape)}."
                )
        self.sum = torch.zeros(dim, dtype=torch.float64, device=self.device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=self.device)

    def update(self, batch: ArrayLike) -> FeatureStats:
        """Add an N×D batch of features (N may be 0); returns ``self`` for chaining."""
        f = _tensor64(batch, "features batch", self.device)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise DataError(f"features batch must be N×{self.dim}; got shape {tuple(f.shape)}.")
        if f.shape[0] == 0:
            return self
        if self.shift is None:
            self.shift = f.mean(dim=0)
        c = f - self.shift
        self.n += f.shape[0]
        self.sum += c.sum(dim=0)
        self.outer += c.T @ c
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold another accumulator (another shard's) into this one; returns ``self``."""
        if other.dim != self.dim:
            raise DataError(f"cannot merge statistics of dimension {other.dim} into dimension {self.dim}.")
        if other.n == 0 or other.shift is None:
            return self
        o_shift, o_sum = other.shift.to(self.device), other.sum.to(self.device)
        o_outer = other.outer.to(self.device)
        if self.shift is None:
            self.shift = o_shift.clone()
        # Re-centre the other's sums on our shift a: with x − a = (x − b) + δ and δ = b − a,
        # Σ(x−a)(x−a)ᵀ = Σ(x−b)(x−b)ᵀ + Σ(x−b) δᵀ + δ Σ(x−b)ᵀ + n δδᵀ.
        delta = o_shift - self.shift
        self.outer += o_outer + torch.outer(o_sum, delta) + torch.outer(delta, o_sum)
        self.outer += other.n * torch.outer(delta, delta)
        self.sum += o_sum + other.n * delta
        self.n += other.n
        return self

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased covariance of everything added so far (float64, on ``device``)."""
        if self.n < 2 or self.shift is None:
            raise DataError(f"need at least 2 feature vectors for a covariance; have {self.n}.")
        m = self.sum / self.n
        sigma = (self.outer - self.n * torch.outer(m, m)) / (self.n - 1)
        return self.shift + m, (sigma + sigma.T) / 2


# ---------------------------------------------------------------------------------------------------------
# Fréchet distance


def _numpy64(x: ArrayLike, name: str) -> np.ndarray:
    a = x.detach().to("cpu", torch.float64).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = np.asarray(a, dtype=np.float64)
    if a.size and not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values; check the features it was computed from.")
    return a


def _check_stats(mu: np.ndarray, sigma: np.ndarray, which: str) -> None:
    if mu.ndim != 1 or mu.shape[0] < 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(
            f"mu{which} must be a D vector and sigma{which} a D×D matrix; got shapes {tuple(mu.shape)} "
            f"and {tuple(sigma.shape)}."
        )
    # A gross asymmetry means the caller passed something other than a covariance, of which LAPACK would
    # silently read one triangle. Compared tile by tile: a whole-matrix ``sigma - sigma.T`` walks memory
    # across rows and costs more than the Cholesky factorisation at 2048-d.
    tol = 1e-6 * float(np.abs(np.diagonal(sigma)).max())  # a covariance's largest entry is on its diagonal
    tile, dim = 256, sigma.shape[0]
    for i in range(0, dim, tile):
        for j in range(0, i + 1, tile):
            if np.abs(sigma[i : i + tile, j : j + tile] - sigma[j : j + tile, i : i + tile].T).max() > tol:
                raise DataError(
                    f"sigma{which} is not symmetric, so it is not a covariance matrix; pass the covariance "
                    "of the features (e.g. from auditkit.metrics.frechet.feature_statistics)."
                )


def _fortran(sigma: np.ndarray) -> np.ndarray:
    """A Fortran-ordered view of a symmetric matrix (its transpose), so LAPACK wrappers copy nothing odd."""
    return sigma.T if sigma.flags.c_contiguous else np.asfortranarray(sigma)


def _cholesky(sigma: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor (upper triangle left as garbage: LAPACK reads only the lower), or None."""
    factor, info = lapack.dpotrf(_fortran(sigma), lower=1, clean=0)
    return factor if info == 0 else None


def _symmetric_root(sigma: np.ndarray) -> np.ndarray:
    """Σ^½ from ``eigh``, negative round-off eigenvalues clipped to 0 (for singular covariances)."""
    w, v = scipy.linalg.eigh(sigma, check_finite=False)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _sqrt_eig_sum(symmetric: np.ndarray) -> float:
    """Σ √λᵢ over the eigenvalues of a symmetric PSD matrix (lower triangle read), negatives clipped."""
    w = scipy.linalg.eigh(
        symmetric, lower=True, eigvals_only=True, driver="evd", overwrite_a=True, check_finite=False
    )
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def _congruence(sigma: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Lower triangle of Lᵀ Σ L for a lower-triangular L, by LAPACK ``dsygst`` (about d³ flops)."""
    out, info = lapack.dsygst(_fortran(sigma), factor, itype=2, lower=1)
    if info != 0:  # only on illegal arguments, which the checks above exclude
        raise RuntimeError(f"LAPACK dsygst failed with info={info}")
    return out


def _warn_low_samples(dim: int, stacklevel: int, **counts: int | None) -> None:
    low = {name: n for name, n in counts.items() if n is not None and n < dim}
    if low:
        which = ", ".join(f"{name}={n}" for name, n in low.items())
        warnings.warn(
            f"Fréchet distance from fewer samples than feature dimensions ({which} < {dim}): the covariance "
            f"is rank-deficient and the distance is biased upwards; use at least {dim} samples per set "
            "(10 000 or more for a comparable FID).",
            UserWarning,
            stacklevel=stacklevel,
        )


class FrechetReference:
    """Reference statistics with the Cholesky factor of their covariance, computed once.

    ``ref.distance(mu, sigma)`` equals ``frechet_distance(ref.mu, ref.sigma, mu, sigma)`` but skips the
    reference's factorisation: the re-audit case (many generators, one reference set).

    Parameters
    ----------
    mu, sigma
        Reference mean (D) and covariance (D×D).
    n
        Number of samples behind them, if known (enables the fewer-samples-than-dimensions warning).
    """

    def __init__(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> None:
        m, s = _numpy64(mu, "mu1"), _numpy64(sigma, "sigma1")
        _check_stats(m, s, "1")
        self._mu, self._sigma, self.n = m, np.ascontiguousarray(s), n
        self._chol = _cholesky(s)
        self._root: np.ndarray | None = None  # symmetric square root, only if Σ₁ is singular

    @classmethod
    def from_stats(cls, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> FrechetReference:
        """Build from a mean and covariance (``n``: sample count, for the low-sample warning)."""
        return cls(mu, sigma, n)

    @classmethod
    def from_features(cls, features: ArrayLike) -> FrechetReference:
        """Build from N×D reference features."""
        mu, sigma = feature_statistics(features)
        return cls(mu, sigma, n=int(features.shape[0]))

    @property
    def mu(self) -> torch.Tensor:
        """Reference mean (float64, CPU)."""
        return torch.from_numpy(self._mu)

    @property
    def sigma(self) -> torch.Tensor:
        """Reference covariance (float64, CPU)."""
        return torch.from_numpy(self._sigma)

    def distance(self, mu: ArrayLike, sigma: ArrayLike, n: int | None = None) -> float:
        """Fréchet distance from this reference to N(``mu``, ``sigma``) (``n``: its sample count)."""
        return self._distance(mu, sigma, n, stacklevel=4)

    def _distance(self, mu: ArrayLike, sigma: ArrayLike, n: int | None, stacklevel: int) -> float:
        # stacklevel: for warnings.warn inside _warn_low_samples, so the warning points at the user's line.
        m2, s2 = _numpy64(mu, "mu2"), _numpy64(sigma, "sigma2")
        _check_stats(m2, s2, "2")
        if m2.shape != self._mu.shape:
            raise DataError(
                f"feature dimensions differ: reference {self._mu.shape[0]}, other {m2.shape[0]}; both sets "
                "must come from the same feature extractor."
            )
        _warn_low_samples(self._mu.shape[0], stacklevel, n1=self.n, n2=n)
        diff = self._mu - m2
        base = float(diff @ diff + np.trace(self._sigma) + np.trace(s2))
        return base - 2.0 * self._trace_sqrt_product(s2)

    def _trace_sqrt_product(self, s2: np.ndarray) -> float:
        if self._chol is not None:
            return _sqrt_eig_sum(_congruence(s2, self._chol))
        # Σ₁ singular: eig(Σ₁Σ₂) = eig(Σ₂Σ₁), so factor Σ₂ instead when it is positive definite.
        chol2 = _cholesky(s2)
        if chol2 is not None:
            return _sqrt_eig_sum(_congruence(self._sigma, chol2))
        if self._root is None:
            self._root = _symmetric_root(self._sigma)
        return _sqrt_eig_sum(self._root @ s2 @ self._root)


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

    Parameters
    ----------
    mu1, sigma1, mu2, sigma2
        Means (D) and covariances (D×D), tensors (any device) or arrays.
    n1, n2
        Sample counts behind the statistics, optional: a count below D warns that the covariance is
        rank-deficient and the distance biased.

    Returns
    -------
    float
        d², the FID when the statistics are Inception pool features. Round-off can make it slightly
        negative (about −1e-12 · tr Σ) for identical statistics; it is not clipped, as in the references.
    """
    return FrechetReference(mu1, sigma1, n1)._distance(mu2, sigma2, n2, stacklevel=4)


def _trace_sqrt_low_rank(a: torch.Tensor, b: torch.Tensor) -> float:
    """tr (Σ₁Σ₂)^½ from centred features: the nuclear norm of A Bᵀ / √((n₁−1)(n₂−1)).

    Σ₁Σ₂ = AᵀA BᵀB / c and (AᵀA BᵀB) shares its non-zero eigenvalues with A BᵀB Aᵀ = (A Bᵀ)(A Bᵀ)ᵀ,
    whose eigenvalues are the squared singular values of A Bᵀ.
    """
    scale = math.sqrt((a.shape[0] - 1) * (b.shape[0] - 1))
    return float(torch.linalg.svdvals(a @ b.T).sum()) / scale


def feature_pair(real: ArrayLike, fake: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets as float64 tensors, checked: N×D with N ≥ 2 each and the same D."""
    r, f = _tensor64(real, "real features"), _tensor64(fake, "fake features")
    for name, t in (("real", r), ("fake", f)):
        if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 1:
            raise DataError(f"{name} features must be an N×D matrix with N ≥ 2; got shape {tuple(t.shape)}.")
    if r.shape[1] != f.shape[1]:
        raise DataError(
            f"feature dimensions differ: real {r.shape[1]}, fake {f.shape[1]}; both sets must come from the "
            "same feature extractor."
        )
    return r, f


def fid_from_features(real: ArrayLike, fake: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two N×D feature sets (``real`` is set 1).

    When both sets have fewer samples than dimensions the trace term comes from an n₁×n₂ SVD of the
    centred features (same value, much cheaper); a warning says the estimate is biased then.
    """
    r, f = feature_pair(real, fake)
    (n1, dim), n2 = r.shape, f.shape[0]
    if n1 >= dim or n2 >= dim:
        mu2, s2 = feature_statistics(f)
        return FrechetReference.from_features(r)._distance(mu2, s2, n2, stacklevel=4)
    _warn_low_samples(dim, 3, n1=n1, n2=n2)
    f = f.to(r.device)
    mu1, mu2 = r.mean(dim=0), f.mean(dim=0)
    a, b = r - mu1, f - mu2
    traces = float(a.square().sum()) / (n1 - 1) + float(b.square().sum()) / (n2 - 1)
    return float((mu1 - mu2).square().sum()) + traces - 2.0 * _trace_sqrt_low_rank(a, b)


__all__ = [
    "FeatureStats",
    "FrechetReference",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
]
