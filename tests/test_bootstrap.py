"""Bootstrap intervals against scipy.stats.bootstrap, numpy quantiles, brute-force resample statistics
and coverage on known truths.

Tolerances: intervals equal scipy's to 1e-12 relative (the same resamples; only the summation order of
the mean differs); resampled FID/KID/PRDC values equal the metric functions on the resampled rows to
1e-9 relative (FID: same code, different order of float64 sums) or exactly (PRDC). Coverage tests state
their binomial tolerance where they are.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import torch

from auditkit import ConfigError, DataError
from auditkit.metrics.bootstrap import Interval, bootstrap_ci, fid_ci, kid_ci, prdc_ci
from auditkit.metrics.frechet import fid_from_features
from auditkit.metrics.kid import kernel_inception_distance, polynomial_mmd2
from auditkit.metrics.prdc import precision_recall_density_coverage


def documented_indices(seed: int, sizes: list[int], n_resamples: int) -> list[list[np.ndarray]]:
    """The resample rows as the module docstring specifies them, re-derived here independently."""
    streams = [np.random.default_rng(c) for c in np.random.SeedSequence(seed).spawn(len(sizes))]
    return [
        [rng.integers(0, n, n) for rng, n in zip(streams, sizes, strict=True)] for _ in range(n_resamples)
    ]


@pytest.mark.parametrize("method", ["percentile", "basic"])
def test_equals_scipy_bootstrap(method: str) -> None:
    x = np.random.default_rng(0).exponential(size=67)  # skewed, so percentile and basic differ
    ours = bootstrap_ci(np.mean, x, n_resamples=500, confidence=0.9, seed=11, method=method)
    stream = np.random.default_rng(np.random.SeedSequence(11).spawn(1)[0])
    ref = scipy.stats.bootstrap(
        (x,), np.mean, n_resamples=500, confidence_level=0.9, method=method, rng=stream
    )
    assert isinstance(ours, Interval)
    assert ours.low == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert ours.high == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    assert ours.std_error == pytest.approx(ref.standard_error, rel=1e-12)
    np.testing.assert_allclose(ours.distribution, ref.bootstrap_distribution, rtol=1e-12)
    assert ours.estimate == float(np.mean(x))


def test_quantiles_and_streams_of_two_samples() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(40), rng.standard_normal(25) + 1

    def diff(x, y):
        return float(y.mean()) - float(x.mean())

    for method in ("percentile", "basic", "centred"):
        iv = bootstrap_ci(
            diff, a, torch.from_numpy(b), n_resamples=300, confidence=0.8, seed=5, method=method
        )
        expected = [diff(a[i], b[j]) for i, j in documented_indices(5, [40, 25], 300)]
        np.testing.assert_allclose(iv.distribution, expected, rtol=1e-12)
        lo, hi = np.percentile(expected, [10, 90])
        shift = np.mean(expected) - diff(a, b)
        want = {"percentile": (lo, hi), "basic": (2 * iv.estimate - hi, 2 * iv.estimate - lo)}
        want["centred"] = (lo - shift, hi - shift)
        assert (iv.low, iv.high) == pytest.approx(want[method], rel=1e-12)
        assert iv.bias == pytest.approx(shift, rel=1e-12)
        assert (iv.confidence, iv.n_resamples, iv.method) == (0.8, 300, method)


def test_coverage_of_the_mean() -> None:
    # 400 samples of n = 60 from N(3, 2²); the percentile interval's coverage at this n is about 0.94
    # (slightly below nominal, as known for small n). Binomial sd at 400 repetitions ≈ 0.012: accept
    # [0.90, 0.98], more than 3 sd either side.
    rng = np.random.default_rng(2)
    covered = 0
    for rep in range(400):
        x = 3.0 + 2.0 * rng.standard_normal(60)
        iv = bootstrap_ci(np.mean, x, n_resamples=200, seed=rep)
        covered += iv.low <= 3.0 <= iv.high
    assert 0.90 <= covered / 400 <= 0.98


def test_deterministic_by_seed() -> None:
    x = np.random.default_rng(3).standard_normal((30, 2))

    def stat(v):
        return float(v[:, 0].mean() * v[:, 1].std())

    first = bootstrap_ci(stat, x, seed=7)
    again = bootstrap_ci(stat, x, seed=7)
    other = bootstrap_ci(stat, x, seed=8)
    np.testing.assert_array_equal(first.distribution, again.distribution)
    assert first == again
    assert not np.array_equal(first.distribution, other.distribution)


def test_fid_interval() -> None:
    rng = np.random.default_rng(4)
    real = rng.standard_normal((400, 8)).astype(np.float32)
    fake = (1.0 + 1.2 * rng.standard_normal((400, 8))).astype(np.float32)
    estimate = fid_from_features(real, fake)
    for method in ("percentile", "basic", "centred"):
        iv = fid_ci(torch.from_numpy(real), fake, n_resamples=100, seed=1, method=method)
        assert iv.estimate == pytest.approx(estimate, rel=1e-12)
        # FID∞ ≈ 8.6 here; the sampling spread (≈ 0.45) dominates the finite-n bias (≈ 0.1), so every
        # method's interval contains the estimate.
        assert iv.low < iv.estimate < iv.high
    expected = [fid_from_features(real[i], fake[j]) for i, j in documented_indices(1, [400, 400], 5)]
    np.testing.assert_allclose(iv.distribution[:5], expected, rtol=1e-9)
    assert iv.bias > 0  # the resamples' FID is biased upward, as the estimate's is

    fixed = fid_ci(real, fake, n_resamples=20, seed=1, resample_real=False)
    expected = [fid_from_features(real, fake[j]) for _, j in documented_indices(1, [400, 400], 20)]
    np.testing.assert_allclose(fixed.distribution, expected, rtol=1e-9)
    assert fixed.std_error < iv.std_error  # only one sample's variability


def test_fid_interval_with_fewer_samples_than_dimensions_warns_once() -> None:
    rng = np.random.default_rng(5)
    real, fake = rng.standard_normal((30, 40)), rng.standard_normal((30, 40)) + 0.5
    with pytest.warns(UserWarning, match="fewer samples than feature dimensions") as record:
        iv = fid_ci(real, fake, n_resamples=20)
    assert len(record) == 1
    with pytest.warns(UserWarning):
        reference = fid_from_features(real, fake)
    assert iv.estimate == pytest.approx(reference, rel=1e-12)


def test_prdc_gives_an_interval_per_key() -> None:
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((120, 10)), rng.standard_normal((100, 10)) + 0.3
    out = prdc_ci(real, fake, 3, n_resamples=20, seed=2)
    assert set(out) == {"precision", "recall", "density", "coverage"}
    estimate = precision_recall_density_coverage(real, fake, 3)
    resampled = [
        precision_recall_density_coverage(real[i], fake[j], 3)
        for i, j in documented_indices(2, [120, 100], 20)
    ]
    for key, iv in out.items():
        assert isinstance(iv, Interval) and iv.method == "centred"
        assert iv.estimate == estimate[key]
        np.testing.assert_array_equal(iv.distribution, [r[key] for r in resampled])
    # The generic bootstrap with the same dict-valued statistic gives the same thing.
    generic = bootstrap_ci(
        lambda r, f: precision_recall_density_coverage(r, f, 3), real, fake, n_resamples=20, seed=2
    )
    assert isinstance(generic, dict)
    for key in out:
        np.testing.assert_array_equal(generic[key].distribution, out[key].distribution)


def _kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _within(z: np.ndarray, rows: np.ndarray) -> float:
    """Mean kernel over pairs of resampled positions that are copies of different rows."""
    k = _kernel(z[rows], z[rows])
    return float(k[rows[:, None] != rows[None, :]].mean())


@pytest.mark.parametrize(("n1", "n2"), [(150, 150), (120, 90)])
def test_kid_interval(n1: int, n2: int) -> None:
    rng = np.random.default_rng(7)
    real, fake = rng.standard_normal((n1, 12)), rng.standard_normal((n2, 12)) + 0.2
    iv = kid_ci(torch.from_numpy(real), fake, n_resamples=30, seed=3)
    full = _within(real, np.arange(n1)) + _within(fake, np.arange(n2)) - 2 * _kernel(real, fake).mean()
    assert iv.estimate == pytest.approx(full, rel=1e-10)
    if n1 == n2:
        assert iv.estimate == pytest.approx(polynomial_mmd2(real, fake), rel=1e-10)
        kid_mean, _ = kernel_inception_distance(real, fake, subsets=1, subset_size=n1)
        assert iv.estimate == pytest.approx(kid_mean, rel=1e-10)
    for b, (i, j) in enumerate(documented_indices(3, [n1, n2], 4)):
        value = _within(real, i) + _within(fake, j) - 2 * _kernel(real[i], fake[j]).mean()
        assert iv.distribution[b] == pytest.approx(value, rel=1e-10)
    assert iv.low < iv.estimate < iv.high


def test_kid_coverage() -> None:
    # The MMD² of N(0, I) and N(0.25·1, I) in 4-d under (x·y/4 + 1)³ is a polynomial in the moments;
    # here it comes from 2·10⁶ independent pairs (Monte Carlo error ≈ 1e-3, a tenth of the intervals'
    # half-width). 100 repetitions: binomial sd ≈ 0.022, accept [0.86, 1.0].
    rng = np.random.default_rng(8)
    dim, shift = 4, 0.25

    def pairs(a, b):
        return float(((np.einsum("ij,ij->i", a, b) / dim + 1.0) ** 3).mean())

    big = [rng.standard_normal((2_000_000, dim)) for _ in range(4)]
    x1, x2, y1, y2 = big[0], big[1], big[2] + shift, big[3] + shift
    truth = pairs(x1, x2) + pairs(y1, y2) - pairs(x1, y1) - pairs(x2, y2)
    del big, x1, x2, y1, y2
    covered = 0
    for rep in range(100):
        real, fake = rng.standard_normal((150, dim)), rng.standard_normal((150, dim)) + shift
        iv = kid_ci(real, fake, n_resamples=100, seed=rep)
        covered += iv.low <= truth <= iv.high
    assert covered / 100 >= 0.86


def _covers(iv: Interval, truth: float, method: str) -> bool:
    """Whether the ``method`` interval built from ``iv``'s bootstrap values contains ``truth``."""
    q = np.quantile(iv.distribution, [0.025, 0.975])
    low, high = {"percentile": q, "basic": 2 * iv.estimate - q[::-1], "centred": q - iv.bias}[method]
    return bool(low <= truth <= high)


@pytest.mark.slow
def test_fid_coverage_by_method() -> None:
    # What the module docstring claims: "centred" covers the finite-n FID E[FID̂], "basic" covers FID∞,
    # "percentile" neither. N(0, I) against N(0.3·1, 1.5·I) in 8-d, n = 300: FID∞ = 8·0.09 + 8·(2.5 − 2√1.5).
    # 150 repetitions, binomial sd ≈ 0.018 at 0.95: accept ≥ 0.88.
    rng = np.random.default_rng(9)
    dim, n = 8, 300

    def draw():
        return rng.standard_normal((n, dim)), 0.3 + np.sqrt(1.5) * rng.standard_normal((n, dim))

    fid_inf = dim * 0.09 + dim * (2.5 - 2 * np.sqrt(1.5))
    finite_n = float(np.mean([fid_from_features(*draw()) for _ in range(3000)]))
    hits = {"centred": 0, "basic": 0, "percentile": 0}
    for rep in range(150):
        iv = fid_ci(*draw(), n_resamples=200, seed=rep)
        hits["centred"] += _covers(iv, finite_n, "centred")
        hits["basic"] += _covers(iv, fid_inf, "basic")
        hits["percentile"] += _covers(iv, fid_inf, "percentile")
    assert hits["centred"] / 150 >= 0.88 and hits["basic"] / 150 >= 0.88
    assert hits["percentile"] / 150 < 0.7


@pytest.mark.slow
def test_prdc_coverage_by_method() -> None:
    # "centred" covers E[score] at this n (estimated from 400 independent draws); "percentile" misses the
    # coverage score because a resample's duplicates shrink the k-NN balls. 60 repetitions: accept ≥ 0.85.
    rng = np.random.default_rng(10)

    def draw():
        return rng.standard_normal((200, 16)), 0.2 + rng.standard_normal((200, 16))

    draws = [precision_recall_density_coverage(*draw(), 5) for _ in range(400)]
    truth = {key: float(np.mean([d[key] for d in draws])) for key in draws[0]}
    centred = dict.fromkeys(truth, 0)
    percentile = 0
    for rep in range(60):
        out = prdc_ci(*draw(), 5, n_resamples=100, seed=rep)
        for key, iv in out.items():
            centred[key] += _covers(iv, truth[key], "centred")
        percentile += _covers(out["coverage"], truth["coverage"], "percentile")
    assert all(hits / 60 >= 0.85 for hits in centred.values()), centred
    assert percentile / 60 < 0.3


def test_to_dict_is_json() -> None:
    iv = bootstrap_ci(np.mean, np.arange(20.0), n_resamples=10)
    payload = json.loads(json.dumps(iv.to_dict(), allow_nan=False))
    assert payload == {
        "estimate": 9.5,
        "low": iv.low,
        "high": iv.high,
        "confidence": 0.95,
        "n_resamples": 10,
        "method": "percentile",
        "bias": iv.bias,
        "std_error": iv.std_error,
    }


def test_errors() -> None:
    x = np.arange(10.0)
    for bad in (9, 0, 10.5, True):
        with pytest.raises(ConfigError, match="n_resamples"):
            bootstrap_ci(np.mean, x, n_resamples=bad)  # type: ignore[arg-type]
    for bad in (0.0, 1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="confidence"):
            bootstrap_ci(np.mean, x, confidence=bad)
    with pytest.raises(ConfigError, match="method"):
        fid_ci(np.ones((5, 2)), np.ones((5, 2)), method="bca")
    with pytest.raises(ConfigError, match="seed"):
        bootstrap_ci(np.mean, x, seed=-1)
    with pytest.raises(DataError, match="at least one sample"):
        bootstrap_ci(np.mean)
    with pytest.raises(DataError, match="no rows"):
        bootstrap_ci(np.mean, x[:0])
    with pytest.raises(DataError, match="must return one number or a dict"):
        bootstrap_ci(lambda v: v[:2], x)
    with pytest.raises(DataError, match="returned -inf on the original samples"):
        bootstrap_ci(lambda v: -np.inf, x)
    with pytest.raises(DataError, match="returned nan on resample"):  # resamples repeat rows
        bootstrap_ci(lambda v: 1.0 if len(set(v.tolist())) == 10 else np.nan, x)
    with pytest.raises(DataError, match="same keys"):
        bootstrap_ci(lambda v: {"a": 1.0} if len(set(v.tolist())) == 10 else {"b": 1.0}, x, n_resamples=10)
    bad = np.ones((10, 3))
    bad[2, 2] = np.nan
    with pytest.raises(DataError, match="fake"):
        fid_ci(np.random.default_rng(0).standard_normal((10, 3)), bad)
    with pytest.raises(DataError, match="fake"):
        kid_ci(np.ones((10, 3)), bad)
    with pytest.raises(DataError, match="dimension"):
        kid_ci(np.ones((10, 3)), np.ones((10, 4)))


def test_intervals_stay_within_the_metrics_range() -> None:
    # near-identical samples: recall and precision sit near 1 and FID near 0, where the centred interval of
    # the raw bootstrap quantiles reaches past the bounds; clipped, it must not
    rng = np.random.default_rng(11)
    real = rng.standard_normal((150, 4))
    fake = real + 0.01 * rng.standard_normal((150, 4))
    out = prdc_ci(real, fake, 5, n_resamples=50, seed=3)
    for key in ("precision", "recall", "coverage"):
        iv = out[key]
        raw_high = float(np.quantile(iv.distribution, 0.975) - iv.bias)
        assert 0.0 <= iv.low <= iv.high <= 1.0
        assert raw_high > 1.0  # the case the clipping exists for
        assert iv.high == pytest.approx(min(1.0, raw_high), abs=1e-12)
    assert out["density"].low >= 0.0
    fid = fid_ci(real, fake, n_resamples=50, seed=3)
    raw_low = float(np.quantile(fid.distribution, 0.025) - fid.bias)
    assert raw_low < 0.0 and fid.low == 0.0
