"""Memorization against scikit-learn's exact nearest neighbours and a brute-force float64 reference.

Tolerances: distances within 1e-5 relative of scikit-learn's (which uses the ‖x‖² − 2x·y + ‖y‖² expansion)
and within 1e-12 relative of scipy's direct float64 ``cdist``; indices identical (continuous random data,
so no ties). Chunk size changes nothing: results are compared with ``==``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from auditkit import ConfigError, DataError
from auditkit.metrics.memorization import DEFAULT_THRESHOLD, MemorizationResult, memorization


def _gaussian(rng: np.random.Generator, n: int, dim: int, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal((n, dim)).astype(dtype)


@pytest.mark.parametrize(
    ("m", "n", "dim", "dtype", "chunk"),
    [
        (300, 400, 16, np.float32, 1024),
        (257, 190, 512, np.float32, 37),
        (120, 333, 2048, np.float32, 64),
        (200, 150, 3, np.float64, 9),
    ],
)
def test_matches_sklearn(m: int, n: int, dim: int, dtype, chunk: int) -> None:
    rng = np.random.default_rng(m + n + dim)
    training, generated = _gaussian(rng, n, dim, dtype), _gaussian(rng, m, dim, dtype)
    result = memorization(generated, training, chunk_size=chunk)

    nn = NearestNeighbors(n_neighbors=2, algorithm="brute").fit(training)
    dist, index = nn.kneighbors(generated, n_neighbors=1)
    np.testing.assert_allclose(result.nn_distance.numpy(), dist[:, 0], rtol=1e-5)
    np.testing.assert_array_equal(result.nn_index.numpy(), index[:, 0])
    # Leave-one-out: the second column of the 2-NN of the training set on itself (the first is the point).
    loo = nn.kneighbors(training, n_neighbors=2)[0][:, 1]
    np.testing.assert_allclose(result.training_nn_distance.numpy(), loo, rtol=1e-5)

    # And the exact values: scipy's direct float64 distances.
    direct = cdist(generated.astype(np.float64), training.astype(np.float64))
    np.testing.assert_allclose(result.nn_distance.numpy(), direct.min(axis=1), rtol=1e-12)

    # The summary numbers, from the reference distances by their definitions.
    median_train = np.median(loo)
    assert result.median_training_nn == pytest.approx(median_train, rel=1e-5)
    assert result.distance_ratio == pytest.approx(np.median(dist[:, 0]) / median_train, rel=1e-5)
    np.testing.assert_allclose(result.per_sample_ratio.numpy(), dist[:, 0] / median_train, rtol=1e-5)
    cutoff = DEFAULT_THRESHOLD * median_train  # rates: one sample may sit within round-off of the cutoff
    assert result.near_copy_rate == pytest.approx(np.mean(dist[:, 0] < cutoff), abs=1.5 / m)
    assert result.baseline_near_copy_rate == pytest.approx(np.mean(loo < cutoff), abs=1.5 / n)
    assert (result.n_generated, result.n_training, result.threshold) == (m, n, DEFAULT_THRESHOLD)


def test_duplicates_are_excluded_by_index_not_by_distance() -> None:
    rng = np.random.default_rng(1)
    training = _gaussian(rng, 200, 8)
    training[50] = training[10]  # a duplicate pair: each is the other's neighbour at distance 0
    training[150] = training[10]  # a triple
    result = memorization(_gaussian(rng, 20, 8), training)

    # scikit-learn's kneighbors() without X excludes each query point by index: the reference for LOO.
    loo = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(training).kneighbors()[0][:, 0]
    np.testing.assert_allclose(result.training_nn_distance.numpy(), loo, rtol=1e-5, atol=0)
    zero = np.flatnonzero(result.training_nn_distance.numpy() == 0)
    np.testing.assert_array_equal(zero, [10, 50, 150])

    # A generated copy of the triplicated point: distance 0, tie broken towards the lowest index.
    copy = memorization(training[[150]], training)
    assert copy.nn_distance.item() == 0.0 and copy.nn_index.item() == 10


def test_planted_copies_versus_fresh_samples() -> None:
    rng = np.random.default_rng(2)
    dim, n = 32, 600
    training = _gaussian(rng, n, dim)
    copied = rng.choice(n, 300, replace=False)
    copies = training[copied] + 1e-3 * _gaussian(rng, 300, dim)
    fresh = _gaussian(rng, 300, dim)

    memorized = memorization(copies, training)
    np.testing.assert_array_equal(memorized.nn_index.numpy(), copied)
    assert memorized.near_copy_rate == 1.0
    assert memorized.distance_ratio < 0.01  # noise 1e-3·√32 against a spacing of about 5

    honest = memorization(fresh, training)
    # A fresh point is one more point of the same cloud: its NN distance is distributed like a training
    # point's leave-one-out one. The medians of 300 and 600 such distances (relative spread ~6 % in 32-d)
    # agree within a few percent; P(d < 0.5·median) ≈ 1 − 2^(−0.5^32) ≈ 2e-10 per sample.
    assert honest.distance_ratio == pytest.approx(1.0, abs=0.05)
    assert honest.near_copy_rate == 0.0
    assert honest.baseline_near_copy_rate == 0.0


def test_chunk_size_does_not_change_results() -> None:
    rng = np.random.default_rng(3)
    training, generated = _gaussian(rng, 250, 64), _gaussian(rng, 230, 64)
    generated[:5] = training[:5] + 1e-4
    results = [memorization(generated, training, chunk_size=c, k_pairs=20) for c in (1, 7, 100, 4096)]
    for other in results[1:]:
        assert torch.equal(other.nn_distance, results[0].nn_distance)
        assert torch.equal(other.nn_index, results[0].nn_index)
        assert torch.equal(other.training_nn_distance, results[0].training_nn_distance)
        assert other.closest_pairs == results[0].closest_pairs


def test_closest_pairs_are_the_true_closest() -> None:
    rng = np.random.default_rng(4)
    training, generated = _gaussian(rng, 300, 24), _gaussian(rng, 200, 24)
    planted = [17, 3, 150]
    for scale, g in zip((1e-1, 1e-2, 1e-3), planted, strict=True):
        generated[g] = training[g + 100] + scale * _gaussian(rng, 1, 24)[0]
    result = memorization(generated, training, k_pairs=10)

    full = cdist(generated.astype(np.float64), training.astype(np.float64))
    best = full.min(axis=1)
    order = np.argsort(best, kind="stable")[:10]
    assert [(g, t) for g, t, _ in result.closest_pairs] == [(int(i), int(full[i].argmin())) for i in order]
    np.testing.assert_allclose([d for _, _, d in result.closest_pairs], best[order], rtol=1e-12)
    # The planted ones come first, closest first.
    assert [g for g, _, _ in result.closest_pairs[:3]] == planted[::-1]
    assert len(memorization(generated[:4], training, k_pairs=10).closest_pairs) == 4  # clipped to M


def test_torch_input_and_json() -> None:
    rng = np.random.default_rng(5)
    training, generated = _gaussian(rng, 100, 10), _gaussian(rng, 40, 10)
    from_numpy = memorization(generated, training, threshold=0.8, k_pairs=3)
    from_torch = memorization(
        torch.from_numpy(generated), torch.from_numpy(training), threshold=0.8, k_pairs=3
    )
    assert isinstance(from_torch, MemorizationResult)
    assert from_torch.to_dict() == from_numpy.to_dict()

    payload = json.loads(json.dumps(from_numpy.to_dict(), allow_nan=False))
    assert payload["threshold"] == 0.8
    assert payload["nn_index"] == from_numpy.nn_index.tolist()
    assert payload["closest_pairs"][0] == list(from_numpy.closest_pairs[0])
    assert len(payload["per_sample_ratio"]) == 40 and len(payload["training_nn_distance"]) == 100


def test_input_errors_name_the_input() -> None:
    rng = np.random.default_rng(6)
    good = _gaussian(rng, 20, 4)
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="generated features contain NaN"):
        memorization(bad, good)
    bad[3, 1] = np.inf
    with pytest.raises(DataError, match="training features contain NaN or infinite"):
        memorization(good, torch.from_numpy(bad))
    with pytest.raises(DataError, match="generated features are empty"):
        memorization(good[:0], good)
    with pytest.raises(DataError, match="training features are empty or too few"):
        memorization(good, good[:1])
    with pytest.raises(DataError, match="differ in dimension: 4 vs 3"):
        memorization(good, good[:, :3])
    with pytest.raises(DataError, match="deduplicate"):
        memorization(good, np.repeat(good[:5], 3, axis=0))
    for threshold in (0, -1.0, float("nan"), "0.5"):
        with pytest.raises(ConfigError, match="threshold"):
            memorization(good, good, threshold=threshold)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k_pairs"):
        memorization(good, good, k_pairs=-1)
    with pytest.raises(ConfigError, match="chunk_size"):
        memorization(good, good, chunk_size=0)
