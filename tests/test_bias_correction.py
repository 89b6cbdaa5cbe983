"""Judge-error correction: the simplex solver against SLSQP and a grid, the bootstrap against its documented
draws and the delta method, and calibration on a known truth.

Tolerances: objective values within 1e-10 of SLSQP's best of three starts (ftol 1e-15) and never above a
0.002-step grid's minimum; interior solutions equal ``numpy.linalg.solve`` to 1e-12. Bootstrap standard
errors within 15 % of the first-order delta method (1000 replicates: the bootstrap's own error is ~2 %,
the rest is the delta method's linearisation). Calibration over 100 seeds × 3 values: coverage ≥ 0.90
(nominal 0.95; a binomial 95 % range for 300 cases is 0.925–0.975).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch

from auditkit.bias.correction import (
    WARN_CONDITION,
    CorrectedShares,
    _simplex_lstsq,
    bootstrap_shares,
    correct_shares,
    joint_confusion,
)
from auditkit.bias.judge import JudgeReport
from auditkit.bias.representation import intersection_labels
from auditkit.errors import ConfigError, DataError

# A deliberately weakened judge: 80–85 % right, its errors lean to neighbouring values.
WEAK = np.array([[0.85, 0.10, 0.05], [0.10, 0.80, 0.10], [0.05, 0.10, 0.85]])


def slsqp(a: np.ndarray, q: np.ndarray, rng: np.random.Generator) -> float:
    """Best objective of scipy's SLSQP over three random starts."""
    k = len(q)
    best = np.inf
    for _ in range(3):
        res = scipy.optimize.minimize(
            lambda x: float(np.sum((a @ x - q) ** 2)),
            rng.dirichlet(np.ones(k)),
            method="SLSQP",
            bounds=[(0.0, 1.0)] * k,
            constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        best = min(best, float(res.fun))
    return best


def draw_predictions(rng: np.random.Generator, truth: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """The judge's label for every image: row ``truth[i]`` of the confusion rates, sampled."""
    u = rng.random(len(truth))[:, None]
    return (u > np.cumsum(confusion[truth], axis=1)).sum(axis=1)


def holdout_counts(rng: np.random.Generator, confusion: np.ndarray, per_value: int) -> np.ndarray:
    return np.stack([rng.multinomial(per_value, row) for row in confusion])


# ------------------------------------------------------------------------------------------ the solver


def test_solver_matches_slsqp_on_random_problems() -> None:
    rng = np.random.default_rng(0)
    problems = []
    for i in range(120):
        k = int(rng.integers(2, 7))
        # general matrices and confusion-like ones; targets near the boundary so that bounds bind
        a = rng.normal(size=(k, k)) if i % 2 else rng.dirichlet(np.full(k, 0.5), size=k).T
        problems.append((a, rng.dirichlet(np.full(k, 0.3))))
    for a, q in problems:
        p = _simplex_lstsq(a[None], q[None])[0]
        assert (p >= 0).all() and p.sum() == pytest.approx(1.0, abs=1e-14)
        assert np.sum((a @ p - q) ** 2) <= slsqp(a, q, rng) + 1e-10
    # batched == one at a time (problems of one size)
    same = [(a, q) for a, q in problems if len(q) == 4]
    batch = _simplex_lstsq(np.stack([a for a, _ in same]), np.stack([q for _, q in same]))
    for row, (a, q) in zip(batch, same, strict=True):
        np.testing.assert_allclose(row, _simplex_lstsq(a[None], q[None])[0], rtol=0, atol=1e-12)


def test_solver_against_grid_search() -> None:
    step = 0.002
    x, y = np.meshgrid(np.arange(0, 1 + step / 2, step), np.arange(0, 1 + step / 2, step))
    keep = x + y <= 1 + 1e-12
    grid = np.stack([x[keep], y[keep], np.maximum(1 - x[keep] - y[keep], 0)], axis=1)
    for q in ([1.0, 0.0, 0.0], [0.05, 0.05, 0.9], [0.0, 0.5, 0.5]):
        q = np.array(q)
        p = correct_shares(q, WEAK)
        objective = np.sum((grid @ WEAK - q) ** 2, axis=1)
        ours = np.sum((WEAK.T @ p - q) ** 2)
        assert ours <= objective.min() + 1e-15
        assert np.abs(grid[objective.argmin()] - p).max() <= 2 * step


def test_interior_solution_is_the_inverse() -> None:
    truth = np.array([0.5, 0.3, 0.2])
    q = WEAK.T @ truth
    np.testing.assert_allclose(correct_shares(q, WEAK), np.linalg.solve(WEAK.T, q), rtol=0, atol=1e-12)
    np.testing.assert_allclose(correct_shares(q * 1000, WEAK * 7), truth, rtol=0, atol=1e-12)  # counts
    # torch tensors, as JudgeReport.confusion_rates returns
    np.testing.assert_allclose(correct_shares(torch.tensor(q), torch.from_numpy(WEAK)), truth, atol=1e-12)


def test_boundary_solution_satisfies_kkt() -> None:
    q = np.array([0.9, 0.1, 0.0])  # the inverse would give the third value a negative share
    assert np.linalg.solve(WEAK.T, q).min() < 0
    p = correct_shares(q, WEAK)
    assert p[2] == 0.0 and p.sum() == pytest.approx(1.0)
    grad = 2 * WEAK @ (WEAK.T @ p - q)
    free = p > 0
    nu = grad[free].mean()
    np.testing.assert_allclose(grad[free], nu, atol=1e-12)  # equal on free shares
    assert (grad[~free] >= nu - 1e-12).all()  # pushing mass onto a zero share would not help


# --------------------------------------------------------------------------------------- input handling


def test_unseen_value_from_a_judge_report_is_an_error() -> None:
    report = JudgeReport(
        attributes={"colour": ("red", "green", "blue")},
        accuracy={"colour": 0.9},
        confusion={"colour": [[9, 1, 0], [0, 0, 0], [1, 0, 9]]},
        n_train=100,
        n_holdout=20,
        holdout=0.2,
        holdout_ids_sha256="0" * 64,
        epochs=1,
        seed=0,
        train_seconds=0.0,
        final_loss=0.0,
        device="cpu",
    )
    rates = report.confusion_rates("colour")
    assert rates.isnan().any()
    with pytest.raises(ConfigError, match=r"no held-out image for true value\(s\) \['green'\]"):
        correct_shares([10, 5, 5], rates, values=report.attributes["colour"])
    with pytest.raises(ConfigError, match="green"):
        bootstrap_shares(np.array([0, 1, 2]), report.confusion["colour"], values=["red", "green", "blue"])


def test_singular_and_ill_conditioned_confusion() -> None:
    same = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.0, 0.1, 0.9]])
    with pytest.raises(ConfigError, match="'cat' and 'dog'.*Merge these values"):
        correct_shares([5, 3, 2], same, values=["cat", "dog", "fox"])
    near = np.array([[0.6, 0.4], [0.55, 0.45]])  # condition number ≈ 33
    assert np.linalg.cond(near) > WARN_CONDITION
    with pytest.warns(UserWarning, match="condition number"):
        correct_shares([5, 5], near)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        correct_shares([5, 3, 2], WEAK)  # a decent judge does not warn


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: correct_shares([0, 0, 0], WEAK), DataError, "all counts are 0"),
        (lambda: correct_shares([1, 2], WEAK), DataError, "K = 3"),
        (lambda: correct_shares([1, 2, 3], WEAK[:2]), ConfigError, "square"),
        (lambda: correct_shares([1, 2, 3], -WEAK), ConfigError, "non-negative"),
        (lambda: bootstrap_shares(np.array([], dtype=int), [[5, 1], [1, 5]]), DataError, "empty sample"),
        (lambda: bootstrap_shares(np.array([0, 2]), [[5, 1], [1, 5]]), DataError, "0…1"),
        (lambda: bootstrap_shares(np.array([0, 1]), WEAK), ConfigError, "not the rates"),
        (lambda: bootstrap_shares(np.array([0, 1]), [[5, 1], [1, 5]], n_boot=5), ConfigError, "n_boot"),
        (lambda: bootstrap_shares(np.array([0, 1]), [[5, 1], [1, 5]], level=95), ConfigError, "level"),
        (
            lambda: bootstrap_shares(np.array([0, 1]), [[5, 1], [1, 5]], pseudo_count=-1),
            ConfigError,
            "pseudo",
        ),
    ],
)
def test_input_errors(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_joint_confusion_follows_intersection_order() -> None:
    rng = np.random.default_rng(1)
    # a judge right 75–95 % of the time; ``a`` as counts (rows are normalised), ``b`` as rates
    a = (np.eye(2) * 8 + rng.dirichlet(np.ones(2), size=2)) * 10
    b = np.eye(3) * 0.75 + rng.dirichlet(np.ones(3), size=3) * 0.25
    joint = joint_confusion([a, b])
    ra = a / a.sum(axis=1, keepdims=True)
    # P(pred (k, l) | true (i, j)) = A[i, k]·B[j, l] with (i, j) → i·3 + j, by explicit loops
    for i, j, k, m in np.ndindex(2, 3, 2, 3):
        assert joint[i * 3 + j, k * 3 + m] == pytest.approx(ra[i, k] * b[j, m], abs=1e-15)
    # the same order as intersection_labels: predicted joint labels of simulated images follow Jᵀp
    truth = np.stack([rng.integers(0, 2, 60_000), rng.integers(0, 3, 60_000)], axis=1)
    pred = np.stack([draw_predictions(rng, truth[:, 0], ra), draw_predictions(rng, truth[:, 1], b)], axis=1)
    t_joint, p_joint = intersection_labels(truth, (2, 3)), intersection_labels(pred, (2, 3))
    expected = joint.T @ (np.bincount(t_joint, minlength=6) / 60_000)
    np.testing.assert_allclose(np.bincount(p_joint, minlength=6) / 60_000, expected, atol=0.01)
    np.testing.assert_allclose(correct_shares(expected, [a, b]), np.bincount(t_joint) / 60_000, atol=1e-12)


# -------------------------------------------------------------------------------------------- bootstrap


def test_perfect_judge_and_documented_draws() -> None:
    labels = np.random.default_rng(2).choice(3, size=400, p=[0.5, 0.3, 0.2])
    perfect = np.diag([120, 90, 100])
    res = bootstrap_shares(labels, perfect, n_boot=300, level=0.9, seed=7, pseudo_count=0)
    # the generated sample's resamples, re-drawn as the module docstring says
    stream = np.random.default_rng(np.random.SeedSequence(7).spawn(2)[0])
    draws = stream.multinomial(400, np.bincount(labels) / 400, size=300) / 400
    np.testing.assert_array_equal(res.raw_draws, draws)
    np.testing.assert_allclose(res.raw_low, np.quantile(draws, 0.05, axis=0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(res.raw_high, np.quantile(draws, 0.95, axis=0), rtol=0, atol=1e-15)
    # a perfect judge changes nothing
    np.testing.assert_allclose(res.corrected_draws, res.raw_draws, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.corrected, res.raw, rtol=0, atol=1e-12)
    assert res.condition_number == pytest.approx(1.0) and res.holdout_counts == ((120, 90, 100),)
    # same seed, same numbers; JSON-safe summary
    again = bootstrap_shares(labels, perfect, n_boot=300, level=0.9, seed=7, pseudo_count=0)
    assert again == res and isinstance(res, CorrectedShares)
    assert json.loads(json.dumps(res.to_dict(), allow_nan=False))["corrected"] == list(res.corrected)


def test_bootstrap_spread_matches_the_delta_method() -> None:
    rng = np.random.default_rng(3)
    truth = np.array([0.5, 0.3, 0.2])
    n, per_value = 3000, 400
    labels = draw_predictions(rng, rng.choice(3, size=n, p=truth), WEAK)
    counts = holdout_counts(rng, WEAK, per_value)
    res = bootstrap_shares(labels, counts, n_boot=1000, seed=0, pseudo_count=0)
    # p = C⁻ᵀq ⇒ dp = C⁻ᵀ(dq − dCᵀp): multinomial covariances of q̂ and of each row of Ĉ
    c = counts / counts.sum(axis=1, keepdims=True)
    q = np.array(res.raw)
    p = np.linalg.solve(c.T, q)
    cov = (np.diag(q) - np.outer(q, q)) / n
    for i in range(3):
        cov += p[i] ** 2 * (np.diag(c[i]) - np.outer(c[i], c[i])) / per_value
    inv = np.linalg.inv(c.T)
    delta_se = np.sqrt(np.diag(inv @ cov @ inv.T))
    np.testing.assert_allclose(res.corrected_draws.std(axis=0), delta_se, rtol=0.15)
    np.testing.assert_allclose(res.raw_draws.std(axis=0), np.sqrt(q * (1 - q) / n), rtol=0.1)
    np.testing.assert_allclose(res.corrected, p, atol=1e-12)


@pytest.mark.parametrize("diagonal", [0.85, 0.7])
def test_calibration_on_a_planted_skew(diagonal: float) -> None:
    """Acceptance: corrected 95 % intervals cover the true shares in ≥ 90 % of (seed, value) cases, while
    a weakened judge biases the raw shares (and their intervals miss)."""
    truth = np.array([0.6, 0.3, 0.1])  # planted skew
    off = (1 - diagonal) / 2
    confusion = WEAK if diagonal == 0.85 else np.full((3, 3), off) + np.eye(3) * (diagonal - off)
    seeds = range(100)
    covered, raw_covered, raw_shares = [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        counts = holdout_counts(rng, confusion, 300)  # the judge's held-out evaluation
        labels = draw_predictions(rng, rng.choice(3, size=2000, p=truth), confusion)
        res = bootstrap_shares(labels, counts, n_boot=1000, seed=seed)
        covered.append((np.array(res.corrected_low) <= truth) & (truth <= np.array(res.corrected_high)))
        raw_covered.append((np.array(res.raw_low) <= truth) & (truth <= np.array(res.raw_high)))
        raw_shares.append(res.raw)
    coverage, raw_coverage = np.mean(covered), np.mean(raw_covered)
    assert 0.90 <= coverage <= 0.99, coverage
    assert raw_coverage <= 0.5, raw_coverage
    # the raw shares are biased towards the judge's error: the majority value is under-counted
    bias = np.mean(raw_shares, axis=0) - truth
    expected_bias = confusion.T @ truth - truth
    np.testing.assert_allclose(bias, expected_bias, atol=0.004)
    assert bias[0] < -0.05


def test_calibration_of_an_intersection() -> None:
    colour = WEAK
    size = np.array([[0.9, 0.1], [0.15, 0.85]])
    truth = np.array([0.3, 0.25, 0.05, 0.1, 0.1, 0.2])  # joint (colour, size) shares, row-major
    covered = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        joint = rng.choice(6, size=3000, p=truth)
        true_c, true_s = np.unravel_index(joint, (3, 2))
        pred = np.stack([draw_predictions(rng, true_c, colour), draw_predictions(rng, true_s, size)], axis=1)
        counts = [holdout_counts(rng, colour, 300), holdout_counts(rng, size, 400)]
        res = bootstrap_shares(intersection_labels(pred, (3, 2)), counts, n_boot=1000, seed=seed)
        assert res.holdout_counts == ((300, 300, 300), (400, 400))
        covered.append((np.array(res.corrected_low) <= truth) & (truth <= np.array(res.corrected_high)))
    assert np.mean(covered) >= 0.9, np.mean(covered)
