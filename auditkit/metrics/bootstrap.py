"""Bootstrap confidence intervals for FID, KID, PRDC and any statistic of feature sets.

Each sample (the rows of an N_i×D tensor or array) is resampled with replacement, independently of the
others, ``n_resamples`` times; the statistic is recomputed on every resample and the interval is read off
that bootstrap distribution θ*₁..θ*_B around the estimate θ̂ (Efron & Tibshirani 1993):

- ``"percentile"``: the α/2 and 1 − α/2 quantiles q_lo, q_hi of the θ* (linear interpolation, as
  ``numpy.quantile`` and ``scipy.stats.bootstrap``). Right for (nearly) unbiased statistics.
- ``"basic"`` (reverse percentile): [2θ̂ − q_hi, 2θ̂ − q_lo]. It reads the bootstrap's shift mean(θ*) − θ̂
  as the estimator's bias and removes it: an interval for the bias-free (n → ∞) value.
- ``"centred"``: [q_lo − b, q_hi − b] with b = mean(θ*) − θ̂: the bootstrap's spread and shape around the
  estimate. An interval for E[θ̂] at these sample sizes, whatever the shift of the resamples.

Randomness: sample i is resampled from its own stream ``numpy.random.default_rng(SeedSequence(seed)
.spawn(k)[i])`` (k samples), one ``integers(0, N_i, N_i)`` draw per resample. So the same seed gives the
same intervals, and a one-sample call draws exactly what ``scipy.stats.bootstrap`` draws from that stream
(its values equal scipy's ``method='percentile'`` and ``'basic'``). Why not scipy itself: it resamples
whole arrays at once (n_resamples × N × D in memory for feature matrices) and calls the statistic
vectorised, which FID and PRDC are not.

What the intervals mean, per metric. Every :class:`Interval` reports ``bias`` = mean(θ*) − θ̂. Coverages
quoted below were measured on Gaussians (D = 8–64, n = 200–300, 60–200 repetitions of 100–200 resamples);
they are why the metric helpers default to ``"centred"``.

- FID is biased upward at finite n (the plug-in covariances add terms of order D/n), and a resample is
  biased again by about as much, so ``bias`` estimates the finite-n bias. ``"centred"`` is an interval
  for the finite-n FID, E[FID̂] at these n, not FID∞ (measured coverage 95 %); compare FIDs only at equal
  n. ``"basic"`` is an interval for FID∞ (96 %). ``"percentile"`` is right for neither (85 % and 38 %).
- KID (:func:`kid_ci`) is computed as the full-sample unbiased MMD² (every pair, the quantity KID's random
  subsets average to), from the kernel matrices once for all resamples; in a resample, pairs of copies of
  the same row are left out, as the diagonal is in the U-statistic, so the bootstrap stays centred and all
  three methods cover the true MMD² (93–97 %). When the two distributions are (nearly) equal the MMD² is a
  degenerate U-statistic and intervals around 0 are unreliable; use a permutation test for equality.
- PRDC counts k-nearest-neighbour balls, and a resample's duplicated rows are each other's neighbours at
  distance 0, shrinking the balls: the bootstrap values of all four scores are biased down (by 0.08–0.17
  at D = 16–64, n = 200, several standard errors), so ``"percentile"`` and ``"basic"`` intervals miss the
  truth (coverage 0–60 % for precision, recall and coverage). ``"centred"`` covers E[score] at these n
  (93–100 %), conservatively: duplicates also widen the spread (up to 1.7× for coverage).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, DataError
from auditkit.metrics.frechet import (
    FrechetReference,
    feature_pair,
    feature_statistics,
    fid_from_features,
)
from auditkit.metrics.kid import _features
from auditkit.metrics.prdc import precision_recall_density_coverage
from auditkit.metrics.prdc_resample import PRDCResampler, TooManyPairs, counts_of

ArrayLike = torch.Tensor | np.ndarray
Statistic = Callable[..., float | Mapping[str, float]]

_METHODS = ("percentile", "basic", "centred")
_KID_BLOCK_BYTES = 64 * 2**20  # float64 kernel block per step of kid_ci


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval.

    Attributes
    ----------
    estimate
        The statistic on the original samples.
    low, high
        Interval bounds.
    confidence
        Nominal coverage, e.g. 0.95.
    n_resamples
        Number of bootstrap resamples.
    method
        ``"percentile"``, ``"basic"`` or ``"centred"``.
    bias
        Mean of the bootstrap values minus ``estimate``: for smooth statistics such as FID the bootstrap
        estimate of the estimator's bias; for k-NN scores mostly an artefact of duplicated rows.
    std_error
        Standard deviation of the bootstrap values (ddof = 1).
    distribution
        The bootstrap values themselves (not part of :meth:`to_dict`).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    method: str
    bias: float
    std_error: float
    distribution: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (floats, ints, strings), without the bootstrap values."""
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "method": self.method,
            "bias": self.bias,
            "std_error": self.std_error,
        }


# ------------------------------------------------------------------------------------------ validation


def _check_options(n_resamples: int, confidence: float, seed: int, method: str) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or n_resamples < 10:
        raise ConfigError(
            f"n_resamples must be an integer ≥ 10 (200 or more for 95 % intervals); got {n_resamples!r}."
        )
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float | np.floating)
        or not 0.0 < float(confidence) < 1.0
    ):
        raise ConfigError(
            f"confidence must be a number strictly between 0 and 1, e.g. 0.95; got {confidence!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}.")
    if method not in _METHODS:
        raise ConfigError(f"method must be one of {', '.join(map(repr, _METHODS))}; got {method!r}.")


def _as_sample(x: Any, position: int) -> ArrayLike:
    if not isinstance(x, torch.Tensor | np.ndarray):
        x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise DataError(
            f"sample {position} has no rows to resample (shape {tuple(x.shape)}); pass an N×D array, N ≥ 1."
        )
    return x


# -------------------------------------------------------------------------------------------- resampling


def _streams(seed: int, count: int) -> list[np.random.Generator]:
    """One independent generator per sample (adding a sample does not change the others' resamples)."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(int(seed)).spawn(count)]


def _take(sample: ArrayLike, index: np.ndarray) -> ArrayLike:
    if isinstance(sample, torch.Tensor):
        return sample[torch.from_numpy(index).to(sample.device)]
    return sample[index]


def _scalar(value: Any, what: str) -> float:
    try:
        v = float(value.item() if isinstance(value, torch.Tensor | np.ndarray) else value)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"the statistic returned {type(value).__name__} on {what}; it must return one number or a dict "
            "of numbers."
        ) from exc
    if not math.isfinite(v):
        raise DataError(
            f"the statistic returned {v} on {what}; a bootstrap interval needs finite values (check the "
            "samples, or provide more rows so that every resample is valid)."
        )
    return v


def _values(result: Any, what: str) -> dict[str | None, float]:
    """A statistic's result as {key: float}; a plain number under the key None."""
    if isinstance(result, Mapping):
        return {str(key): _scalar(v, f"{what} (key {key!r})") for key, v in result.items()}
    return {None: _scalar(result, what)}


def _interval(estimate: float, values: np.ndarray, confidence: float, method: str) -> Interval:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])  # linear interpolation, as scipy's
    shift = float(values.mean() - estimate)
    if method == "basic":
        low, high = 2.0 * estimate - high, 2.0 * estimate - low
    elif method == "centred":  # the bootstrap distribution moved so that its mean is the estimate
        low, high = low - shift, high - shift
    return Interval(
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        confidence=float(confidence),
        n_resamples=len(values),
        method=method,
        bias=shift,
        std_error=float(values.std(ddof=1)),
        distribution=values,
    )


def _collect(
    estimate: dict[str | None, float],
    resampled: list[dict[str | None, float]],
    confidence: float,
    method: str,
) -> Interval | dict[str, Interval]:
    for b, values in enumerate(resampled):
        if values.keys() != estimate.keys():
            raise DataError(
                f"the statistic returned keys {sorted(map(str, values))} on resample {b} but "
                f"{sorted(map(str, estimate))} on the original samples; it must return the same keys."
            )
    out = {
        key: _interval(value, np.array([v[key] for v in resampled]), confidence, method)
        for key, value in estimate.items()
    }
    if list(out) == [None]:  # a float-valued statistic
        return out[None]
    return {str(key): value for key, value in out.items()}


def _bootstrap(
    evaluate: Callable[[list[np.ndarray] | None], Any],
    sizes: list[int],
    n_resamples: int,
    confidence: float,
    seed: int,
    method: str,
    progress: bool,
    desc: str,
) -> Interval | dict[str, Interval]:
    """Run ``evaluate(None)`` (the estimate) and ``evaluate(indices)`` for each resample's row indices."""
    estimate = _values(evaluate(None), "the original samples")
    streams = _streams(seed, len(sizes))
    resampled = []
    # The estimate has warned already (e.g. FID with fewer samples than dimensions); do not repeat that
    # warning for every resample.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for b in tqdm(range(n_resamples), desc=desc, unit="resample", disable=not progress):
            indices = [rng.integers(0, n, n) for rng, n in zip(streams, sizes, strict=True)]
            resampled.append(_values(evaluate(indices), f"resample {b}"))
    return _collect(estimate, resampled, confidence, method)


# ----------------------------------------------------------------------------------------------- API


def bootstrap_ci(
    statistic: Statistic,
    *samples: ArrayLike,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    progress: bool = False,
) -> Interval | dict[str, Interval]:
    """Bootstrap confidence interval of ``statistic(*samples)``.

    Parameters
    ----------
    statistic
        Function of the samples returning a float, or a dict of floats (one interval per key).
    *samples
        One or more samples (tensors or arrays); the rows (first axis) of each are resampled with
        replacement, independently of the other samples.
    n_resamples
        Number of resamples (≥ 10; 200 is a minimum for 95 % intervals, 1000+ for stable tails).
    confidence
        Nominal coverage, strictly between 0 and 1.
    seed
        Seed of the resampling (see the module docstring for the exact streams).
    method
        ``"percentile"``, ``"basic"`` or ``"centred"`` (module docstring: which to use for what).
    progress
        Show a progress bar over the resamples.

    Returns
    -------
    Interval or dict of Interval
        An :class:`Interval` for a float-valued statistic, a dict of them for a dict-valued one.

    Raises
    ------
    ConfigError
        If ``n_resamples`` < 10, ``confidence`` is not in (0, 1), or ``seed`` / ``method`` are invalid.
    DataError
        If no sample is given, a sample has no rows, or the statistic returns a non-number, a non-finite
        value or different keys on a resample.

    Notes
    -----
    ``UserWarning``s raised while evaluating the resamples are silenced: they repeat what the estimate on
    the original samples (evaluated first, outside that filter) has warned already.
    """
    _check_options(n_resamples, confidence, seed, method)
    if not samples:
        raise DataError("bootstrap_ci needs at least one sample to resample after the statistic.")
    data = [_as_sample(x, i) for i, x in enumerate(samples)]

    def evaluate(indices: list[np.ndarray] | None) -> Any:
        if indices is None:
            return statistic(*data)
        return statistic(*(_take(x, i) for x, i in zip(data, indices, strict=True)))

    return _bootstrap(
        evaluate, [len(x) for x in data], n_resamples, confidence, seed, method, progress, "bootstrap"
    )


def fid_ci(
    real: ArrayLike,
    fake: ArrayLike,
    *,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "centred",
    resample_real: bool = True,
    progress: bool = False,
) -> Interval:
    """Bootstrap interval of the FID between two N×D feature sets (``fid_from_features``).

    Each resample recomputes the means and covariances of the resampled rows (N·D² each) and the Fréchet
    distance (about 2.7·D³): cheap at 64-d, about a second per resample at 2048-d on one CPU core.

    Parameters
    ----------
    real, fake
        N×D features (tensors stay on their device for the statistics).
    resample_real
        Resample the real set too (default). With ``False`` the real statistics and their Cholesky factor
        are computed once and the interval reflects only the generated sample's variability (the right
        choice when the reference statistics are fixed, e.g. a published reference set).
    method
        ``"centred"`` (default): an interval for the finite-n FID, E[FID̂] at these sample sizes, not FID∞;
        ``"basic"``: for FID∞ (the bootstrap bias removed); ``"percentile"`` covers neither well.
    n_resamples, confidence, seed, progress
        As in :func:`bootstrap_ci` (real is sample 0, fake sample 1).

    Returns
    -------
    Interval
        ``bias`` is the bootstrap estimate of the finite-n bias (so ``estimate − bias`` estimates FID∞).
    """
    _check_options(n_resamples, confidence, seed, method)
    r, f = feature_pair(real, fake)
    f = f.to(r.device)
    reference = None if resample_real else FrechetReference.from_features(r)

    def evaluate(indices: list[np.ndarray] | None) -> float:
        fb = f if indices is None else _take(f, indices[1])
        if reference is not None:
            return reference.distance(*feature_statistics(fb), n=len(fb))
        return fid_from_features(r if indices is None else _take(r, indices[0]), fb)

    out = _bootstrap(evaluate, [len(r), len(f)], n_resamples, confidence, seed, method, progress, "FID")
    assert isinstance(out, Interval)
    return _within(out, 0.0, None)


def prdc_ci(
    real: ArrayLike,
    fake: ArrayLike,
    k: int = 5,
    *,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "centred",
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Interval]:
    """Bootstrap intervals of precision, recall, density and coverage (``precision_recall_density_coverage``).

    Both sets are resampled, and each resample's scores are exactly PRDC recomputed on the resampled
    matrices; they are derived from neighbour lists and cross pairs computed once
    (:class:`~auditkit.metrics.prdc_resample.PRDCResampler`), so a resample costs O(N·k + pairs) instead of
    a k-NN pass over both sets (about 100× less at 20 000 × 5000; ``benchmarks/bench_prdc_bootstrap.py``).
    Only when a generator's samples fall into so few real balls that the pairs would take more than
    ``MAX_PAIRS`` is every resample recomputed instead (same values, slower). Duplicated rows of a
    resample are zero-distance neighbours, which biases the bootstrap values downward by several standard
    errors (module docstring), so only the default ``method="centred"`` gives usable intervals: for the
    scores' expectations at these sample sizes, somewhat conservative.

    Parameters
    ----------
    real, fake
        N×D and M×D features.
    k
        k of the k-NN radii (``nearest_k``), below N and M.
    chunk_size, device
        Passed to ``precision_recall_density_coverage``.
    n_resamples, confidence, seed, method, progress
        As in :func:`bootstrap_ci` (real is sample 0, fake sample 1).

    Returns
    -------
    dict of Interval
        Keys ``precision``, ``recall``, ``density``, ``coverage``.
    """
    _check_options(n_resamples, confidence, seed, method)
    r, f = _as_sample(real, 0), _as_sample(fake, 1)
    try:
        resampler: PRDCResampler | None = PRDCResampler(
            r, f, k, chunk_size=chunk_size, device=device, progress=progress
        )
    except TooManyPairs:
        resampler = None  # recompute every resample: the same values, at the cost of a full PRDC each

    def evaluate(indices: list[np.ndarray] | None) -> dict[str, float]:
        if resampler is not None:  # the original samples are the resample that holds every row once
            if indices is None:
                return resampler(np.ones(len(r), dtype=np.int64), np.ones(len(f), dtype=np.int64))
            return resampler(counts_of(indices[0], len(r)), counts_of(indices[1], len(f)))
        rb, fb = (r, f) if indices is None else (_take(r, indices[0]), _take(f, indices[1]))
        return precision_recall_density_coverage(
            rb, fb, k, chunk_size=chunk_size, device=device, progress=False
        )

    out = _bootstrap(evaluate, [len(r), len(f)], n_resamples, confidence, seed, method, progress, "PRDC")
    assert isinstance(out, dict)
    bounds = {"precision": (0.0, 1.0), "recall": (0.0, 1.0), "coverage": (0.0, 1.0), "density": (0.0, None)}
    return {key: _within(iv, *bounds[key]) for key, iv in out.items()}


def _within(interval: Interval, lowest: float | None, highest: float | None) -> Interval:
    """The interval clipped to the values the metric can take.

    "basic" and "centred" intervals shift the bootstrap quantiles, so near a bound (recall 0.99, FID near 0)
    they can reach past it (recall 1.02); no true value lies there, so the clipped interval covers exactly
    what the shifted one covers.
    """
    low = interval.low if lowest is None else max(interval.low, lowest)
    high = interval.high if highest is None else min(interval.high, highest)
    return replace(interval, low=low, high=high)


def _kernel(a: torch.Tensor, b: torch.Tensor, gamma: float, coef: float, degree: int) -> torch.Tensor:
    return (a @ b.T).mul_(gamma).add_(coef).pow_(degree)


def _weighted_sums(
    x: torch.Tensor, weights_x: torch.Tensor, y: torch.Tensor, weights_y: torch.Tensor, kernel, bar: tqdm
) -> torch.Tensor:
    """Σᵢⱼ wₓ[b, i] k(xᵢ, yⱼ) w_y[b, j] for every row b of the weights, one block of x rows at a time."""
    step = max(1, _KID_BLOCK_BYTES // (8 * len(y)))
    total = torch.zeros(len(weights_x), dtype=torch.float64, device=x.device)
    for a in range(0, len(x), step):
        block = kernel(x[a : a + step], y) @ weights_y.T  # rows of x × resamples
        total += (block * weights_x[:, a : a + step].T).sum(0)
        bar.update()
    return total


def kid_ci(
    real: ArrayLike,
    fake: ArrayLike,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    n_resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    method: str = "centred",
    progress: bool = False,
) -> Interval:
    """Bootstrap interval of the KID as the full-sample unbiased MMD² under (γ x·y + c)^d.

    The estimate is ``polynomial_mmd2(real, fake)`` over all pairs (for equal set sizes; the unbiased
    form with separate n₁, n₂ otherwise): what ``kernel_inception_distance``'s subset mean estimates,
    without its subset noise. A resample is represented by its row counts c; its value is

        Σ_{i≠j} cᵢcⱼ k(xᵢ, xⱼ) / Σ_{i≠j} cᵢcⱼ + (same for y) − 2 Σᵢⱼ cᵢdⱼ k(xᵢ, yⱼ) / (n₁n₂),

    i.e. the resampled U-statistic with pairs of copies of one row left out (like its diagonal). All
    resamples are evaluated in one pass over the kernel matrices, block by block: (n₁ + n₂)²·(D + B)
    multiply-adds, memory O(block + B·(n₁ + n₂)), on the features' device.

    Parameters
    ----------
    real, fake
        N×D features, N ≥ 2 each.
    degree, gamma, coef
        Polynomial kernel as in ``kernel_inception_distance`` (``gamma=None``: 1/D).
    n_resamples, confidence, seed, method, progress
        As in :func:`bootstrap_ci` (real is sample 0, fake sample 1). The MMD² is unbiased, so the three
        methods agree closely here; ``"centred"`` is the default for uniformity with the other metrics.

    Returns
    -------
    Interval
        Of the MMD² (the estimate equals ``polynomial_mmd2(real, fake)`` for equal sizes).
    """
    _check_options(n_resamples, confidence, seed, method)
    x = _features(real, "real")
    y = _features(fake, "fake", device=x.device)
    if x.shape[1] != y.shape[1]:
        raise DataError(
            f"real and fake features differ in dimension: {x.shape[1]} vs {y.shape[1]}; both must come "
            "from the same feature extractor."
        )
    if len(x) < 2 or len(y) < 2:
        raise DataError(f"KID needs at least 2 samples per set; got real {len(x)}, fake {len(y)}.")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise ConfigError(f"degree must be a positive integer; got {degree!r}.")
    g = 1.0 / x.shape[1] if gamma is None else float(gamma)

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _kernel(a, b, g, coef, degree)

    # Row 0 of the count matrices is the original sample (all ones), rows 1.. the resamples, drawn from the
    # same streams as bootstrap_ci's, so resample b is the same rows there and here.
    streams = _streams(seed, 2)
    counts = []
    for rng, n in zip(streams, (len(x), len(y)), strict=True):
        c = np.ones((n_resamples + 1, n))
        for b in range(n_resamples):
            c[b + 1] = np.bincount(rng.integers(0, n, n), minlength=n)
        counts.append(torch.from_numpy(c).to(x.device))
    cx, cy = counts

    def diagonal(z: torch.Tensor) -> torch.Tensor:
        return (z.square().sum(1) * g + coef) ** degree

    steps = sum(
        math.ceil(len(a) / max(1, _KID_BLOCK_BYTES // (8 * len(b)))) for a, b in ((x, x), (y, y), (x, y))
    )
    with tqdm(total=steps, desc="KID", unit="block", disable=not progress) as bar:
        within_x = _weighted_sums(x, cx, x, cx, kernel, bar) - cx.square() @ diagonal(x)
        within_y = _weighted_sums(y, cy, y, cy, kernel, bar) - cy.square() @ diagonal(y)
        between = _weighted_sums(x, cx, y, cy, kernel, bar)
    pairs_x = len(x) ** 2 - cx.square().sum(1)
    pairs_y = len(y) ** 2 - cy.square().sum(1)
    if bool((pairs_x == 0).any() | (pairs_y == 0).any()):
        raise DataError(
            "a resample drew one row only, so its within-set kernel mean is undefined; provide more samples."
        )
    mmd2 = (within_x / pairs_x + within_y / pairs_y - 2.0 * between / (len(x) * len(y))).cpu().numpy()
    return _interval(float(mmd2[0]), mmd2[1:].copy(), float(confidence), method)


__all__ = ["Interval", "bootstrap_ci", "fid_ci", "kid_ci", "prdc_ci"]
