"""Statistics of the bias audit: goodness-of-fit tests, effect sizes, false-discovery control and power.

What comes from scipy and what is ours:

- the tests are ``scipy.stats.power_divergence`` (Pearson's chi-square, or the G-test = log-likelihood
  ratio) and ``scipy.stats.chi2_contingency``; Benjamini–Hochberg adjusted p-values are
  ``scipy.stats.false_discovery_control``; power uses the noncentral chi-square ``scipy.stats.ncx2``;
- ours are the conventions around them: the expected counts of a test **through the judge** (under
  ``H₀: true shares = reference``, the judge's labels follow ``Cᵀ r``, not ``r``; testing raw labels
  against ``r`` would count the judge's own errors as bias), zero reference shares (a value the reference
  rules out: statistic ``inf``, p = 0 if it was observed, and left out with one degree of freedom less if
  not), the small-expected-count warning, and the policy-sized power check.

Effect size: Cohen's ``w = sqrt(Σ (p − r)² / r)`` (Cohen 1988, ch. 7; 0.1 small, 0.3 medium, 0.5 large),
which is ``sqrt(χ² / n)`` for the Pearson statistic, and Cramér's V, ``w / sqrt(k − 1)``: for a
goodness-of-fit test this is 1 at most under a uniform reference, and for a contingency table it is the
usual ``sqrt(χ² / (n (min(r, c) − 1)))``.

Power (:func:`required_n`, :func:`power_warning`): the Pearson statistic under an alternative with effect
``w`` is approximately noncentral chi-square with ``k − 1`` degrees of freedom and noncentrality ``n·w²``
(Cohen 1988, §7.3); ``required_n`` is the smallest ``n`` whose power reaches the target. A policy states a
difference in TVD (e.g. "we care about any group off by 5 points"); many share vectors lie at that TVD,
and the hardest to detect has the smallest ``w``. For a TVD ``d`` that least favourable shift moves mass
``d`` from a set of values ``S`` to the rest, in proportion to their reference shares, with ``R = r(S)``
as close to ½ as possible; then ``w = d / sqrt(R (1 − R))`` (≥ ``2d``). The minimum over all shifts is
attained there because ``Σ δ² / r`` with ``Σ_S δ = −d`` is smallest for ``δ ∝ r`` on ``S``, giving
``d² / R + d² / (1 − R)``. ``R`` is found exactly by enumerating subsets for up to 16 values and
greedily beyond (within half the largest share of ½).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.stats
from scipy.stats.contingency import association

from auditkit.errors import ConfigError, DataError

__all__ = [
    "BHResult",
    "GoodnessOfFit",
    "IndependenceTest",
    "PowerCheck",
    "benjamini_hochberg",
    "cohens_w",
    "goodness_of_fit",
    "gof_power",
    "independence_test",
    "least_favourable_shift",
    "power_warning",
    "required_n",
]

MIN_EXPECTED = 5.0  # the textbook rule for the chi-square approximation (Cochran 1954)
_TESTS = {"chi2": "pearson", "g": "log-likelihood"}
_EXACT_PARTITION_MAX_K = 16


def _none_if_nan(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _check_test(test: str) -> str:
    if test not in _TESTS:
        raise ConfigError(
            f"test must be 'chi2' (Pearson) or 'g' (G-test, log-likelihood ratio); got {test!r}."
        )
    return _TESTS[test]


def _shares(x: Any, what: str, k: int | None = None) -> np.ndarray:
    s = np.asarray(x, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or (k is not None and s.size != k):
        raise ConfigError(f"{what} must be a 1-D vector of {k or 'k'} shares; got shape {s.shape}.")
    if not np.isfinite(s).all() or (s < 0).any() or abs(s.sum() - 1.0) > 1e-6:
        raise ConfigError(f"{what} must be non-negative shares summing to 1; got {s.tolist()}.")
    return s


def _alpha(alpha: Any, what: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ConfigError(f"{what} must be a number strictly between 0 and 1, e.g. 0.05; got {alpha!r}.")
    return float(alpha)


# ----------------------------------------------------------------------------------------- effect sizes


def cohens_w(observed_shares: Any, reference_shares: Any) -> float:
    """Cohen's ``w = sqrt(Σ (p − r)² / r)``; ``inf`` if an observed value has reference share 0."""
    r = _shares(reference_shares, "reference_shares")
    p = _shares(observed_shares, "observed_shares", r.size)
    if ((r == 0) & (p > 0)).any():
        return math.inf
    keep = r > 0
    return float(np.sqrt((((p - r)[keep]) ** 2 / r[keep]).sum()))


# -------------------------------------------------------------------------------------- goodness of fit


@dataclass(frozen=True)
class GoodnessOfFit:
    """A goodness-of-fit test of observed counts against reference shares.

    Attributes
    ----------
    test
        ``"chi2"`` or ``"g"``.
    statistic, p_value, dof
        The test statistic, its p-value and degrees of freedom (``inf``/0 for a value the reference rules
        out but that was observed).
    n, k
        Sample size and number of values.
    w
        Cohen's w of the observed shares against the expected shares (through the judge, if given).
    cramers_v
        ``w / sqrt(k − 1)`` (NaN for k = 1).
    min_expected
        The smallest expected count among values with a positive expected share.
    through_judge
        Whether the expected counts were ``n·Cᵀr`` (the judge's labels under H₀) rather than ``n·r``.
    """

    test: str
    statistic: float
    p_value: float
    dof: int
    n: int
    k: int
    w: float
    cramers_v: float
    min_expected: float
    through_judge: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (``inf``/NaN become ``None``)."""
        return {
            "test": self.test,
            "statistic": _none_if_nan(self.statistic),
            "p_value": self.p_value,
            "dof": self.dof,
            "n": self.n,
            "k": self.k,
            "w": _none_if_nan(self.w),
            "cramers_v": _none_if_nan(self.cramers_v),
            "min_expected": self.min_expected,
            "through_judge": self.through_judge,
        }


def goodness_of_fit(
    counts: Any,
    reference_shares: Any,
    test: str = "chi2",
    *,
    confusion: Any = None,
) -> GoodnessOfFit:
    """Test whether ``counts`` were drawn from the reference shares.

    Parameters
    ----------
    counts
        Observed counts per value (the judge's labels on generated images), length k.
    reference_shares
        Reference shares, length k (a :class:`~auditkit.bias.representation.Reference` works too).
    test
        ``"chi2"``: Pearson's chi-square; ``"g"``: G-test (log-likelihood ratio), both via
        ``scipy.stats.power_divergence``.
    confusion
        The judge's confusion rates ``P(predicted | true)`` (k×k). If given, the null hypothesis is "the
        *true* shares are the reference" and the expected label counts are ``n·Cᵀr``. The confusion matrix
        is taken as known: its own estimation error is not in the p-value (it is in the bootstrap
        intervals of :func:`~auditkit.bias.correction.bootstrap_shares`).

    Warns
    -----
    UserWarning
        When an expected count is below 5: the chi-square approximation is then unreliable.
    """
    method = _check_test(test)
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise DataError(f"counts must be a 1-D vector over at least 2 values; got shape {c.shape}.")
    if not np.isfinite(c).all() or (c < 0).any() or (c != np.round(c)).any():
        raise DataError(f"counts must be non-negative whole numbers; got {c.tolist()}.")
    n = float(c.sum())
    if n == 0:
        raise DataError(
            "there is nothing to test: all counts are 0 (an empty sample). Generate images first."
        )
    ref = reference_shares.array() if hasattr(reference_shares, "array") else reference_shares
    r = _shares(ref, "reference_shares", c.size)
    if confusion is not None:
        cm = np.asarray(confusion, dtype=np.float64)
        if cm.shape != (c.size, c.size) or not np.isfinite(cm).all() or (cm < 0).any():
            raise ConfigError(
                f"confusion must be the judge's {c.size}×{c.size} rates P(predicted | true) without NaN rows "
                f"(every value needs held-out images); got {cm.tolist()}."
            )
        if (cm.sum(axis=1) <= 0).any():
            raise ConfigError("confusion has an all-zero row: a value without held-out images.")
        expected_shares = (cm / cm.sum(axis=1, keepdims=True)).T @ r
    else:
        expected_shares = r
    keep = expected_shares > 0
    impossible = bool((~keep & (c > 0)).any())
    k_used = int(keep.sum())
    w = cohens_w(c / n, expected_shares / expected_shares.sum())
    expected = n * expected_shares[keep]
    min_expected = float(expected.min())
    if impossible:
        statistic, p_value = math.inf, 0.0
    elif k_used < 2:
        statistic, p_value = 0.0, 1.0  # a single possible value: nothing to test
    else:
        # f_exp renormalised to the same sum to the last ulp, as power_divergence demands
        f_exp = expected * (c[keep].sum() / expected.sum())
        res = scipy.stats.power_divergence(c[keep], f_exp=f_exp, lambda_=method)
        statistic, p_value = float(res.statistic), float(res.pvalue)
    if min_expected < MIN_EXPECTED:
        need = math.ceil(MIN_EXPECTED / float(expected_shares[keep].min()))
        warnings.warn(
            f"an expected count is {min_expected:.3g} (< {MIN_EXPECTED:g}); the {test} test's p-value is "
            f"unreliable. With these shares every expected count reaches {MIN_EXPECTED:g} from n = {need} "
            "images; or merge rare values.",
            UserWarning,
            stacklevel=2,
        )
    return GoodnessOfFit(
        test=test,
        statistic=statistic,
        p_value=p_value,
        dof=max(k_used - 1, 0),
        n=int(n),
        k=int(c.size),
        w=w,
        cramers_v=w / math.sqrt(c.size - 1),
        min_expected=min_expected,
        through_judge=confusion is not None,
    )


@dataclass(frozen=True)
class IndependenceTest:
    """A test of independence on a contingency table (e.g. condition × attribute value).

    Attributes
    ----------
    test, statistic, p_value, dof
        As in :class:`GoodnessOfFit`.
    n
        Total count.
    cramers_v
        Cramér's V of the table, in [0, 1].
    min_expected
        Smallest expected count under independence.
    """

    test: str
    statistic: float
    p_value: float
    dof: int
    n: int
    cramers_v: float
    min_expected: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        return {
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "dof": self.dof,
            "n": self.n,
            "cramers_v": self.cramers_v,
            "min_expected": self.min_expected,
        }


def independence_test(table: Any, test: str = "chi2") -> IndependenceTest:
    """Whether an attribute's distribution depends on another variable (e.g. a generator's condition).

    Parameters
    ----------
    table
        Counts, rows = the other variable's values, columns = the attribute's values. Rows or columns
        that are all zero are dropped.
    test
        ``"chi2"`` or ``"g"``; no continuity correction (``scipy.stats.chi2_contingency``).
    """
    method = _check_test(test)
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or not np.isfinite(t).all() or (t < 0).any() or (t != np.round(t)).any():
        raise DataError(f"table must be a 2-D array of non-negative counts; got {t.tolist()}.")
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        raise DataError(
            f"the table needs at least 2 non-empty rows and 2 non-empty columns to test independence; "
            f"got {t.shape[0]}×{t.shape[1]} after dropping empty ones."
        )
    res = scipy.stats.chi2_contingency(t, correction=False, lambda_=method)
    min_expected = float(res.expected_freq.min())
    if min_expected < MIN_EXPECTED:
        warnings.warn(
            f"an expected count is {min_expected:.3g} (< {MIN_EXPECTED:g}); the {test} independence test's "
            "p-value is unreliable. Collect more images per row, or merge rare values.",
            UserWarning,
            stacklevel=2,
        )
    return IndependenceTest(
        test=test,
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        dof=int(res.dof),
        n=int(t.sum()),
        cramers_v=float(association(t.astype(np.int64), method="cramer")),
        min_expected=min_expected,
    )


# ------------------------------------------------------------------------------------ multiple testing


@dataclass(frozen=True)
class BHResult:
    """Benjamini–Hochberg decisions over all tests of an audit.

    Attributes
    ----------
    reject
        Per test, whether it is a discovery at false-discovery rate ``alpha``.
    p_adjusted
        BH-adjusted p-values (``reject = p_adjusted ≤ alpha``).
    alpha
        The false-discovery rate controlled.
    """

    reject: tuple[bool, ...]
    p_adjusted: tuple[float, ...]
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        return {"reject": list(self.reject), "p_adjusted": list(self.p_adjusted), "alpha": self.alpha}


def benjamini_hochberg(p_values: Any, alpha: float = 0.05) -> BHResult:
    """Benjamini–Hochberg step-up procedure (independent or positively dependent tests).

    Adjusted p-values are ``scipy.stats.false_discovery_control(p, method="bh")``; a test is rejected when
    its adjusted p-value is at most ``alpha``, which is the step-up rule "reject the ``i`` smallest
    p-values, ``i`` the largest index with ``p₍ᵢ₎ ≤ i·alpha/m``".
    """
    a = _alpha(alpha)
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"p_values must be a 1-D vector; got shape {p.shape}.")
    if p.size == 0:
        return BHResult((), (), a)
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise DataError(f"p-values must lie in [0, 1]; got {p.tolist()}.")
    adjusted = scipy.stats.false_discovery_control(p, method="bh")
    return BHResult(tuple(bool(x) for x in adjusted <= a), tuple(float(x) for x in adjusted), a)


# ------------------------------------------------------------------------------------------------ power


def _check_w_k(w: Any, k: Any) -> tuple[float, int]:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ConfigError(f"k (the number of values) must be an integer ≥ 2; got {k!r}.")
    if isinstance(w, bool) or not isinstance(w, int | float) or not (math.isfinite(w) and w > 0):
        raise ConfigError(
            f"the effect size w must be a finite number > 0 (no sample size detects w = 0); got {w!r}."
        )
    return float(w), int(k)


def gof_power(n: float, w: float, k: int, alpha: float = 0.05) -> float:
    """Power of the chi-square goodness-of-fit test at level ``alpha`` for effect ``w`` with ``n`` samples.

    Noncentral chi-square approximation: ``P(χ²_{k−1}(n·w²) > χ²_{k−1, 1−α})``.
    """
    w, k = _check_w_k(w, k)
    critical = scipy.stats.chi2.isf(_alpha(alpha), k - 1)
    return float(scipy.stats.ncx2.sf(critical, k - 1, n * w * w))


def required_n(effect_size_w: float, k: int, alpha: float = 0.05, power: float = 0.8) -> int:
    """Smallest sample size at which the chi-square goodness-of-fit test has the given power.

    Parameters
    ----------
    effect_size_w
        Cohen's w of the alternative to detect.
    k
        Number of values (the test has ``k − 1`` degrees of freedom).
    alpha
        Test level.
    power
        Target power.
    """
    w, k = _check_w_k(effect_size_w, k)
    alpha, power = _alpha(alpha), _alpha(power, "power")
    critical = scipy.stats.chi2.isf(alpha, k - 1)
    if power <= alpha:
        return 1
    # noncentrality needed, then n = λ / w²; the power is increasing in λ
    lam = scipy.optimize.brentq(
        lambda x: scipy.stats.ncx2.sf(critical, k - 1, x) - power, 1e-9, 1e4, xtol=1e-12, rtol=1e-14
    )
    n = max(math.ceil(lam / (w * w) - 1e-9), 1)
    # ceil of a root found to 1e-12 can land one short when λ/w² is within round-off of an integer
    while gof_power(n, w, k, alpha) < power:
        n += 1
    return n


def _best_partition(r: np.ndarray, d: float) -> np.ndarray:
    """A subset S (boolean mask) maximising R(1 − R), R = r(S), among those with r(S) ≥ d (S loses mass)."""
    k = r.size
    if k <= _EXACT_PARTITION_MAX_K:
        masks = ((np.arange(1, 2**k - 1)[:, None] >> np.arange(k)) & 1).astype(bool)
        sums = masks.astype(np.float64) @ r
        ok = (sums >= d - 1e-15) & (sums < 1.0 - 1e-15)
        if not ok.any():
            raise ConfigError(
                f"a TVD of {d} cannot be reached from reference shares {r.tolist()} by moving mass between "
                "values; the policy's difference must be below 1 − (largest reference share)."
            )
        score = np.where(ok, sums * (1.0 - sums), -1.0)
        return masks[int(np.argmax(score))]
    order = np.argsort(-r)
    mask = np.zeros(k, dtype=bool)
    total = 0.0
    for i in order:  # largest first into the lighter side
        if total + r[i] <= 0.5 or total == 0.0:
            mask[i] = True
            total += r[i]
    if r[mask].sum() < d:
        mask = ~mask & (r > 0)
    return mask


def least_favourable_shift(reference_shares: Any, tvd: float) -> tuple[np.ndarray, float]:
    """The share vector at TVD ``tvd`` from the reference that is hardest to detect, and its Cohen's w.

    Returns
    -------
    tuple
        ``(shares, w)``: mass ``tvd`` moved from a set of values S to the others, proportionally to their
        reference shares, with ``r(S)`` as close to ½ as feasible (module docstring).
    """
    r = _shares(reference_shares, "reference_shares")
    if isinstance(tvd, bool) or not isinstance(tvd, int | float) or not 0 < tvd < 1:
        raise ConfigError(f"the policy's TVD must be a number strictly between 0 and 1; got {tvd!r}.")
    if (r > 0).sum() < 2:
        raise ConfigError("the reference puts all its mass on one value; there is no shift to detect.")
    pos = r > 0
    losing = _best_partition(r[pos], float(tvd))
    big = np.zeros(r.size, dtype=bool)
    big[np.flatnonzero(pos)[losing]] = True
    gaining = pos & ~big
    p = r.copy()
    p[big] -= tvd * r[big] / r[big].sum()
    p[gaining] += tvd * r[gaining] / r[gaining].sum()
    p = np.maximum(p, 0.0)
    return p / p.sum(), cohens_w(p / p.sum(), r)


@dataclass(frozen=True)
class PowerCheck:
    """Whether a sample is large enough to detect a policy-sized difference.

    Attributes
    ----------
    n
        Images audited.
    policy_tvd
        The smallest TVD from the reference the policy cares about.
    w
        Cohen's w of the least favourable shift at that TVD.
    power
        Power of the chi-square test at ``n`` (level ``alpha``).
    required_n
        Images needed for the target power.
    alpha, target_power
        Test level and target power.
    alternative
        The least favourable share vector.
    message
        A warning for the report when ``n < required_n``, else ``None``.
    """

    n: int
    policy_tvd: float
    w: float
    power: float
    required_n: int
    alpha: float
    target_power: float
    alternative: tuple[float, ...]
    message: str | None

    @property
    def sufficient(self) -> bool:
        """Whether ``n`` reaches ``required_n``."""
        return self.n >= self.required_n

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        return {
            "n": self.n,
            "policy_tvd": self.policy_tvd,
            "w": self.w,
            "power": self.power,
            "required_n": self.required_n,
            "alpha": self.alpha,
            "target_power": self.target_power,
            "alternative": list(self.alternative),
            "sufficient": self.sufficient,
            "message": self.message,
        }


def power_warning(
    n: int,
    policy_tvd: float,
    reference_shares: Any,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    label: str = "",
) -> PowerCheck:
    """Check that ``n`` images can detect the smallest difference a policy cares about.

    The difference is a TVD ``policy_tvd`` from the reference, realised as the least favourable shift
    (:func:`least_favourable_shift`), so the required n holds for every alternative at that TVD.

    Parameters
    ----------
    n
        Images audited (per attribute, intersection or condition).
    policy_tvd
        The smallest TVD from the reference that the policy wants detected.
    reference_shares
        Reference shares (or a :class:`~auditkit.bias.representation.Reference`).
    alpha, power
        Test level and target power.
    label
        What is audited, for the message (e.g. ``"colour"``).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ConfigError(f"n must be a non-negative integer; got {n!r}.")
    ref = reference_shares.array() if hasattr(reference_shares, "array") else reference_shares
    r = _shares(ref, "reference_shares")
    alt, w = least_favourable_shift(r, policy_tvd)
    alpha, power = _alpha(alpha), _alpha(power, "power")
    k = int((r > 0).sum())
    need = required_n(w, k, alpha, power)
    achieved = gof_power(n, w, k, alpha) if n > 0 else 0.0
    message = None
    if n < need:
        what = f" for {label}" if label else ""
        message = (
            f"{n} images{what} give {achieved:.0%} power to detect a TVD of {policy_tvd:g} from the "
            f"reference (least favourable shift, Cohen's w = {w:.3g}, α = {alpha:g}); {power:.0%} power "
            f"needs n ≥ {need}. A finding of 'no significant difference' is weak evidence at this n."
        )
    return PowerCheck(
        n=int(n),
        policy_tvd=float(policy_tvd),
        w=float(w),
        power=float(achieved),
        required_n=need,
        alpha=alpha,
        target_power=power,
        alternative=tuple(float(x) for x in alt),
        message=message,
    )
