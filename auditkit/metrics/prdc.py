"""Precision, recall, density and coverage (Naeem et al., 2020) by k-NN radii, streamed in chunks.

Definitions, as in the reference ``prdc`` package: ``r(x)`` is the distance from ``x`` to its k-th nearest
neighbour within its own set (counting ``x`` itself at distance 0, so the (k+1)-th smallest distance);

* precision: share of fake ``y`` with ``d(x, y) < r(x)`` for some real ``x``;
* recall:    share of real ``x`` with ``d(x, y) < r(y)`` for some fake ``y``;
* density:   mean over fake ``y`` of ``#{real x : d(x, y) < r(x)} / k``;
* coverage:  share of real ``x`` whose nearest fake lies within ``r(x)``.

Why hand-written: ``prdc`` builds three full N×N distance matrices with scikit-learn, which needs ~60 GB
at 50 000 samples. Here only a chunk×N block exists at a time.

Why exact although fast: distances are first computed in float32 by the ‖x‖² + ‖y‖² − 2x·y expansion
(one matrix product per block, on features centred on the real mean). For n-term dot products in
float32 the error of that expansion is at most γ·(‖x‖² + ‖y‖²) with γ = 4(D + 2)·2⁻²⁴ whatever the
summation order, so every comparison outside that band is decided; the few pairs inside it (and the k+1
nearest candidates behind each radius) are recomputed in float64 as ‖x − y‖ directly. Comparisons are made
after rounding both sides to the input's precision, which is what ``prdc`` compares (scikit-learn returns
float32 distances for float32 features), so the results equal the package's, while duplicates get their
true distance 0 rather than the expansion's round-off.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, DataError

_BLOCK_ELEMENTS = 1 << 24  # float32 entries per distance block (64 MB): bounds memory, whatever N
_EXTRA_CANDIDATES = 8  # neighbours kept beyond k+1 so that round-off cannot hide the true k-th one
_PAIR_BATCH = 1 << 15  # exact recomputations at once


def _features(x: torch.Tensor | np.ndarray, name: str) -> tuple[torch.Tensor, torch.dtype]:
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise DataError(f"{name} features must be a non-empty N×D matrix; got shape {tuple(t.shape)}.")
    compare = torch.float32 if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else torch.float64
    t = t.to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} features contain NaN or infinite values; check the feature extractor.")
    return t, compare


def _tolerance(dim: int) -> float:
    return 4.0 * (dim + 2) * 2.0**-24


def _exact_distances(
    a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """float64 ‖a[rows] − b[cols]‖ pair by pair."""
    out = torch.empty(rows.shape[0], dtype=torch.float64)
    for start in range(0, rows.shape[0], _PAIR_BATCH):
        sl = slice(start, start + _PAIR_BATCH)
        out[sl] = (a[rows[sl]] - b[cols[sl]]).norm(dim=1)
    return out


def _rows_per_block(other: int, chunk_size: int | None) -> int:
    return max(1, chunk_size or _BLOCK_ELEMENTS // max(other, 1))


def knn_radii(
    features: torch.Tensor | np.ndarray,
    nearest_k: int,
    *,
    chunk_size: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Distance from each row to its ``nearest_k``-th nearest neighbour in the same set (float64).

    The point itself counts as its own nearest neighbour at distance 0, as in ``prdc``.
    """
    x64, _ = _features(features, "features")
    return _radii(x64, x64 - x64.mean(dim=0), nearest_k, chunk_size, progress, "features")


def _radii(
    x64: torch.Tensor, centred: torch.Tensor, k: int, chunk_size: int | None, progress: bool, name: str
) -> torch.Tensor:
    n, dim = x64.shape
    if not 1 <= k < n:
        raise ConfigError(f"nearest_k must be between 1 and {n - 1} for {n} {name} samples; got {k}.")
    x32 = centred.float()
    sq = x32.square().sum(dim=1)
    gamma = _tolerance(dim)
    take = min(n, k + 1 + _EXTRA_CANDIDATES)
    radii = torch.empty(n, dtype=torch.float64)
    rows = _rows_per_block(n, chunk_size)
    for start in tqdm(range(0, n, rows), desc=f"{name} radii", disable=not progress, leave=False):
        idx = torch.arange(start, min(start + rows, n))
        d2 = (sq[idx, None] + sq[None, :] - 2.0 * (x32[idx] @ x32.T)).clamp_(min=0)
        d2[torch.arange(len(idx)), idx] = 0.0
        approx, cand = d2.topk(take, dim=1, largest=False)
        exact = _exact_distances(x64, x64, idx.repeat_interleave(take), cand.reshape(-1)).view(len(idx), take)
        exact_sorted = exact.sort(dim=1).values
        radii[idx] = exact_sorted[:, k]
        if take == n:
            continue
        # Every non-candidate has approximate d² ≥ the last candidate's; its exact d² is at least that minus
        # the round-off bound, which must clear the radius for the candidates to contain the k+1 nearest.
        bound = approx[:, -1].double() - gamma * (sq[idx].double() + float(sq.max()))
        unsure = (bound <= radii[idx].square()).nonzero().flatten()
        for row in idx[unsure].tolist():
            full = _exact_distances(x64, x64, torch.full((n,), row), torch.arange(n))
            radii[row] = full.sort().values[k]
    return radii


def precision_recall_density_coverage(
    real: torch.Tensor | np.ndarray,
    fake: torch.Tensor | np.ndarray,
    nearest_k: int = 5,
    *,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` N×D features.

    Parameters
    ----------
    real, fake
        Feature matrices (NumPy or torch, float32 or float64) with the same number of columns.
    nearest_k
        k of the k-NN radii (5 in the paper).
    chunk_size
        Rows per distance block; default keeps each block near 64 MB.
    progress
        Show progress bars.

    Returns
    -------
    dict
        ``{"precision", "recall", "density", "coverage"}`` as floats.
    """
    r64, r_cmp = _features(real, "real")
    f64, f_cmp = _features(fake, "fake")
    if r64.shape[1] != f64.shape[1]:
        raise DataError(f"real and fake features differ in dimension: {r64.shape[1]} vs {f64.shape[1]}.")
    if not isinstance(nearest_k, int) or isinstance(nearest_k, bool):
        raise ConfigError(f"nearest_k must be an integer; got {nearest_k!r}.")
    compare = torch.float64 if torch.float64 in (r_cmp, f_cmp) else torch.float32
    shift = r64.mean(dim=0)
    r_centred, f_centred = r64 - shift, f64 - shift
    real_r = _radii(r64, r_centred, nearest_k, chunk_size, progress, "real")
    fake_r = _radii(f64, f_centred, nearest_k, chunk_size, progress, "fake")

    r32, f32 = r_centred.float(), f_centred.float()
    r_sq, f_sq = r32.square().sum(dim=1), f32.square().sum(dim=1)
    gamma = _tolerance(r64.shape[1])
    real_r2, fake_r2 = real_r.square().float(), fake_r.square().float()
    real_r_cmp, fake_r_cmp = real_r.to(compare), fake_r.to(compare)
    n, m = len(r64), len(f64)
    inside_count = torch.zeros(m, dtype=torch.int64)  # real balls containing each fake (density, precision)
    covered = torch.zeros(n, dtype=torch.bool)  # real whose ball holds a fake (coverage)
    recalled = torch.zeros(n, dtype=torch.bool)  # real inside some fake ball (recall)
    rows = _rows_per_block(m, chunk_size)
    for start in tqdm(range(0, n, rows), desc="real × fake", disable=not progress, leave=False):
        idx = torch.arange(start, min(start + rows, n))
        d2 = (r_sq[idx, None] + f_sq[None, :] - 2.0 * (r32[idx] @ f32.T)).clamp_(min=0)
        tol = gamma * (r_sq[idx, None] + f_sq[None, :])
        in_real = _decide(d2, real_r2[idx, None], tol, r64, f64, idx, real_r_cmp[idx], compare, by_row=True)
        in_fake = _decide(d2, fake_r2[None, :], tol, r64, f64, idx, fake_r_cmp, compare, by_row=False)
        inside_count += in_real.sum(dim=0)
        covered[idx] = in_real.any(dim=1)
        recalled[idx] = in_fake.any(dim=1)
    return {
        "precision": float((inside_count > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": (1.0 / nearest_k) * float(inside_count.double().mean()),  # prdc's order of operations
        "coverage": float(covered.double().mean()),
    }


def _decide(
    d2: torch.Tensor,
    thr2: torch.Tensor,
    tol: torch.Tensor,
    r64: torch.Tensor,
    f64: torch.Tensor,
    idx: torch.Tensor,
    thr_exact: torch.Tensor,
    compare: torch.dtype,
    *,
    by_row: bool,
) -> torch.Tensor:
    """``d(real_i, fake_j) < threshold`` for a block: sure from float32, exact inside the round-off band."""
    decided = d2 < thr2 - tol
    band = ((d2 - thr2).abs() <= tol).nonzero()
    if len(band):
        bi, bj = band[:, 0], band[:, 1]
        exact = _exact_distances(r64, f64, idx[bi], bj).to(compare)
        limit = thr_exact[bi] if by_row else thr_exact[bj]
        decided[bi, bj] = exact < limit
    return decided


__all__ = ["knn_radii", "precision_recall_density_coverage"]
