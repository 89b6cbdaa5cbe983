"""Fréchet distance against a scipy.linalg.sqrtm implementation and torchmetrics' formula."""

from __future__ import annotations

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


def random_gaussian(rng: np.random.Generator, dim: int, n: int, shift: float = 0.0):
    scales = np.linspace(0.2, 2.0, dim)
    mix = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    x = (rng.standard_normal((n, dim)) * scales) @ mix + shift
    return x


@pytest.mark.parametrize("dim", [16, 64, 256])
def test_matches_scipy_sqrtm_on_well_conditioned_covariances(dim: int) -> None:
    rng = np.random.default_rng(dim)
    a, b = random_gaussian(rng, dim, 4 * dim), random_gaussian(rng, dim, 4 * dim, shift=0.3)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = scipy_frechet(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)
    tm = float(_compute_fid(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2))))
    assert ours == pytest.approx(tm, rel=1e-6)


def test_identical_distributions_give_zero_and_symmetry() -> None:
    rng = np.random.default_rng(0)
    x = random_gaussian(rng, 32, 500)
    mu, s = x.mean(0), np.cov(x, rowvar=False)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    y = random_gaussian(rng, 32, 500, shift=1.0)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s), rel=1e-9)


def test_rank_deficient_reference_uses_eigen_root_and_warns() -> None:
    rng = np.random.default_rng(1)
    a, b = random_gaussian(rng, 64, 40), random_gaussian(rng, 64, 40, shift=0.5)
    with pytest.warns(UserWarning, match="40 samples for 64-dimensional"):
        ours = fid_from_features(a, b)
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    # sqrtm of a singular product is ill-conditioned; torchmetrics' eigvals formula is the sharper check.
    tm = float(_compute_fid(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2))))
    assert ours == pytest.approx(tm, rel=1e-6)
    assert ours == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-4)


def test_reference_reuse_equals_one_shot() -> None:
    rng = np.random.default_rng(2)
    a = random_gaussian(rng, 48, 300)
    ref = FrechetReference.from_features(a)
    for shift in (0.0, 0.2, 1.0):
        b = random_gaussian(rng, 48, 300, shift=shift)
        mu2, s2 = feature_statistics(b)
        assert ref.distance(mu2, s2) == pytest.approx(fid_from_features(a, b), rel=1e-12)


def test_statistics_equal_numpy_and_merge_across_shards() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1000, 20)) * 3 + 1000.0  # far from the origin: the shift matters
    mu, sigma = feature_statistics(x)
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x, rowvar=False), rtol=1e-10)
    shards = [FeatureStats(20).update(x[:100]).update(x[100:350]), FeatureStats(20).update(x[350:])]
    merged = FeatureStats(20).merge(shards[0]).merge(shards[1])
    smu, ssigma = merged.compute()
    np.testing.assert_allclose(smu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(ssigma.numpy(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def test_bad_inputs_name_the_argument() -> None:
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(DataError, match="mu2 must be a D vector"):
        frechet_distance(mu, s, np.zeros((3, 1)), s)
    with pytest.raises(DataError, match="sigma1 contains NaN"):
        frechet_distance(mu, np.full((3, 3), np.nan), mu, s)
    with pytest.raises(DataError, match="dimensions differ"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(DataError, match="N ≥ 2"):
        feature_statistics(np.zeros((1, 3)))
    with pytest.raises(DataError, match="at least 2"):
        FeatureStats(3).compute()
