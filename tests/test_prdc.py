"""PRDC against the prdc package itself (identical values), a brute-force exact reference for ties,
the float32 round-off the exact pass repairs, bounded memory, and input errors.

Tolerance: none. Every comparison with prdc is ``==`` on the four floats, except the float64 radii
(``test_radii_match_prdc``), where prdc's own ‖x‖² − 2x·y + ‖y‖² round-off moves them by ~1e-15 relative.
"""

from __future__ import annotations

import contextlib
import io
import tracemalloc

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from prdc.prdc import compute_nearest_neighbour_distances
from scipy.spatial.distance import cdist

import auditkit.metrics.prdc as prdc_module
from auditkit import ConfigError, DataError
from auditkit.metrics.prdc import knn_radii, precision_recall_density_coverage


def reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sample counts
        return {key: float(v) for key, v in compute_prdc(real, fake, k).items()}


def _definitions(dist, real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """prdc's four definitions, written out, on whatever distance function ``dist`` computes."""
    real_r = np.sort(dist(real, real), axis=1)[:, k]
    fake_r = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)
    return {
        "precision": float((d < real_r[:, None]).any(axis=0).mean()),
        "recall": float((d < fake_r[None, :]).any(axis=1).mean()),
        "density": (1.0 / float(k)) * float((d < real_r[:, None]).sum(axis=0).mean()),
        "coverage": float((d.min(axis=1) < real_r).mean()),
    }


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """prdc's definitions on scipy's direct float64 squared distances, rounded as scikit-learn rounds them.

    Identical pairs get identical values here, so exact ties (duplicated points) are decided exactly.
    """

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dtype = np.float32 if a.dtype == b.dtype == np.float32 else np.float64
        return np.sqrt(cdist(a.astype(np.float64), b.astype(np.float64), "sqeuclidean").astype(dtype))

    return _definitions(dist, real, fake, k)


def clustered(
    rng: np.random.Generator, n: int, dim: int, dtype=np.float32, spread: float = 1.0
) -> np.ndarray:
    """Points near six low-dimensional clusters (like extractor features), shared by real and fake."""
    layout = np.random.default_rng(dim)
    centres = layout.standard_normal((6, dim)) * 3
    basis = layout.standard_normal((8, dim)) / np.sqrt(8)
    return (centres[rng.integers(0, 6, n)] + spread * rng.standard_normal((n, 8)) @ basis).astype(dtype)


@pytest.mark.parametrize(
    ("n", "m", "dim", "k", "dtype", "chunk"),
    [
        (400, 300, 32, 5, np.float32, 1024),
        (350, 500, 128, 3, np.float64, 64),
        (257, 263, 512, 1, np.float32, 7),
        (600, 500, 2048, 5, np.float32, 100),
        (300, 301, 16, 5, np.float64, 33),
        (200, 150, 2048, 3, np.float64, 64),
        (150, 400, 8, 1, np.float32, 41),
    ],
)
def test_identical_to_prdc(n: int, m: int, dim: int, k: int, dtype, chunk: int) -> None:
    rng = np.random.default_rng(n + dim + k)
    real, fake = clustered(rng, n, dim, dtype), clustered(rng, m, dim, dtype, spread=1.2)
    ours = precision_recall_density_coverage(real, fake, k, chunk_size=chunk)
    assert ours == reference(real, fake, k)
    assert all(0.0 < ours[key] < 1.0 for key in ("precision", "recall", "coverage"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_radii_match_prdc(dtype) -> None:
    rng = np.random.default_rng(1)
    x = clustered(rng, 300, 64, dtype)
    ours = knn_radii(x, 4, chunk_size=37).numpy()
    theirs = compute_nearest_neighbour_distances(x, 4)
    assert ours.dtype == theirs.dtype
    if dtype == np.float32:
        np.testing.assert_array_equal(ours, theirs)
    else:  # prdc's float64 expansion is off by ~1e-15 relative; ours is the direct distance
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
        # and equal to scipy's direct distances up to summation order (a few ulps)
        np.testing.assert_allclose(ours, np.sort(cdist(x, x), axis=1)[:, 4], rtol=4e-16 * 64, atol=0)


def duplicated_sets(dtype) -> tuple[np.ndarray, np.ndarray]:
    """Real and fake sets with exact duplicates, near-duplicates and exact real-fake copies (k = 3)."""
    rng = np.random.default_rng(3)
    base = clustered(rng, 300, 32, np.float64)
    near = base[:40] + 1e-3 * rng.standard_normal((40, 32))
    real = np.concatenate([base[:200], base[:30], np.repeat(base[30:40], 3, axis=0), near])
    other = clustered(rng, 150, 32, np.float64, spread=1.2)
    fake = np.concatenate(
        [base[100:160], other, other[:25], base[150:200] + 1e-3 * rng.standard_normal((50, 32))]
    )
    return real.astype(dtype), fake.astype(dtype)


def test_duplicates_identical_to_prdc_and_exact_reference_float32() -> None:
    # Points with four copies have radius exactly 0; fake copies of real points lie exactly on the radius
    # of the reals whose k-th neighbour they copy (a tie: not inside). prdc's float32 distances resolve
    # these the same way, because its round-off is far below float32 resolution.
    real, fake = duplicated_sets(np.float32)
    ours = precision_recall_density_coverage(real, fake, 3, chunk_size=50)
    assert ours == reference(real, fake, 3)
    assert ours == brute_force(real, fake, 3)


def test_duplicates_match_exact_reference_float64() -> None:
    # In float64, prdc's expansion round-off decides exact ties at random; the direct-distance reference
    # decides them exactly, as we do.
    real, fake = duplicated_sets(np.float64)
    assert precision_recall_density_coverage(real, fake, 3, chunk_size=64) == brute_force(real, fake, 3)
    radii = knn_radii(real, 3).numpy()
    assert (radii[230:260] == 0).all()  # the points with four copies


def test_many_exact_ties_match_exact_reference(monkeypatch) -> None:
    # Points on a small integer grid: many pairs at exactly the same distance, and points with more copies
    # than the candidates kept per row, which must be found by scanning those rows again.
    rng = np.random.default_rng(10)
    real = rng.integers(0, 3, (400, 4)).astype(np.float32)
    fake = rng.integers(0, 3, (300, 4)).astype(np.float32) + np.float32(0.5) * (rng.random((300, 4)) < 0.3)
    rescanned = []
    sq_block = prdc_module._sq_block

    def spy(a, rows, b, cols):
        if not isinstance(rows, slice):
            rescanned.append(len(rows))
        return sq_block(a, rows, b, cols)

    monkeypatch.setattr(prdc_module, "_sq_block", spy)
    assert precision_recall_density_coverage(real, fake, 5, chunk_size=64) == brute_force(real, fake, 5)
    assert sum(rescanned) > 0


def naive_float32(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """prdc's definitions on float32 ‖x‖² − 2x·y + ‖y‖² distances: fast, without the exact repair."""

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.sqrt(np.maximum(sq, 0))

    return _definitions(dist, real, fake, k)


def test_exact_pass_repairs_what_float32_gets_wrong(monkeypatch) -> None:
    # Two tight clusters at ±100 along one axis: the mean is near 0, so centring does not help, and float32
    # ‖x‖² ≈ 10⁴ leaves ~10⁻³ of round-off on squared distances of ~10⁻⁵. The fast values decide almost
    # nothing; the band sends those pairs to the exact float64 pass, which gives prdc's answer.
    rng = np.random.default_rng(7)
    axis = np.eye(16)[0] * 100

    def two_clusters(n: int, spread: float) -> np.ndarray:
        side = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
        return (side * axis + spread * rng.standard_normal((n, 16))).astype(np.float32)

    real, fake = two_clusters(200, 1e-3), two_clusters(200, 1.2e-3)
    recomputed = []
    exact_sq = prdc_module._exact_sq
    monkeypatch.setattr(
        prdc_module, "_exact_sq", lambda a, ia, b, ib: recomputed.append(len(ia)) or exact_sq(a, ia, b, ib)
    )
    ours = precision_recall_density_coverage(real, fake, 5, chunk_size=64)
    assert ours == reference(real, fake, 5)
    assert naive_float32(real, fake, 5) != ours
    assert sum(recomputed) > 200 * 200  # most real×fake pairs, plus the radius candidates


def test_mixed_dtypes_and_torch_inputs() -> None:
    rng = np.random.default_rng(4)
    real, fake = clustered(rng, 300, 64, np.float32), clustered(rng, 280, 64, np.float64, spread=1.2)
    ours = precision_recall_density_coverage(real, fake, 5, chunk_size=50)
    assert ours == reference(real, fake, 5)  # radii in float32, real×fake distances in float64
    as_tensors = precision_recall_density_coverage(torch.from_numpy(real), torch.from_numpy(fake), 5)
    assert as_tensors == ours


def test_results_do_not_depend_on_chunk_size() -> None:
    rng = np.random.default_rng(5)
    real, fake = clustered(rng, 300, 48), clustered(rng, 280, 48, spread=1.1)
    results = [
        precision_recall_density_coverage(real, fake, 3, chunk_size=c) for c in (1, 7, 64, 299, 300, 10_000)
    ]
    assert all(r == results[0] for r in results)
    assert precision_recall_density_coverage(real, fake, 3, chunk_size=7, progress=True) == results[0]
    radii = [knn_radii(real, 3, chunk_size=c).numpy() for c in (7, 300)]
    np.testing.assert_array_equal(radii[0], radii[1])


def test_k_may_be_one_less_than_the_set_size() -> None:
    # prdc itself needs k + 2 samples (its argpartition index is k + 1); the definition needs only k + 1.
    rng = np.random.default_rng(6)
    real, fake = clustered(rng, 6, 8, np.float64), clustered(rng, 9, 8, np.float64)
    assert precision_recall_density_coverage(real, fake, 5) == brute_force(real, fake, 5)


def test_memory_stays_within_chunk_blocks(monkeypatch) -> None:
    # No block wider than the other set or taller than chunk_size is ever formed...
    n, m, dim, chunk = 4000, 3500, 32, 64
    rng = np.random.default_rng(8)
    real, fake = clustered(rng, n, dim), clustered(rng, m, dim, spread=1.1)
    shapes = []
    sq_block = prdc_module._sq_block
    monkeypatch.setattr(
        prdc_module, "_sq_block", lambda *a: shapes.append(sq_block(*a).shape) or sq_block(*a)
    )
    precision_recall_density_coverage(real[:500], fake[:400], 5, chunk_size=chunk)
    assert shapes and all(r <= chunk and c <= 500 for r, c in shapes)
    monkeypatch.undo()

    # ...and the peak of all (NumPy-traced) allocations stays well below a single n×n float32 matrix: the
    # float32 working copies of both sets, a few chunk×n blocks and the k + 9 candidates kept per point.
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        precision_recall_density_coverage(real, fake, 5, chunk_size=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    working_copies, blocks, candidates = (n + m) * dim * 4, 6 * chunk * n * 4, 4 * n * (5 + 9) * 12
    assert peak < working_copies + blocks + candidates < n * n * 4 / 4


@pytest.mark.parametrize(
    ("real", "fake", "kwargs", "error", "needle"),
    [
        (np.zeros((10, 4)), np.zeros((10, 5)), {}, DataError, "differ in dimension"),
        (np.zeros(10), np.zeros((10, 4)), {}, DataError, "real features must be an N×D"),
        (np.zeros((10, 4)), np.zeros((2, 5, 4)), {}, DataError, "fake features must be an N×D"),
        (np.zeros((10, 0)), np.zeros((10, 0)), {}, DataError, "no dimensions"),
        (np.array([["a"] * 4] * 10), np.zeros((10, 4)), {}, DataError, "numeric"),
        (np.full((10, 4), np.nan), np.zeros((10, 4)), {}, DataError, "real features contain NaN"),
        (np.zeros((10, 4)), np.array([[np.inf] * 4] * 10), {}, DataError, "fake features contain NaN or inf"),
        (np.random.rand(5, 4), np.random.rand(10, 4), {"nearest_k": 5}, ConfigError, "more than 5 real"),
        (np.random.rand(10, 4), np.random.rand(3, 4), {"nearest_k": 3}, ConfigError, "more than 3 fake"),
        (np.random.rand(10, 4), np.random.rand(10, 4), {"nearest_k": 0}, ConfigError, "nearest_k"),
        (np.random.rand(10, 4), np.random.rand(10, 4), {"nearest_k": 2.5}, ConfigError, "nearest_k"),
        (np.random.rand(10, 4), np.random.rand(10, 4), {"chunk_size": 0}, ConfigError, "chunk_size"),
        (np.random.rand(10, 4), np.random.rand(10, 4), {"device": "nonsense"}, ConfigError, "device"),
    ],
)
def test_bad_inputs(real, fake, kwargs, error, needle) -> None:
    kwargs = {"nearest_k": 3, **kwargs}
    with pytest.raises(error, match=needle):
        precision_recall_density_coverage(real, fake, **kwargs)


def test_bad_inputs_of_knn_radii() -> None:
    with pytest.raises(ConfigError, match="more than 4 features"):
        knn_radii(np.random.rand(4, 3), 4)
    with pytest.raises(DataError, match="N×D"):
        knn_radii(torch.zeros(3, 4, 5), 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_same_values() -> None:
    rng = np.random.default_rng(9)
    real, fake = clustered(rng, 700, 256), clustered(rng, 650, 256, spread=1.2)
    on_cpu = precision_recall_density_coverage(real, fake, 5, chunk_size=128)
    on_gpu = precision_recall_density_coverage(
        torch.from_numpy(real).cuda(), torch.from_numpy(fake).cuda(), 5
    )
    assert on_gpu == on_cpu == reference(real, fake, 5)
