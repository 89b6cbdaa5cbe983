"""PRDC against the prdc package itself, and against a brute-force float64 reference for duplicates."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from scipy.spatial.distance import cdist

from auditkit import ConfigError, DataError
from auditkit.metrics.prdc import knn_radii, precision_recall_density_coverage


def reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sample counts
        return {key: float(v) for key, v in compute_prdc(real, fake, k).items()}


def clustered(rng: np.random.Generator, n: int, dim: int, dtype, offset: float = 0.0) -> np.ndarray:
    """Points near a few low-dimensional clusters, like real features: the metrics are far from 0 and 1.

    The clusters depend only on ``dim`` so that real and fake samples share them.
    """
    layout = np.random.default_rng(dim)
    centres = layout.standard_normal((6, dim)) * 3
    basis = layout.standard_normal((8, dim)) / np.sqrt(8)
    x = centres[rng.integers(0, 6, n)] + rng.standard_normal((n, 8)) @ basis
    return (x + offset).astype(dtype)


@pytest.mark.parametrize(
    ("n", "m", "dim", "k", "dtype", "chunk"),
    [
        (400, 300, 32, 5, np.float32, None),
        (350, 500, 128, 3, np.float64, 64),
        (257, 263, 512, 1, np.float32, 7),
        (600, 600, 2048, 5, np.float32, 100),
        (300, 300, 64, 5, np.float64, None),
    ],
)
def test_identical_to_prdc(n, m, dim, k, dtype, chunk) -> None:
    rng = np.random.default_rng(n + dim)
    real, fake = clustered(rng, n, dim, dtype), clustered(rng, m, dim, dtype) * 1.05
    ours = precision_recall_density_coverage(real, fake, k, chunk_size=chunk)
    ref = reference(real, fake, k)
    assert ours == ref
    assert 0.05 < ours["precision"] < 1 and 0.05 < ours["coverage"] < 1


def test_identical_far_from_origin_where_float32_expansion_fails() -> None:
    # At an offset of 10⁴ the ‖x‖²+‖y‖²−2x·y expansion in float32 loses every digit of these distances;
    # centring plus the exact float64 fix-up still gives prdc's float64 answer.
    rng = np.random.default_rng(5)
    real, fake = clustered(rng, 300, 64, np.float64, 1e4), clustered(rng, 300, 64, np.float64, 1e4 + 0.2)
    assert precision_recall_density_coverage(real, fake, 5, chunk_size=50) == reference(real, fake, 5)


def test_radii_equal_sorted_cdist() -> None:
    rng = np.random.default_rng(2)
    x = clustered(rng, 300, 40, np.float64)
    expected = np.sort(cdist(x, x), axis=1)[:, 4]  # 4th neighbour plus the point itself
    np.testing.assert_allclose(knn_radii(x, 4, chunk_size=33).numpy(), expected, rtol=1e-12, atol=0)


def test_duplicates_get_their_true_zero_distance() -> None:
    # Exact duplicates: prdc's expansion leaves round-off where the distance is 0, so the reference here is
    # the definitions evaluated on scipy's direct float64 distances.
    rng = np.random.default_rng(3)
    base = clustered(rng, 200, 32, np.float64)
    real = np.concatenate([base, base[:50], base[:20]])
    fake = np.concatenate([base[100:180], clustered(rng, 100, 32, np.float64)])
    k = 3
    rr = np.sort(cdist(real, real), axis=1)[:, k]
    fr = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)
    expected = {
        "precision": float((d < rr[:, None]).any(axis=0).mean()),
        "recall": float((d < fr[None, :]).any(axis=1).mean()),
        "density": (1.0 / k) * float((d < rr[:, None]).sum(axis=0).mean()),
        "coverage": float((d.min(axis=1) < rr).mean()),
    }
    assert precision_recall_density_coverage(real, fake, k, chunk_size=41) == expected


def test_chunking_does_not_change_results_and_torch_inputs_work() -> None:
    rng = np.random.default_rng(4)
    real, fake = clustered(rng, 500, 64, np.float32), clustered(rng, 450, 64, np.float32)
    whole = precision_recall_density_coverage(real, fake, 5)
    assert (
        precision_recall_density_coverage(torch.from_numpy(real), torch.from_numpy(fake), 5, chunk_size=37)
        == whole
    )


@pytest.mark.parametrize(
    ("real", "fake", "k", "error", "needle"),
    [
        (np.zeros((10, 4)), np.zeros((10, 5)), 3, DataError, "differ in dimension"),
        (np.zeros(10), np.zeros((10, 4)), 3, DataError, "N×D"),
        (np.full((10, 4), np.nan), np.zeros((10, 4)), 3, DataError, "NaN"),
        (np.random.rand(5, 4), np.random.rand(10, 4), 5, ConfigError, "between 1 and 4 for 5 real"),
        (np.random.rand(10, 4), np.random.rand(10, 4), 0, ConfigError, "nearest_k"),
    ],
)
def test_bad_inputs(real, fake, k, error, needle) -> None:
    with pytest.raises(error, match=needle):
        precision_recall_density_coverage(real, fake, k)
