"""PRDC of many bootstrap resamples from neighbour lists computed once: exactly the recomputed values.

What a resample is (unchanged from recomputing PRDC on it). A resample draws N real and M fake rows with
replacement; row ``a`` appears ``c_a`` times (``c_a`` may be 0). PRDC of the resample is
:func:`~auditkit.metrics.prdc.precision_recall_density_coverage` of the resampled matrices, whose copies of
one row are distinct points at distance 0. So the radius of a copy of ``a`` is the (k+1)-th smallest
element (itself the first) of the multiset in which each original ``j`` contributes ``c_j`` copies of
``d(a, j)``: its own ``c_a`` copies at 0, then the other rows in order of distance, each counted ``c_j``
times. Duplicated rows therefore shrink the balls (the downward bias :mod:`auditkit.metrics.bootstrap`
describes); this module estimates exactly the same thing, only faster.

How. Once per (real, fake) pair:

* each point's nearest others, to a depth L = 4(k+1) + 8, with exact float64 squared distances, sorted.
  The candidates come from the float32 pass of :mod:`auditkit.metrics.prdc` with its proven error bound
  W; an entry is trusted only while its exact value is below (the largest kept fast value) − W, since every
  point left out has an exact value at least that large. The trusted entries are the true nearest others,
  in order;
* the cross pairs (real ``a``, fake ``j``) whose distance is below the distance of ``a``'s last trusted
  neighbour (or of ``j``'s): no resample's radius can exceed it (see below), so no other pair can ever lie
  inside a ball. Again exact distances, found by the bounded float32 pass.

Per resample (counts ``c``, ``c'``): each radius is the walk down its list, adding up counts until they
reach k+1; it ends inside the trusted list (so the radius is at most the cap) except with negligible
probability, and then that row is recomputed from scratch against the whole set. Precision, recall, density
and coverage are counts over the stored pairs weighted by the counts. Every distance is the exact one
rounded as :mod:`auditkit.metrics.prdc` rounds it, so each comparison, and each value, is identical to
recomputing PRDC on the resampled matrices (checked in tests on small data, duplicates included).

Cost: one within-set k-NN pass per set and one cross pass, as for PRDC itself, then O(N·L + pairs) per
resample instead of a full PRDC. Memory: O(chunk·max(N, M) + (N + M)·(D + L)) plus 16 bytes per stored
pair; past :data:`MAX_PAIRS` pairs (a generator collapsed into a few real balls) it raises
:class:`TooManyPairs`, and :func:`~auditkit.metrics.bootstrap.prdc_ci` recomputes instead.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from auditkit.errors import DataError
from auditkit.metrics.prdc import (
    _SPARE,
    _U64,
    ArrayLike,
    _as_features,
    _bound_factor,
    _check_chunk,
    _check_k,
    _distance,
    _exact_sq,
    _fast_dtype,
    _Nearest,
    _positions,
    _prepare,
    _resolve_device,
    _round,
    _Set,
    _sq_block,
    _thresholds,
)

MAX_PAIRS = 50_000_000  # stored cross pairs (800 MB) beyond which the resampler gives up


class TooManyPairs(RuntimeError):
    """More cross pairs lie within the neighbour caps than :data:`MAX_PAIRS`."""


class _Lists:
    """Each point's trusted nearest others: indices and exact squared distances, sorted, and their count."""

    def __init__(self, index: np.ndarray, sq: np.ndarray, trusted: np.ndarray) -> None:
        self.index, self.sq, self.trusted = index, sq, trusted
        last = np.maximum(trusted - 1, 0)
        # squared distance of the last trusted neighbour: no in-list resample radius exceeds it
        self.cap_sq = np.where(trusted > 0, sq[np.arange(len(sq)), last], 0.0)


def _neighbour_lists(s: _Set, depth: int, chunk: int, scale: float, w: float, slack: float, bar) -> _Lists:
    n = len(s.fast)
    keep = min(depth + 1 + _SPARE, n)
    nearest = _Nearest(n, keep, s.fast.dtype.type)
    for start in range(0, n, chunk):  # the symmetric pass of prdc._kth_sq
        stop = min(start + chunk, n)
        q = _sq_block(s, slice(start, stop), s, slice(start, n))
        nearest.offer(start, q, start)
        if stop < n:
            nearest.offer(stop, q[:, stop - start :], start, by_column=True)
        del q
        bar.update()
    rows = np.repeat(np.arange(n), keep)
    cols = nearest.index.ravel()
    sq = np.full(len(rows), np.inf)
    other = rows != cols  # the point itself is counted separately (its own copies, at distance 0)
    sq[other] = _exact_sq(s.source, rows[other], s.source, cols[other])
    sq = sq.reshape(n, keep)
    order = np.argsort(sq, axis=1, kind="stable")
    sq = np.take_along_axis(sq, order, axis=1)
    index = np.take_along_axis(nearest.index, order, axis=1)
    if keep == n:  # every other point is in the list: all of it is trusted
        trusted = np.full(n, n - 1)
    else:
        # A point left out has fast value ≥ the largest kept one, so exact (scaled) ≥ that − W.
        width = w * (s.norms64 + s.norms64.max()) + slack
        limit = nearest.values.max(axis=1).astype(np.float64) - width
        trusted = np.count_nonzero(sq * (scale * scale) * (1 + 8 * _U64) < limit[:, None], axis=1)
    return _Lists(index, sq, trusted)


class _Pairs:
    """Cross pairs (real row, fake row) with their rounded distances, those that may lie inside a ball."""

    def __init__(self, real: np.ndarray, fake: np.ndarray, dist: np.ndarray) -> None:
        self.real, self.fake, self.dist = real, fake, dist


def _cross_pairs(
    rs: _Set,
    fs: _Set,
    real_cap: np.ndarray,
    fake_cap: np.ndarray,
    cross_dtype: type,
    chunk: int,
    scale: float,
    w: float,
    slack: float,
    bar,
) -> tuple[_Pairs, _Pairs]:
    """Pairs closer than the real row's cap (real balls) and than the fake row's cap (fake balls)."""
    fast_dtype, scale2, m = rs.fast.dtype.type, scale * scale, len(fs.fast)
    real_width = w * (rs.norms64 + fs.norms64.max()) + slack
    fake_width = w * (rs.norms64.max() + fs.norms64) + slack
    r_out = _round(_thresholds(real_cap.copy(), cross_dtype)[1] * scale2 + real_width, fast_dtype, np.inf)
    f_out = _round(_thresholds(fake_cap.copy(), cross_dtype)[1] * scale2 + fake_width, fast_dtype, np.inf)
    parts: list[tuple[np.ndarray, ...]] = []
    stored = 0
    for start in range(0, len(rs.fast), chunk):
        stop = min(start + chunk, len(rs.fast))
        q = _sq_block(rs, slice(start, stop), fs, slice(0, m))
        maybe = q < r_out[start:stop, None]
        maybe |= q < f_out[None, :]
        del q
        rows, cols = _positions(maybe, sparse_rows=True)
        rows += start
        dist = _distance(_exact_sq(rs.source, rows, fs.source, cols), cross_dtype)
        in_real, in_fake = dist < real_cap[rows], dist < fake_cap[cols]
        parts.append(
            (rows[in_real], cols[in_real], dist[in_real], rows[in_fake], cols[in_fake], dist[in_fake])
        )
        stored += int(in_real.sum() + in_fake.sum())
        if stored > MAX_PAIRS:
            raise TooManyPairs(f"more than {MAX_PAIRS} cross pairs lie within the neighbour caps")
        bar.update()
    cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
    return _Pairs(*cat[:3]), _Pairs(*cat[3:])


class PRDCResampler:
    """Precision, recall, density and coverage of bootstrap resamples of fixed real and fake features.

    ``resampler(real_counts, fake_counts)`` equals ``precision_recall_density_coverage(real[i], fake[j], k)``
    for any index arrays ``i`` and ``j`` whose row counts these are (module docstring).

    Parameters
    ----------
    real, fake
        N×D and M×D features.
    nearest_k
        k of the k-NN radii.
    chunk_size, device
        As in :func:`~auditkit.metrics.prdc.precision_recall_density_coverage` (rows per block, where the
        products run).
    depth
        Neighbours kept per point (default 4(k+1) + 8); only speed depends on it.
    progress
        Show a progress bar over the set-up passes.

    Raises
    ------
    TooManyPairs
        More than :data:`MAX_PAIRS` cross pairs would have to be stored.
    """

    def __init__(
        self,
        real: ArrayLike,
        fake: ArrayLike,
        nearest_k: int = 5,
        *,
        chunk_size: int = 1024,
        device: str | torch.device | None = None,
        depth: int | None = None,
        progress: bool = False,
    ) -> None:
        r, f = _as_features(real, "real"), _as_features(fake, "fake")
        if r.shape[1] != f.shape[1]:
            raise DataError(
                f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}; "
                "extract both with the same feature extractor."
            )
        self.k = _check_k(nearest_k, {"real": len(r), "fake": len(f)})
        chunk = _check_chunk(chunk_size)
        self.n, self.m = len(r), len(f)
        # Identical rows are one point with a multiplicity: every value is a count-weighted sum, so
        # merging them changes nothing, and a run of identical rows longer than the lists (rendered data
        # repeats images: 20 000 Shapes had 7 375 distinct judge features, up to 77 copies of one) would
        # leave those rows with no trusted neighbour, recomputed from scratch on every resample.
        r, self._real_of = _distinct(r)
        f, self._fake_of = _distinct(f)
        dev = _resolve_device(device, [r, f])
        (rs, fs), scale = _prepare([r, f], ["real", "fake"], dev, _fast_dtype(dev, r.shape[1]))
        w, slack = _bound_factor(r.shape[1], rs.fast.dtype.type)
        depth = 4 * (self.k + 1) + 8 if depth is None else max(int(depth), 1)
        self._sets = (rs, fs)
        self.cross_dtype = np.float32 if rs.dist_dtype == fs.dist_dtype == np.float32 else np.float64
        blocks = 2 * math.ceil(len(r) / chunk) + math.ceil(len(f) / chunk)
        with tqdm(total=blocks, desc="PRDC neighbours", unit="block", disable=not progress) as bar:
            self.real_lists = _neighbour_lists(rs, depth, chunk, scale, w, slack, bar)
            self.fake_lists = _neighbour_lists(fs, depth, chunk, scale, w, slack, bar)
            self.real_pairs, self.fake_pairs = _cross_pairs(
                rs,
                fs,
                _distance(self.real_lists.cap_sq, rs.dist_dtype),
                _distance(self.fake_lists.cap_sq, fs.dist_dtype),
                self.cross_dtype,
                chunk,
                scale,
                w,
                slack,
                bar,
            )
        self.recomputed_rows = 0  # rows whose walk left the trusted list (recomputed in full)

    def __call__(self, real_counts: np.ndarray, fake_counts: np.ndarray) -> dict[str, float]:
        """PRDC of the resample that holds row ``a`` of real ``real_counts[a]`` times (fake likewise)."""
        rs, fs = self._sets
        c = np.asarray(real_counts, dtype=np.int64)
        cf = np.asarray(fake_counts, dtype=np.int64)
        if c.shape != (self.n,) or cf.shape != (self.m,) or c.sum() != self.n or cf.sum() != self.m:
            raise DataError(
                f"a resample's counts must have {self.n} real and {self.m} fake entries adding up to "
                f"{self.n} and {self.m}; got sums {c.sum()} and {cf.sum()}."
            )
        c = np.bincount(self._real_of, weights=c, minlength=len(rs.source)).astype(np.int64)
        cf = np.bincount(self._fake_of, weights=cf, minlength=len(fs.source)).astype(np.int64)
        real_radius, real_full = self._radii(rs, self.real_lists, c)
        fake_radius, fake_full = self._radii(fs, self.fake_lists, cf)

        # Pairs inside real balls: those stored, except rows recomputed against every fake.
        ra, fj, dist = self._pairs(self.real_pairs, real_full, None)
        inside = (dist < real_radius[ra]) & (cf[fj] > 0)
        ra, fj = ra[inside], fj[inside]
        density_count = int(np.dot(c[ra], cf[fj]))
        fake_covered = np.zeros(len(cf), dtype=bool)
        fake_covered[fj] = True
        real_covered = np.zeros(len(c), dtype=bool)
        real_covered[ra] = True
        # Pairs inside fake balls.
        ra, fj, dist = self._pairs(self.fake_pairs, None, fake_full)
        recalled = np.zeros(len(c), dtype=bool)
        recalled[ra[(dist < fake_radius[fj]) & (c[ra] > 0)]] = True

        # The same integer counts and float operations as precision_recall_density_coverage.
        return {
            "precision": int(cf[fake_covered].sum()) / self.m,
            "recall": int(c[recalled].sum()) / self.n,
            "density": (1.0 / float(self.k)) * (density_count / self.m),
            "coverage": int(c[real_covered].sum()) / self.n,
        }

    def _pairs(
        self, stored: _Pairs, real_rows: np.ndarray | None, fake_rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored pairs, with the given real rows (or fake rows) replaced by all their pairs."""
        ra, fj, dist = stored.real, stored.fake, stored.dist
        rs, fs = self._sets
        n, m = len(rs.source), len(fs.source)  # distinct rows
        if real_rows is not None and len(real_rows):
            drop = np.isin(ra, real_rows)
            extra_a, extra_j = np.repeat(real_rows, m), np.tile(np.arange(m), len(real_rows))
        elif fake_rows is not None and len(fake_rows):
            drop = np.isin(fj, fake_rows)
            extra_a, extra_j = np.tile(np.arange(n), len(fake_rows)), np.repeat(fake_rows, n)
        else:
            return ra, fj, dist
        extra_d = _distance(_exact_sq(rs.source, extra_a, fs.source, extra_j), self.cross_dtype)
        keep = ~drop
        return (
            np.concatenate([ra[keep], extra_a]),
            np.concatenate([fj[keep], extra_j]),
            np.concatenate([dist[keep], extra_d]),
        )

    def _radii(self, s: _Set, lists: _Lists, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each present row's radius in the resample (−inf for absent rows), and the rows recomputed."""
        n = len(counts)
        sq = np.full(n, -np.inf)
        present = np.flatnonzero(counts)
        need = self.k + 1 - counts[present]  # its own copies are the first neighbours, at distance 0
        alone = need > 0
        sq[present[~alone]] = 0.0
        rows, need = present[alone], need[alone]
        weights = counts[lists.index[rows]]
        weights[np.arange(weights.shape[1])[None, :] >= lists.trusted[rows, None]] = 0
        reached = np.cumsum(weights, axis=1) >= need[:, None]
        found = reached[:, -1]
        sq[rows[found]] = lists.sq[rows[found], reached[found].argmax(axis=1)]
        full = rows[~found]
        for a, needed in zip(full, need[~found], strict=True):
            sq[a] = self._kth_from_scratch(s, int(a), counts, int(needed))
        self.recomputed_rows += len(full)
        radius = np.full(n, -np.inf)
        radius[present] = _distance(sq[present], s.dist_dtype)
        return radius, full

    @staticmethod
    def _kth_from_scratch(s: _Set, a: int, counts: np.ndarray, needed: int) -> float:
        """The ``needed``-th smallest distance (with multiplicities) from row ``a`` to the other rows."""
        others = np.flatnonzero(counts)
        others = others[others != a]
        sq = _exact_sq(s.source, np.full(len(others), a), s.source, others)
        order = np.argsort(sq, kind="stable")
        position = np.searchsorted(np.cumsum(counts[others][order]), needed)
        return float(sq[order][position])


def _distinct(x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """The distinct rows of ``x`` (bit for bit) and, for each original row, the index of its distinct row."""
    rows, inverse = torch.unique(x, dim=0, return_inverse=True)
    if len(rows) == len(x):
        return x, np.arange(len(x))
    return rows, inverse.cpu().numpy().astype(np.int64)


def counts_of(indices: np.ndarray, size: int) -> np.ndarray:
    """Row counts of a resample given as drawn row indices."""
    return np.bincount(indices, minlength=size)


__all__ = ["MAX_PAIRS", "PRDCResampler", "TooManyPairs", "counts_of"]
