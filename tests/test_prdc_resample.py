"""PRDC of bootstrap resamples from neighbour lists computed once: identical to recomputing PRDC on each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditkit import DataError
from auditkit.metrics import prdc_resample
from auditkit.metrics.bootstrap import bootstrap_ci, prdc_ci
from auditkit.metrics.prdc import precision_recall_density_coverage
from auditkit.metrics.prdc_resample import PRDCResampler, counts_of


def _data(dtype, n: int = 150, m: int = 110, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n, dim)).astype(dtype)
    fake = (rng.standard_normal((m, dim)) * 1.1 + 0.2).astype(dtype)
    # Exact duplicates within and across the sets: zero distances and ties on radii.
    real[n // 2] = real[n // 2 + 1] = real[3]
    fake[5] = fake[6]
    fake[7] = real[n - 1]
    return real, fake


def _check_equal(real, fake, k: int, resamples: int, seed: int, **options) -> PRDCResampler:
    resampler = PRDCResampler(real, fake, k, **options)
    rng = np.random.default_rng(seed)
    n, m = len(real), len(fake)
    for _ in range(resamples):
        i, j = rng.integers(0, n, n), rng.integers(0, m, m)
        # the straightforward recomputation on the resampled matrices (the values prdc itself gives)
        expected = precision_recall_density_coverage(real[i], fake[j], k, chunk_size=32)
        assert resampler(counts_of(i, n), counts_of(j, m)) == expected  # exact: same floats
    return resampler


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resamples_equal_recomputation_exactly(dtype):
    real, fake = _data(dtype)
    resampler = _check_equal(real, fake, 3, 40, seed=1, chunk_size=32)
    assert resampler.recomputed_rows == 0  # the lists were deep enough
    assert resampler.real_lists.trusted.min() > 3 + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_that_leave_their_lists_are_recomputed_exactly(dtype):
    # A depth of one keeps ~10 neighbours: many resamples walk past them and take the full-row path.
    real, fake = _data(dtype, seed=2)
    resampler = _check_equal(real, fake, 3, 30, seed=3, chunk_size=32, depth=1)
    assert resampler.recomputed_rows > 10


def test_small_sets_keep_every_neighbour_and_high_dimensions_stay_exact():
    tiny = _data(np.float32, n=12, m=9, dim=5, seed=4)
    resampler = _check_equal(*tiny, 2, 30, seed=5)
    # Identical rows are merged into one point (three real rows are one here): every other one is kept.
    assert (resampler.real_lists.trusted == len(np.unique(tiny[0], axis=0)) - 1).all()
    rng = np.random.default_rng(6)  # 512-d float32: the float32 pass's error bound matters here
    base = rng.standard_normal((40, 512)).astype(np.float32)
    real = base[rng.integers(0, 40, 300)] + 0.3 * rng.standard_normal((300, 512)).astype(np.float32)
    fake = base[rng.integers(0, 40, 200)] + 0.35 * rng.standard_normal((200, 512)).astype(np.float32)
    _check_equal(real, fake, 5, 8, seed=7, chunk_size=64)


def test_runs_of_identical_rows_longer_than_the_lists_stay_on_the_fast_path():
    # Rendered data repeats images: here 60 copies of one real row and 40 of one fake row, more than the
    # 24 neighbours kept for k = 3, would leave those rows without a trusted neighbour if not merged.
    real, fake = _data(np.float32, n=200, m=150, seed=8)
    real[100:160] = real[0]
    fake[50:90] = fake[1]
    resampler = _check_equal(real, fake, 3, 25, seed=9, chunk_size=32)
    assert resampler.recomputed_rows == 0


def test_prdc_ci_equals_the_generic_bootstrap_of_recomputed_prdc():
    real, fake = _data(np.float64, seed=8)
    fast = prdc_ci(real, fake, 3, n_resamples=25, seed=4)
    slow = bootstrap_ci(
        lambda r, f: precision_recall_density_coverage(r, f, 3),
        real,
        fake,
        n_resamples=25,
        seed=4,
        method="centred",
    )
    for key in ("precision", "recall", "density", "coverage"):
        np.testing.assert_array_equal(fast[key].distribution, slow[key].distribution)
        assert fast[key].estimate == slow[key].estimate


def test_too_many_pairs_falls_back_to_recomputation(monkeypatch):
    real, fake = _data(np.float32, seed=9)
    reference = prdc_ci(real, fake, 3, n_resamples=12, seed=1)
    monkeypatch.setattr(prdc_resample, "MAX_PAIRS", 10)
    with pytest.raises(prdc_resample.TooManyPairs):
        PRDCResampler(real, fake, 3)
    fallback = prdc_ci(real, fake, 3, n_resamples=12, seed=1)
    for key, interval in reference.items():
        np.testing.assert_array_equal(fallback[key].distribution, interval.distribution)


def test_counts_must_describe_a_resample():
    real, fake = _data(np.float32)
    resampler = PRDCResampler(torch.from_numpy(real), torch.from_numpy(fake), 3)
    with pytest.raises(DataError, match="adding up to 150 and 110"):
        resampler(np.ones(150, dtype=int), np.zeros(110, dtype=int))
    with pytest.raises(DataError, match="differ in dimension"):
        PRDCResampler(real, fake[:, :5], 3)
