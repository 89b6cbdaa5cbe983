"""Memorization: do generated samples sit closer to the training set than training points sit to each other?

For each generated sample we find its nearest training point (distance and index) and compare those
distances with the training set's own leave-one-out nearest-neighbour distances: the typical spacing of
the data. This is the idea behind the data-copying test of Meehan et al. (2020, "A non-parametric test to
detect data-copying in generative models", AISTATS) and the authenticity score of Alaa et al. (2022, "How
faithful is your synthetic data?", ICML): a model that generalises places samples about as far from the
training points as a fresh draw from the data would be; a model that copies places them much closer.

Numbers reported (all distances Euclidean, in feature units):

- ``distance_ratio`` = median generated→training NN distance / median training leave-one-out NN distance.
  About 1 for fresh samples from the training distribution (a fresh point is one more point of the same
  cloud); well below 1 when samples sit on top of training points. Above 1 means "far from the data"
  (poor quality), not memorization.
- ``per_sample_ratio`` = d_gen(i) / median(d_train), for ranking suspicious samples.
- ``near_copy_rate`` = share of generated samples with d_gen(i) < ``threshold`` × median(d_train), and
  ``baseline_near_copy_rate``, the same share among the training points' own leave-one-out distances:
  the rate a sample that is merely "one more data point" reaches, so the two should be compared.

Why ``threshold = 0.5`` by default: for points spread over an intrinsic dimension d, the chance that a
fresh point's nearest neighbour lies within t × (median NN distance) is about 1 − 2^(−tᵈ) (Poisson
approximation): at t = 0.5 that is 16 % for d = 2, 0.3 % for d = 8 and vanishing for the d ≳ 10 of image
features, while a copy plus small noise lies at a small fraction of the spacing. So samples below half the
typical spacing are rare unless copied; the baseline rate reports how rare on the data at hand.

Duplicates: the leave-one-out distance excludes a training point by *index*, not by distance > 0, so an
exact duplicate pair of distinct training rows legitimately has distance 0 (each is the other's neighbour);
a point is never its own neighbour. If half or more of the training points have an exact duplicate, the
median spacing is 0 and the ratios are undefined: that raises a DataError (deduplicate the training set).
Ties between training points at the same distance from a generated sample go to the lowest index.

Why hand-written: scikit-learn's ``NearestNeighbors`` (exact, brute force) gives the same numbers but
builds chunked distance matrices in float64 through the ‖x‖² − 2x·y + ‖y‖² expansion, which loses the
small distances that matter most here to cancellation; this module reuses the exact chunked k-NN machinery
of :mod:`auditkit.metrics.prdc`: float32 matrix products with a proven error bound, and the few candidates
within that bound recomputed exactly in float64 from the differences. Memory is O(chunk_size·N + N·D);
no generated×training matrix is ever held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, DataError
from auditkit.metrics.prdc import (
    _DEFAULT_CHUNK,
    _PROGRESS_FROM,
    ArrayLike,
    _as_features,
    _bound_factor,
    _check_chunk,
    _exact_sq,
    _fast_dtype,
    _kth_sq,
    _positions,
    _prepare,
    _resolve_device,
    _round,
    _Set,
    _sq_block,
)

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)  # tensor fields: compare ``to_dict()`` views instead
class MemorizationResult:
    """Nearest-neighbour evidence of training-set copying (see the module docstring for definitions).

    Attributes
    ----------
    n_generated, n_training
        Sample counts.
    threshold
        Near-copy threshold, as a fraction of the median training leave-one-out NN distance.
    nn_distance, nn_index
        Per generated sample: distance to its nearest training point (float64) and that point's index.
    training_nn_distance
        Per training point: distance to its nearest *other* training point (float64; 0 for duplicates).
    median_generated_nn, median_training_nn
        Medians of the two distance vectors.
    distance_ratio
        ``median_generated_nn / median_training_nn``; ≈ 1 for fresh samples, ≪ 1 for copies.
    per_sample_ratio
        ``nn_distance / median_training_nn``.
    near_copy_rate
        Share of generated samples with ``nn_distance < threshold × median_training_nn``.
    baseline_near_copy_rate
        Share of training points with ``training_nn_distance < threshold × median_training_nn``.
    closest_pairs
        The generated samples nearest to the training set: ``(generated index, training index, distance)``
        of the ``k_pairs`` smallest ``nn_distance`` values (one pair per generated sample), ascending.
    """

    n_generated: int
    n_training: int
    threshold: float
    nn_distance: torch.Tensor
    nn_index: torch.Tensor
    training_nn_distance: torch.Tensor
    median_generated_nn: float
    median_training_nn: float
    distance_ratio: float
    per_sample_ratio: torch.Tensor
    near_copy_rate: float
    baseline_near_copy_rate: float
    closest_pairs: list[tuple[int, int, float]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view: numbers as floats/ints, vectors as lists, pairs as 3-element lists."""
        return {
            "n_generated": self.n_generated,
            "n_training": self.n_training,
            "threshold": self.threshold,
            "median_generated_nn": self.median_generated_nn,
            "median_training_nn": self.median_training_nn,
            "distance_ratio": self.distance_ratio,
            "near_copy_rate": self.near_copy_rate,
            "baseline_near_copy_rate": self.baseline_near_copy_rate,
            "closest_pairs": [[g, t, d] for g, t, d in self.closest_pairs],
            "nn_distance": self.nn_distance.tolist(),
            "nn_index": self.nn_index.tolist(),
            "training_nn_distance": self.training_nn_distance.tolist(),
            "per_sample_ratio": self.per_sample_ratio.tolist(),
        }


# ------------------------------------------------------------------------------------------ validation


def _checked(x: ArrayLike, name: str, minimum: int) -> torch.Tensor:
    t = _as_features(x, name)
    if len(t) < minimum:
        need = "at least one sample" if minimum == 1 else f"at least {minimum} samples"
        raise DataError(f"{name} features are empty or too few: got {len(t)} rows, need {need}.")
    finite = torch.isfinite(t) if t.is_floating_point() else torch.ones((), dtype=torch.bool)
    if not bool(finite.all()):
        raise DataError(
            f"{name} features contain NaN or infinite values; check the images and the extractor they "
            "came from."
        )
    return t


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating | np.integer):
        raise ConfigError(
            f"threshold must be a positive number (a fraction of the NN spacing); got {threshold!r}."
        )
    if not (math.isfinite(float(threshold)) and threshold > 0):
        raise ConfigError(f"threshold must be a positive finite number; got {threshold!r}.")
    return float(threshold)


def _check_pairs(k_pairs: int) -> int:
    if isinstance(k_pairs, bool) or not isinstance(k_pairs, int | np.integer) or k_pairs < 0:
        raise ConfigError(f"k_pairs must be a non-negative integer; got {k_pairs!r}.")
    return int(k_pairs)


# ---------------------------------------------------------------------------------------------- search


def _nearest_cross(
    gen: _Set, train: _Set, chunk: int, w: float, slack: float, bar: tqdm
) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared NN distance (float64, original units) and NN index in ``train`` of each ``gen`` row.

    Each chunk of generated rows meets the whole training set in one fast block. A fast value q is within
    W = w(‖x̂‖² + max‖ŷ‖²) + slack of the exact one, so the exact minimum V of a row satisfies
    V ≤ q_min + W, and any pair at V has q ≤ V + W ≤ q_min + 2W: recomputing exactly the pairs with
    q ≤ q_min + 2W (usually one or two) finds the exact minimum and all its ties.
    """
    n, m = len(gen.fast), len(train.fast)
    fast_dtype = gen.fast.dtype.type
    width = 2.0 * (w * (gen.norms64 + train.norms64.max()) + slack)
    best_sq = np.empty(n, dtype=np.float64)
    best_index = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        q = _sq_block(gen, slice(start, stop), train, slice(0, m))
        # Rounding the bound up to the fast dtype only widens the band (never drops a candidate).
        limit = _round(q.min(axis=1).astype(np.float64) + width[start:stop], fast_dtype, np.inf)
        rows, cols = _positions(q <= limit[:, None])
        del q
        exact = _exact_sq(gen.source, rows + start, train.source, cols)
        # Per row: the smallest exact value, ties to the lowest training index (every row has a candidate:
        # its own fast minimum).
        order = np.lexsort((cols, exact, rows))
        first = order[np.searchsorted(rows[order], np.arange(stop - start))]
        best_sq[start:stop] = exact[first]
        best_index[start:stop] = cols[first]
        bar.update()
    return best_sq, best_index


# ------------------------------------------------------------------------------------------------- API


def memorization(
    generated: ArrayLike,
    training: ArrayLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    k_pairs: int = 16,
    chunk_size: int = _DEFAULT_CHUNK,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> MemorizationResult:
    """Nearest-neighbour test of whether ``generated`` samples copy ``training`` samples.

    Parameters
    ----------
    generated, training
        M×D and N×D features (tensors or arrays, any real dtype), from the same extractor; N ≥ 2.
    threshold
        A generated sample is a near-copy when its NN distance is below ``threshold`` × the median
        training leave-one-out NN distance (default 0.5; see the module docstring for why).
    k_pairs
        How many of the closest (generated, training) pairs to keep as evidence (clipped to M).
    chunk_size
        Rows per block; memory is O(chunk_size·max(M, N) + (M + N)·D). Results do not depend on it.
    device
        Where the matrix products run (default: the inputs' device if they share one, else CPU).
    progress
        Show a progress bar (default: from 20 000 samples in either set).

    Returns
    -------
    MemorizationResult
        Distances are exact Euclidean distances (squared distances summed in float64 from the original
        values), so they equal scikit-learn's up to its own round-off.

    Raises
    ------
    DataError
        If an input is empty (training needs 2 rows), not a finite numeric N×D matrix, the dimensions
        differ, or half or more of the training points are exact duplicates (median spacing 0).
    ConfigError
        If ``threshold``, ``k_pairs``, ``chunk_size`` or ``device`` are invalid.
    """
    g = _checked(generated, "generated", 1)
    t = _checked(training, "training", 2)
    if g.shape[1] != t.shape[1]:
        raise DataError(
            f"generated and training features differ in dimension: {g.shape[1]} vs {t.shape[1]}; "
            "extract both with the same feature extractor."
        )
    threshold = _check_threshold(threshold)
    k_pairs = _check_pairs(k_pairs)
    chunk = _check_chunk(chunk_size)
    dev = _resolve_device(device, [g, t])
    # Training first: the shared shift is the training mean, and a bad set is named correctly.
    (ts, gs), _ = _prepare([t, g], ["training", "generated"], dev, _fast_dtype(dev, t.shape[1]))
    w, slack = _bound_factor(t.shape[1], ts.fast.dtype.type)
    m, n = len(g), len(t)
    show = max(m, n) >= _PROGRESS_FROM if progress is None else bool(progress)
    total = math.ceil(n / chunk) + math.ceil(m / chunk)
    with tqdm(total=total, desc="memorization", unit="block", disable=not show) as bar:
        # k = 1 with the point itself as the 0-th neighbour: the nearest other row, chosen by index, so a
        # duplicate pair gives 0 and a lone point never does.
        train_sq = _kth_sq(ts, 1, chunk, w, slack, bar)
        gen_sq, gen_index = _nearest_cross(gs, ts, chunk, w, slack, bar)
    d_train, d_gen = np.sqrt(train_sq), np.sqrt(gen_sq)

    median_train, median_gen = float(np.median(d_train)), float(np.median(d_gen))
    if median_train == 0.0:
        raise DataError(
            f"training features: {int(np.count_nonzero(d_train == 0))} of {n} rows have an exact duplicate, "
            "so the median nearest-neighbour spacing is 0 and no ratio is defined; deduplicate the training "
            "set first."
        )
    per_sample = d_gen / median_train
    cutoff = threshold * median_train
    order = np.lexsort((np.arange(m), d_gen))[: min(k_pairs, m)]
    return MemorizationResult(
        n_generated=m,
        n_training=n,
        threshold=threshold,
        nn_distance=torch.from_numpy(d_gen),
        nn_index=torch.from_numpy(gen_index),
        training_nn_distance=torch.from_numpy(d_train),
        median_generated_nn=median_gen,
        median_training_nn=median_train,
        distance_ratio=median_gen / median_train,
        per_sample_ratio=torch.from_numpy(per_sample),
        near_copy_rate=float(np.count_nonzero(d_gen < cutoff)) / m,
        baseline_near_copy_rate=float(np.count_nonzero(d_train < cutoff)) / n,
        closest_pairs=[(int(i), int(gen_index[i]), float(d_gen[i])) for i in order],
    )


__all__ = ["DEFAULT_THRESHOLD", "MemorizationResult", "memorization"]
