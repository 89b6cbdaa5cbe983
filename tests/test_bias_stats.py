"""Tests, effect sizes, false-discovery control and power against scipy, hand computations and simulation.

Tolerances: statistics and p-values equal scipy's to 1e-12 relative; Cohen's w equals sqrt(χ²/n) to 1e-12;
BH decisions equal a hand-written step-up rule exactly. Simulations state their binomial margins where they
are (about 3 standard errors).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import scipy.stats
from scipy.stats.contingency import association

from auditkit.bias.representation import Reference
from auditkit.bias.stats import (
    benjamini_hochberg,
    cohens_w,
    gof_power,
    goodness_of_fit,
    independence_test,
    least_favourable_shift,
    power_warning,
    required_n,
)
from auditkit.errors import ConfigError, DataError

WEAK = np.array([[0.85, 0.10, 0.05], [0.10, 0.80, 0.10], [0.05, 0.10, 0.85]])


def pearson(counts: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Pearson's statistic of each row of ``counts`` against ``shares``, by hand."""
    n = counts.sum(axis=-1, keepdims=True)
    return (((counts - n * shares) ** 2) / (n * shares)).sum(axis=-1)


# -------------------------------------------------------------------------------------- goodness of fit


def test_tests_equal_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        k = int(rng.integers(2, 7))
        r = rng.dirichlet(np.full(k, 3.0))
        counts = rng.multinomial(int(rng.integers(200, 2000)), rng.dirichlet(np.full(k, 3.0)))
        n = counts.sum()
        chi = goodness_of_fit(counts, r, "chi2")
        ref = scipy.stats.chisquare(counts, n * r)
        assert chi.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert chi.p_value == pytest.approx(ref.pvalue, rel=1e-12, abs=1e-300)
        assert chi.dof == k - 1 and chi.n == n and not chi.through_judge
        assert chi.w == pytest.approx(math.sqrt(ref.statistic / n), rel=1e-12)
        assert chi.w == pytest.approx(cohens_w(counts / n, r), rel=1e-12)
        assert chi.cramers_v == pytest.approx(chi.w / math.sqrt(k - 1), rel=1e-12)
        g = goodness_of_fit(counts, r, "g")
        ref_g = scipy.stats.power_divergence(counts, n * r, lambda_="log-likelihood")
        assert g.statistic == pytest.approx(ref_g.statistic, rel=1e-12)
        assert g.p_value == pytest.approx(ref_g.pvalue, rel=1e-12, abs=1e-300)
    json.dumps(chi.to_dict(), allow_nan=False)


def test_test_through_the_judge() -> None:
    r = np.array([0.6, 0.3, 0.1])
    counts = np.array([540, 340, 120])
    res = goodness_of_fit(
        counts, Reference.explicit({"a": 0.6, "b": 0.3, "c": 0.1}, source="t"), confusion=WEAK
    )
    ref = scipy.stats.chisquare(counts, 1000 * WEAK.T @ r)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12) and res.through_judge
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_through_the_judge_the_null_is_calibrated() -> None:
    """Images whose true shares are the reference, read by an 80–85 % judge: testing the labels against
    the reference rejects most of the time; testing them through the judge rejects at the nominal 5 %."""
    r = np.array([0.6, 0.3, 0.1])
    rng = np.random.default_rng(1)
    sims = 2000
    counts = rng.multinomial(1000, WEAK.T @ r, size=sims)
    naive = np.mean([goodness_of_fit(c, r).p_value < 0.05 for c in counts[:300]])
    through = np.mean([goodness_of_fit(c, r, confusion=WEAK).p_value < 0.05 for c in counts])
    assert naive > 0.9  # the judge's own error reads as bias
    assert abs(through - 0.05) < 0.015, through  # SE 0.005 over 2000 simulations


def test_zero_reference_shares() -> None:
    # observed where the reference says impossible: infinite statistic, p = 0
    res = goodness_of_fit([50, 45, 5], [0.5, 0.5, 0.0])
    assert res.statistic == math.inf and res.p_value == 0.0 and res.w == math.inf
    assert res.to_dict()["statistic"] is None
    json.dumps(res.to_dict(), allow_nan=False)
    # not observed: the value is left out, one degree of freedom less
    res = goodness_of_fit([50, 50, 0], [0.4, 0.6, 0.0])
    ref = scipy.stats.chisquare([50, 50], [40, 60])
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12) and res.dof == 1
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)


def test_small_expected_counts_warn_with_the_n_needed() -> None:
    with pytest.warns(UserWarning, match=r"expected count is 3 .*from n = 50 images"):
        goodness_of_fit([20, 7, 3], [0.6, 0.3, 0.1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        goodness_of_fit([30, 15, 5], [0.6, 0.3, 0.1])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: goodness_of_fit([0, 0, 0], [0.5, 0.3, 0.2]), DataError, "empty sample"),
        (lambda: goodness_of_fit([1, 2, 3], [0.5, 0.5]), ConfigError, "3 shares"),
        (lambda: goodness_of_fit([1, 2, 3], [0.5, 0.3, 0.3]), ConfigError, "summing to 1"),
        (lambda: goodness_of_fit([1, -2, 3], [0.5, 0.3, 0.2]), DataError, "non-negative"),
        (lambda: goodness_of_fit([1, 2, 3], [0.5, 0.3, 0.2], "fisher"), ConfigError, "'chi2'"),
        (lambda: goodness_of_fit([1, 2, 3], [0.5, 0.3, 0.2], confusion=np.eye(2)), ConfigError, "3×3"),
        (lambda: independence_test([[5, 0], [0, 0]]), DataError, "at least 2 non-empty rows"),
    ],
)
def test_input_errors(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_independence_test_equals_scipy() -> None:
    table = np.array([[30, 12, 8], [22, 20, 9], [10, 25, 14], [0, 0, 0]])  # an empty condition is dropped
    for test, lam in (("chi2", "pearson"), ("g", "log-likelihood")):
        res = independence_test(table, test)
        ref = scipy.stats.chi2_contingency(table[:3], correction=False, lambda_=lam)
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12) and res.dof == 4
    chi = scipy.stats.chi2_contingency(table[:3], correction=False).statistic
    v = independence_test(table).cramers_v
    assert v == pytest.approx(association(table[:3], method="cramer"), rel=1e-12)
    assert v == pytest.approx(math.sqrt(chi / (table.sum() * 2)), rel=1e-12)


# ------------------------------------------------------------------------------------ multiple testing


def step_up(p: np.ndarray, alpha: float) -> np.ndarray:
    """BH by its definition: reject the i smallest, i the largest index with p₍ᵢ₎ ≤ i·α/m."""
    m = len(p)
    order = np.argsort(p)
    passing = [i for i in range(1, m + 1) if p[order[i - 1]] <= i * alpha / m]
    reject = np.zeros(m, dtype=bool)
    if passing:
        reject[order[: max(passing)]] = True
    return reject


def test_benjamini_hochberg() -> None:
    rng = np.random.default_rng(2)
    for trial in range(200):
        m = int(rng.integers(1, 40))
        # a mix of nulls and signals, with ties
        p = np.concatenate([rng.uniform(size=m), rng.uniform(0, 0.01, size=m // 2)])
        if trial % 4 == 0:
            p = np.round(p, 2)
        alpha = [0.05, 0.1, 0.2][trial % 3]
        res = benjamini_hochberg(p, alpha)
        np.testing.assert_array_equal(res.reject, step_up(p, alpha))
        np.testing.assert_allclose(res.p_adjusted, scipy.stats.false_discovery_control(p), rtol=1e-12)
    json.dumps(res.to_dict(), allow_nan=False)
    assert benjamini_hochberg([]).reject == ()
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.1, np.nan])
    with pytest.raises(ConfigError, match="alpha"):
        benjamini_hochberg([0.1], alpha=5)


# ------------------------------------------------------------------------------------------------ power


def test_required_n_one_degree_of_freedom_closed_form() -> None:
    """With k = 2 the statistic is a squared normal: power = Φ(√λ − z) + Φ(−√λ − z), z = z₁₋α/₂."""
    for w, alpha, power in ((0.1, 0.05, 0.8), (0.3, 0.05, 0.8), (0.5, 0.01, 0.9), (0.05, 0.1, 0.5)):
        z = scipy.stats.norm.isf(alpha / 2)

        def normal_power(n: float, w: float = w, z: float = z) -> float:
            s = math.sqrt(n) * w
            return scipy.stats.norm.cdf(s - z) + scipy.stats.norm.cdf(-s - z)

        n = required_n(w, 2, alpha, power)
        assert normal_power(n) >= power > normal_power(n - 1)
        assert gof_power(n, w, 2, alpha) == pytest.approx(normal_power(n), abs=1e-9)
    assert required_n(0.1, 2) == 785  # Cohen (1988), table 7.4.6: the textbook 785


def test_required_n_is_the_smallest_and_grows_with_k() -> None:
    for k in (3, 5, 10):
        n = required_n(0.2, k)
        assert gof_power(n, 0.2, k) >= 0.8 > gof_power(n - 1, 0.2, k)
    assert required_n(0.2, 3) < required_n(0.2, 5) < required_n(0.2, 10)
    with pytest.raises(ConfigError, match="w = 0"):
        required_n(0.0, 3)
    with pytest.raises(ConfigError, match="k"):
        required_n(0.2, 1)


def test_required_n_gives_the_power_by_simulation() -> None:
    """At n = required_n, 80 % of simulated audits of the least favourable alternative reject."""
    r = np.array([0.45, 0.35, 0.2])
    alt, w = least_favourable_shift(r, 0.1)
    n = required_n(w, 3)
    counts = np.random.default_rng(3).multinomial(n, alt, size=6000)
    rejected = np.mean(pearson(counts, r) > scipy.stats.chi2.isf(0.05, 2))
    assert abs(rejected - 0.8) < 0.03, (n, rejected)  # SE 0.005; the rest is the ncx2 approximation


def test_least_favourable_shift_by_search() -> None:
    d = 0.1
    for r in (np.array([0.45, 0.35, 0.2]), np.array([0.7, 0.2, 0.1]), np.array([0.25, 0.25, 0.25, 0.25])):
        alt, w = least_favourable_shift(r, d)
        assert 0.5 * np.abs(alt - r).sum() == pytest.approx(d, abs=1e-12)
        assert w == pytest.approx(math.sqrt(np.sum((alt - r) ** 2 / r)), rel=1e-12)
        # many share vectors, each moved along its direction to exactly TVD d; w scales with the move
        rng = np.random.default_rng(4)
        cand = rng.dirichlet(np.ones(r.size), size=400_000)
        cand = np.concatenate([cand, r + (rng.dirichlet(np.ones(r.size), size=400_000) - r) * 0.2])
        dist = 0.5 * np.abs(cand - r).sum(axis=1)
        moved = r + (cand - r) * (d / dist)[:, None]
        ok = (moved >= 0).all(axis=1)
        ws = np.sqrt(((moved[ok] - r) ** 2 / r).sum(axis=1))
        assert ws.min() >= w * (1 - 1e-9)  # nothing at TVD d is harder to detect
        assert ws.min() <= w * 1.03  # and the search comes close to it
        assert w >= 2 * d - 1e-12


def test_power_warning() -> None:
    ref = Reference.uniform(["a", "b", "c"])
    small = power_warning(100, 0.05, ref, label="colour")
    assert not small.sufficient and small.message is not None
    assert f"n ≥ {small.required_n}" in small.message and "colour" in small.message
    assert small.required_n == required_n(small.w, 3)
    assert small.power == pytest.approx(gof_power(100, small.w, 3))
    json.dumps(small.to_dict(), allow_nan=False)
    big = power_warning(small.required_n, 0.05, ref)
    assert big.sufficient and big.message is None and big.power >= 0.8
    # uniform over 3: the best split is 1/3 vs 2/3, w = d / sqrt(2/9)
    assert small.w == pytest.approx(0.05 / math.sqrt(2 / 9), rel=1e-12)
    with pytest.raises(ConfigError, match="TVD"):
        power_warning(100, 0.0, ref)
