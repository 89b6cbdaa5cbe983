"""Fréchet distance and feature statistics against scipy, NumPy and torchmetrics.

Tolerances: 1e-6 relative against the scipy ``sqrtm`` formula and torchmetrics' ``eigvals`` formula
(both are less accurate than the symmetric eigenproblem, so the bound is theirs, not ours); 1e-10 relative
for statistics against ``numpy.cov``; 1e-12 where two auditkit paths do the same arithmetic.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import _compute_fid

from auditkit import DataError
from auditkit.metrics.frechet import (
    FeatureStats,
    FrechetReference,
    feature_statistics,
    fid_from_features,
    frechet_distance,
)


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The classic pytorch-fid formula: sqrtm of the product, real part, trace."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def torchmetrics_frechet(mu1, s1, mu2, s2) -> float:
    return float(_compute_fid(*(torch.as_tensor(np.asarray(v)) for v in (mu1, s1, mu2, s2))))


def gaussian_features(rng: np.random.Generator, dim: int, n: int, shift: float = 0.0) -> np.ndarray:
    """Features with standard deviations 0.2…2 along a random rotation: well-conditioned covariances."""
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    return (rng.standard_normal((n, dim)) * np.linspace(0.2, 2.0, dim)) @ rotation + shift


def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("dim", [16, 64, 256])
def test_matches_scipy_sqrtm_and_torchmetrics(dim: int) -> None:
    rng = np.random.default_rng(dim)
    a, b = gaussian_features(rng, dim, 4 * dim), gaussian_features(rng, dim, 4 * dim, shift=0.3)
    args = (*stats(a), *stats(b))
    ours = frechet_distance(*args)
    assert ours == pytest.approx(scipy_frechet(*args), rel=1e-6)
    assert ours == pytest.approx(torchmetrics_frechet(*args), rel=1e-6)
    # Same value from torch tensors (float32 in, float64 inside) as from arrays.
    as_tensors = [torch.from_numpy(v) for v in args]
    assert frechet_distance(*as_tensors) == pytest.approx(ours, rel=1e-12)


def test_identical_distributions_give_zero_and_distance_is_symmetric() -> None:
    rng = np.random.default_rng(0)
    mu, s = stats(gaussian_features(rng, 32, 500))
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-10 * np.trace(s)
    mu2, s2 = stats(gaussian_features(rng, 32, 500, shift=1.0))
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s), rel=1e-10)


def test_mean_shift_only_adds_its_squared_norm() -> None:
    # With equal covariances the trace terms cancel: d² = ‖μ₁ − μ₂‖² exactly (analytical reference).
    rng = np.random.default_rng(4)
    mu, s = stats(gaussian_features(rng, 24, 300))
    delta = rng.standard_normal(24)
    assert frechet_distance(mu, s, mu + delta, s) == pytest.approx(delta @ delta, rel=1e-8)


def test_singular_covariances_take_the_fallback_paths() -> None:
    # A zero last row/column makes Cholesky fail deterministically. The distance then splits exactly into
    # the (d−1)-block distance (well-conditioned, scipy reference) plus the last mean coordinate squared.
    rng = np.random.default_rng(5)
    dim = 40
    mu1, s1 = stats(gaussian_features(rng, dim, 400))
    mu2, s2 = stats(gaussian_features(rng, dim, 400, shift=0.4))
    z1, z2 = s1.copy(), s2.copy()
    z1[-1, :] = z1[:, -1] = 0.0
    z2[-1, :] = z2[:, -1] = 0.0
    block = scipy_frechet(mu1[:-1], s1[:-1, :-1], mu2[:-1], s2[:-1, :-1]) + (mu1[-1] - mu2[-1]) ** 2
    assert frechet_distance(mu1, z1, mu2, z2) == pytest.approx(block, rel=1e-6)  # both singular: eigen root
    # Only the reference singular: the roles swap (Cholesky of sigma2); torchmetrics as the reference.
    swapped = frechet_distance(mu1, z1, mu2, s2)
    assert swapped == pytest.approx(torchmetrics_frechet(mu1, z1, mu2, s2), rel=1e-6)
    assert swapped == pytest.approx(frechet_distance(mu2, s2, mu1, z1), rel=1e-10)


def test_low_sample_shortcut_equals_the_eigen_path_and_warns() -> None:
    rng = np.random.default_rng(1)
    a, b = gaussian_features(rng, 64, 40), gaussian_features(rng, 64, 30, shift=0.5)
    with pytest.warns(UserWarning, match=r"fewer samples than feature dimensions \(n1=40, n2=30 < 64\)"):
        shortcut = fid_from_features(a, b)
    with pytest.warns(UserWarning, match=r"n1=40 < 64"):
        eigen = frechet_distance(*stats(a), *stats(b), n1=40)
    # The eigen path takes square roots of ~1e-16 round-off eigenvalues for the d − n null directions; the
    # shortcut never sees them. 1e-6 bounds that difference (observed ~1e-8).
    assert shortcut == pytest.approx(eigen, rel=1e-6)
    assert shortcut == pytest.approx(torchmetrics_frechet(*stats(a), *stats(b)), rel=1e-6)
    # Torch input, float32, gives the same shortcut value (float64 inside).
    with pytest.warns(UserWarning):
        assert fid_from_features(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(
            shortcut, rel=1e-12
        )


def test_warns_only_below_the_feature_dimension() -> None:
    rng = np.random.default_rng(6)
    a = gaussian_features(rng, 16, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(*stats(a), *stats(a), n1=64, n2=16)  # n = d is enough
        assert abs(fid_from_features(a, a[::-1])) < 1e-10 * np.trace(stats(a)[1])
    b = gaussian_features(rng, 16, 10)
    with pytest.warns(UserWarning, match=r"\(n2=10 < 16\)"):  # one set below d: eigen path, still warns
        value = fid_from_features(a, b)
    assert value == pytest.approx(torchmetrics_frechet(*stats(a), *stats(b)), rel=1e-6)


def test_prepared_reference_equals_one_shot() -> None:
    rng = np.random.default_rng(2)
    a = gaussian_features(rng, 48, 300)
    ref = FrechetReference.from_features(a)
    np.testing.assert_allclose(ref.mu.numpy(), a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(ref.sigma.numpy(), np.cov(a, rowvar=False), rtol=1e-10, atol=1e-14)
    for shift in (0.0, 0.2, 1.0):
        b = gaussian_features(rng, 48, 300, shift=shift)
        mu2, s2 = feature_statistics(b)
        assert ref.distance(mu2, s2) == pytest.approx(fid_from_features(a, b), rel=1e-12)
        assert ref.distance(mu2, s2) == pytest.approx(scipy_frechet(*stats(a), *stats(b)), rel=1e-6)


def test_statistics_equal_numpy_and_merge_across_shards() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 20)) * 3 + 1000.0  # far from the origin: plain sums would cancel
    mean, cov = x.mean(0), np.cov(x, rowvar=False)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), cov, rtol=1e-10)

    # Streaming, with an empty batch, and two shards (different shifts) merged.
    streamed = FeatureStats(20).update(x[:0]).update(x[:100]).update(torch.from_numpy(x[100:350]))
    other = FeatureStats(20).update(x[350:700]).update(x[700:])
    for smu, ssigma in (
        FeatureStats(20).update(x).compute(),
        FeatureStats(20).merge(streamed).merge(other).compute(),
        streamed.merge(FeatureStats(20)).merge(other).compute(),
    ):
        np.testing.assert_allclose(smu.numpy(), mean, rtol=1e-12)
        np.testing.assert_allclose(ssigma.numpy(), cov, rtol=1e-10)


def test_shared_shift_makes_the_state_additive() -> None:
    # What a distributed all-reduce (sum) does: add n, sum and outer of shards built with one shift.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((900, 12)) + 50.0
    shift = torch.full((12,), 50.0, dtype=torch.float64)
    shards = [FeatureStats(12, shift=shift).update(part) for part in np.array_split(x, 3)]
    total = FeatureStats(12, shift=shift)
    total.n = sum(s.n for s in shards)
    total.sum = sum(s.sum for s in shards)
    total.outer = sum(s.outer for s in shards)
    mu, sigma = total.compute()
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x, rowvar=False), rtol=1e-10)


def test_bad_inputs_name_the_argument() -> None:
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(DataError, match="mu2 must be a D vector"):
        frechet_distance(mu, s, np.zeros((3, 1)), s)
    with pytest.raises(DataError, match="sigma1 contains NaN"):
        frechet_distance(mu, np.full((3, 3), np.nan), mu, s)
    with pytest.raises(DataError, match="mu2 contains NaN"):
        frechet_distance(mu, s, np.array([0.0, np.inf, 0.0]), s)
    with pytest.raises(DataError, match="sigma2 is not symmetric"):
        frechet_distance(mu, s, mu, np.triu(np.ones((3, 3))))
    with pytest.raises(DataError, match="dimensions differ"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(DataError, match="N ≥ 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(DataError, match="fake features must be an N×D"):
        fid_from_features(np.zeros((5, 3)), np.zeros(3))
    with pytest.raises(DataError, match="real 3, fake 4"):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DataError, match="at least 2"):
        FeatureStats(3).compute()
    with pytest.raises(DataError, match="must be N×3"):
        FeatureStats(3).update(np.zeros((4, 2)))
    with pytest.raises(DataError, match="merge statistics of dimension 4"):
        FeatureStats(3).merge(FeatureStats(4))
