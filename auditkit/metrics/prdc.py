"""Precision, recall, density and coverage (Naeem et al. 2020) from k-NN radii, streamed in chunks.

Why hand-written: the reference ``prdc`` package builds the full real×real, fake×fake and real×fake
distance matrices with ``sklearn.metrics.pairwise_distances`` (in float64, also for float32 features) and
partitions them, so it holds several N×N matrices at once: 2.1 GB peak at 10k×10k, some 50-60 GB at
50k×50k. Here no distance matrix ever exists: ``chunk_size`` rows at a time are compared with the whole
other set, and only a few nearest candidates per row and running any/count reductions are kept. The two
within-set passes use symmetry (each block also serves the rows on its other side), so each costs half a
matrix product. Memory is O(chunk_size·N + N·D); see ``benchmarks/RESULTS.md`` for time and memory.

Definitions, exactly prdc's (``prdc/prdc.py``): the radius of a point is the distance to its k-th
nearest neighbour in its own set, the point itself counted as the 0-th (so duplicates are neighbours at
distance 0); comparisons are strict (``<``).

- precision: share of fake points inside at least one real ball (distance < that real's radius);
- recall: share of real points inside at least one fake ball;
- density: (1 / k) × mean over fake points of the number of real balls containing them;
- coverage: share of real points whose nearest fake point is inside their own ball.

Which distances (the exactness contract). A pair's squared distance is computed in float64 from the
original values, differences summed along the row in a fixed order, so identical pairs give identical
bits and exact ties stay ties. It is then rounded and square-rooted in the dtype scikit-learn returns
(float32 when both operands are float32, float64 otherwise; a set's radii in that set's dtype) and
compared as prdc compares. These are prdc's values up to the round-off of scikit-learn's
‖x‖² − 2x·y + ‖y‖² formula, which is far below float32 resolution: results equal prdc's, except that a
pair lying exactly on a radius (duplicated points, float64 input) is decided exactly here and by that
round-off in prdc.

Fast and exact at once. All distances are first computed with float32 matrix products by the same
expansion, on features centred on the real mean and scaled by a power of two. Each such value q carries a
proven error bound W (``_bound_factor``: the worst-case dot-product error γ_D‖x‖‖y‖ in any summation order,
plus every other rounding), so "distance < radius" is certain whenever q − W and q + W lie on the same side
of the threshold. Only the pairs in between are recomputed exactly as above, together with, for each
point, the neighbours whose fast value lies within 2W of its (k+1)-th smallest (the exact radius is the
right order statistic among them; closer ones are only counted). So the radii are exact and every decision
equals the one made on the exact values. If CUDA float32 matmuls may run in TF32/bfloat16, or the features
fall outside float32's comfortable range, the fast pass runs in float64 instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, DataError

ArrayLike = torch.Tensor | np.ndarray

_U32, _U64 = 2.0**-24, 2.0**-53
_SPARE = 8  # candidates kept per row beyond k + 1, so that near-ties rarely need a second scan
_PROGRESS_FROM = 20_000  # show a progress bar by default from this many samples in either set
_BATCH = 1 << 22  # elements per temporary slice when converting or selecting (32 MiB in float64)
_SELECT_BATCH = 1 << 20  # block elements per top-k selection slice (its int64 indices: 8 MiB)
_EXACT_BATCH = 1 << 17  # float64 elements per exact-recomputation slice: 1 MiB, stays in cache
_MAX_ABS = 1e150  # beyond this, float64 squared distances can overflow
_DEFAULT_CHUNK = 1024


@dataclass(frozen=True)
class _Set:
    """One feature set, prepared for the fast pass and for the exact recomputation."""

    fast: np.ndarray  # N×D, centred and scaled by a power of two, in the fast dtype (host copy)
    on_device: torch.Tensor | None  # the same on the GPU, when the products run there
    norms: np.ndarray  # ‖fast_i‖² in the fast dtype (used in the blocks)
    norms64: np.ndarray  # the same in float64 (used in the error bounds)
    source: np.ndarray  # the original values, float32 or float64 (exact recomputation)
    dist_dtype: type  # dtype of scikit-learn's distances within this set


# ----------------------------------------------------------------------------------------- validation


def _as_features(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise DataError(
                f"{name} features must be numeric; got dtype {arr.dtype}. Pass an N×D float array."
            )
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")))
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(
            f"{name} features must be real numbers; got dtype {t.dtype}. Pass an N×D float array."
        )
    if t.ndim != 2:
        raise DataError(
            f"{name} features must be an N×D matrix (one row per sample); got shape {tuple(t.shape)}. "
            "Flatten or stack the features first."
        )
    if t.shape[1] == 0:
        raise DataError(f"{name} features have no dimensions (shape {tuple(t.shape)}); pass N×D with D ≥ 1.")
    return t


def _source(t: torch.Tensor) -> np.ndarray:
    """Host values for the exact pass: float32 (and narrower floats) as float32, the rest as float64."""
    dtype = torch.float32 if t.dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.float64
    return t.to(device="cpu", dtype=dtype).numpy()


def _resolve_device(device: str | torch.device | None, tensors: list[torch.Tensor]) -> torch.device:
    if device is None:
        devices = {t.device for t in tensors}
        return devices.pop() if len(devices) == 1 else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:N'.") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported for PRDC; use 'cpu' or 'cuda'.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use device='cpu'.")
    return dev


def _check_k(nearest_k: int, sizes: dict[str, int]) -> int:
    if isinstance(nearest_k, bool) or not isinstance(nearest_k, int | np.integer) or nearest_k < 1:
        raise ConfigError(f"nearest_k must be a positive integer; got {nearest_k!r}.")
    for name, n in sizes.items():
        if nearest_k >= n:
            raise ConfigError(
                f"nearest_k={nearest_k} needs more than {nearest_k} {name} samples (a k-th neighbour other "
                f"than the point itself); got {n}. Lower nearest_k or provide more samples."
            )
    return int(nearest_k)


def _check_chunk(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer (rows per block); got {chunk_size!r}.")
    return int(chunk_size)


# ------------------------------------------------------------------------------------- preparation


def _fast_dtype(device: torch.device, dim: int) -> type:
    """float32, unless CUDA float32 matmuls may use TF32/bfloat16 or D is too large for its bound."""
    if dim * _U32 > 1e-2:
        return np.float64
    if device.type == "cuda":
        reduced = (
            torch.backends.cuda.matmul.allow_tf32
            or torch.get_float32_matmul_precision() != "highest"
            or getattr(torch.backends.cuda.matmul, "fp32_precision", "none") not in ("none", "ieee")
        )
        if reduced:
            return np.float64
    return np.float32


def _centred(sources: list[np.ndarray], mean: np.ndarray, dtype: type, step: int) -> list[np.ndarray]:
    """x − shift rounded to ``dtype``, with one shift for all sets: the mean rounded to ``dtype``.

    A shared shift only translates the sets, so distances are unchanged; rounding it to ``dtype`` lets
    float32 features be centred in float32 with a single rounding per value.
    """
    shift64 = mean.astype(dtype).astype(np.float64)
    out = []
    for src in sources:
        centred = np.empty(src.shape, dtype=dtype)
        shift = shift64.astype(np.result_type(src.dtype, dtype))  # exact: representable in both
        for a in range(0, len(src), step):
            np.subtract(src[a : a + step], shift, out=centred[a : a + step], casting="same_kind")
        out.append(centred)
    return out


def _max_abs(arrays: list[np.ndarray], names: list[str], sources: list[np.ndarray], step: int) -> float:
    largest = 0.0
    for arr, name, src in zip(arrays, names, sources, strict=True):
        for a in range(0, len(arr), step):
            part = arr[a : a + step]
            value = max(float(part.max()), -float(part.min()))  # NaN and inf propagate
            if not math.isfinite(value) and not np.isfinite(src[a : a + step]).all():
                raise DataError(
                    f"{name} features contain NaN or infinite values; check the images and the extractor "
                    "they came from."
                )
            largest = max(largest, value)
    return largest


def _prepare(
    tensors: list[torch.Tensor], names: list[str], device: torch.device, fast_dtype: type
) -> tuple[list[_Set], float]:
    """Centre on the first set's mean, round to the fast dtype, scale by a power of two.

    Centring keeps ‖x‖² small next to the distances (the expansion's error scales with it); the
    power-of-two scale keeps every value below 1, so nothing overflows later, and it multiplies squared
    distances by exactly ``scale²``. Work goes in slices: no float64 copy of a set is made.
    """
    sources = [_source(t) for t in tensors]
    step = max(1, _BATCH // sources[0].shape[1])
    first = sources[0]
    mean = sum(first[a : a + step].sum(0, dtype=np.float64) for a in range(0, len(first), step)) / len(first)
    fast = _centred(sources, mean, fast_dtype, step)
    max_abs = _max_abs(fast, names, sources, step)
    if fast_dtype == np.float32 and not 2.0**-60 < max_abs < 2.0**100:
        # Beyond float32's comfortable range (huge float64 features, or all differences tiny, where
        # subnormal rounding would matter after scaling): run the fast pass in float64 instead.
        fast_dtype = np.float64
        fast = _centred(sources, mean, fast_dtype, step)
        max_abs = _max_abs(fast, names, sources, step)
    if max_abs > _MAX_ABS or 0.0 < max_abs < 1.0 / _MAX_ABS:
        raise DataError(
            f"features spread over {max_abs:.3g} around the real mean; squared distances would over- or "
            "underflow float64. Rescale the features."
        )
    scale = 2.0 ** -math.frexp(max_abs)[1] if max_abs > 0 else 1.0
    sets = []
    for t, src, x in zip(tensors, sources, fast, strict=True):
        for a in range(0, len(x), step):
            x[a : a + step] *= scale  # exact: a power of two
        norms64 = np.concatenate(
            [np.square(x[a : a + step], dtype=np.float64).sum(1) for a in range(0, len(x), step)]
        )
        on_device = torch.from_numpy(x).to(device) if device.type != "cpu" else None
        dist_dtype = np.float32 if t.dtype == torch.float32 else np.float64
        sets.append(_Set(x, on_device, norms64.astype(fast_dtype), norms64, src, dist_dtype))
    return sets, scale


def _bound_factor(dim: int, fast_dtype: type) -> tuple[float, float]:
    """(w, slack) such that |exact_sq·scale² − q| ≤ w·(‖x̂‖² + ‖ŷ‖²) + slack for every fast value q.

    With u the fast unit round-off and x̂ = fl((x − μ)·scale): ‖x̂ − (x − μ)·scale‖ ≤ 1.02u‖x̂‖, which moves
    the squared distance by at most 4.1u(‖x̂‖² + ‖ŷ‖²); the product's x̂·ŷ is off by at most γ_D‖x̂‖‖ŷ‖ in
    any summation order (γ_n = nu / (1 − nu)), so −2x̂·ŷ by γ_D(‖x̂‖² + ‖ŷ‖²); rounding the norms and the
    two additions add 5u(‖x̂‖² + ‖ŷ‖²); the float64 recomputation is within γ_{D+2}(u64) of the truth,
    relatively, i.e. 2.01γ_{D+2}(u64)(‖x̂‖² + ‖ŷ‖²). w doubles the sum for safety (which also absorbs the
    float64 rounding of the thresholds); ``slack`` covers subnormal rounding (≤ 2⁻⁹⁰ per value, since the
    largest centred value is at least 2⁻⁶⁰ before scaling, ≤ 2⁻¹⁴⁹ per product).
    """
    u = _U32 if fast_dtype == np.float32 else _U64

    def gamma(n: int, unit: float) -> float:
        return n * unit / (1 - n * unit)

    w = 2.0 * (gamma(dim, u) + 10.0 * u + 3.0 * gamma(dim + 2, _U64))
    return w, dim * 2.0**-80


def _sq_block(a: _Set, rows: slice | np.ndarray, b: _Set, cols: slice) -> np.ndarray:
    """Fast squared distances ‖a_i‖² + ‖b_j‖² − 2a_i·b_j for one block, in the fast dtype."""
    if a.on_device is not None:
        sel = rows if isinstance(rows, slice) else torch.from_numpy(rows).to(a.on_device.device)
        nb = torch.from_numpy(b.norms[cols]).to(b.on_device.device)
        na = torch.from_numpy(a.norms[rows]).to(a.on_device.device)
        q = torch.addmm(nb[None, :], a.on_device[sel], b.on_device[cols].T, alpha=-2.0)
        return q.add_(na[:, None]).cpu().numpy()
    # NumPy's BLAS rather than torch's: torch's MKL runs a generic code path on AMD CPUs (measured 4× slower),
    # and keeping all CPU work in NumPy avoids two thread pools spinning against each other.
    q = (a.fast[rows] * -2) @ b.fast[cols].T  # scaling by −2 is exact, so it may go on the small operand
    q += b.norms[cols]
    q += a.norms[rows][:, None]
    return q


def _round(x: np.ndarray, dtype: type, direction: float) -> np.ndarray:
    """Round float64 thresholds to ``dtype`` towards ``direction`` (±inf), so comparisons stay safe."""
    if dtype == np.float64:
        return x
    y = x.astype(np.float32)
    wrong = y > x if direction < 0 else y < x
    y[wrong] = np.nextafter(y[wrong], np.float32(direction))
    return y


# ------------------------------------------------------------------------------------------- exact


def _exact_sq(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Squared distances of the pairs (a[ia], b[ib]) in float64, from the differences.

    Each value depends only on its two vectors: the sum runs along one contiguous row in NumPy's fixed
    pairwise order, so equal pairs give bit-identical values (and ties stay ties) whatever the batch.
    """
    out = np.empty(len(ia), dtype=np.float64)
    step = max(1, _EXACT_BATCH // a.shape[1])
    for start in range(0, len(ia), step):
        diff = a[ia[start : start + step]].astype(np.float64) - b[ib[start : start + step]]
        np.multiply(diff, diff, out=diff)
        out[start : start + step] = diff.sum(axis=1)
    return out


def _distance(sq: np.ndarray, dtype: type) -> np.ndarray:
    """scikit-learn's distance for exact squared distances: rounded to ``dtype``, then its square root."""
    return np.sqrt(sq.astype(dtype)).astype(np.float64)


def _thresholds(radius: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Squared-distance bounds (lo, hi) around each radius, for distances of ``dtype``.

    Exact squared distance s < lo ⇒ distance(s) < radius (certainly inside); s ≥ hi ⇒ not inside. The
    16-unit margins cover rounding s to ``dtype`` and the square root; tiny and huge radii, where ``dtype``
    loses relative precision, get no certain region on that side (all their pairs are checked).
    """
    u, tiny, huge = (_U32, 1e-30, 1e37) if dtype == np.float32 else (_U64, 1e-290, 1e300)
    r2 = radius**2
    lo, hi = r2 * (1 - 16 * u), r2 * (1 + 16 * u)
    small, large = r2 < tiny, r2 > huge
    lo[small], hi[small] = -np.inf, 4 * tiny
    lo[large], hi[large] = huge / 2, np.inf
    return lo, hi


# ----------------------------------------------------------------------------------------- k-NN radii


def _smallest(values: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest entries of each row (unordered) and their column positions."""
    if count >= values.shape[1]:
        return values, np.broadcast_to(np.arange(values.shape[1]), values.shape)
    pos = np.empty((len(values), count), dtype=np.int64)
    step = max(1, _SELECT_BATCH // values.shape[1])  # argpartition's int64 index array stays small
    for a in range(0, len(values), step):
        pos[a : a + step] = np.argpartition(values[a : a + step], count - 1, axis=1)[:, :count]
    return np.take_along_axis(values, pos, axis=1), pos


def _positions(mask: np.ndarray, *, sparse_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the true entries of a 2-D mask.

    A flat search is ~10× faster than ``np.nonzero`` on 2-D masks; with ``sparse_rows`` (few rows hold
    any entry) a cheap per-row test first narrows the search to those rows.
    """
    if not sparse_rows:
        return np.divmod(np.flatnonzero(mask), mask.shape[1])
    rows = np.flatnonzero(mask.any(1))
    sub_rows, cols = np.divmod(np.flatnonzero(mask[rows]), mask.shape[1])
    return rows[sub_rows], cols


class _Nearest:
    """The ``keep`` smallest fast squared distances seen so far for each row, with their columns."""

    def __init__(self, n: int, keep: int, dtype: type) -> None:
        self.values = np.full((n, keep), np.inf, dtype=dtype)
        self.index = np.zeros((n, keep), dtype=np.int64)

    def offer(self, first: int, block: np.ndarray, offset: int, *, by_column: bool = False) -> None:
        """Offer ``block`` (rows ``first``..., columns ``offset``...; transposed if ``by_column``).

        Only entries below a row's current worst kept value can enter, and after the first blocks those are
        few: they are found with one comparison and merged sparsely. Blocks offering many (the first ones)
        go through a dense partial sort instead.
        """
        count = block.shape[1] if by_column else block.shape[0]
        worst = self.values[first : first + count].max(axis=1)
        mask = block < (worst[None, :] if by_column else worst[:, None])
        hits = np.count_nonzero(mask)
        if hits > block.size // 100:  # measured break-even: a hit costs ~100× a partial-sort entry
            del mask
            self._offer_dense(first, block, offset, by_column)
            return
        inner, outer = _positions(mask)
        values = block[inner, outer]
        rows, cols = (outer, inner) if by_column else (inner, outer)
        self._merge_sparse(rows + first, cols + offset, values)

    def _offer_dense(self, first: int, block: np.ndarray, offset: int, by_column: bool) -> None:
        keep = self.values.shape[1]
        if by_column:
            step = max(1, _SELECT_BATCH // len(block))
            for a in range(0, block.shape[1], step):
                v, i = _smallest(np.ascontiguousarray(block[:, a : a + step].T), keep)
                self._merge_dense(slice(first + a, first + a + v.shape[0]), v, i + offset)
        else:
            v, i = _smallest(block, keep)
            self._merge_dense(slice(first, first + len(block)), v, i + offset)

    def _merge_dense(self, rows: slice, v: np.ndarray, i: np.ndarray) -> None:
        merged, pos = _smallest(np.concatenate([self.values[rows], v], axis=1), self.values.shape[1])
        self.index[rows] = np.take_along_axis(np.concatenate([self.index[rows], i], axis=1), pos, axis=1)
        self.values[rows] = merged

    def _merge_sparse(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        if not len(rows):
            return
        keep = self.values.shape[1]
        touched = np.unique(rows)
        local = np.searchsorted(touched, rows)
        all_rows = np.concatenate([np.repeat(np.arange(len(touched)), keep), local])
        all_values = np.concatenate([self.values[touched].ravel(), values])
        all_index = np.concatenate([self.index[touched].ravel(), cols])
        order = np.lexsort((all_values, all_rows))
        sorted_rows = all_rows[order]
        rank = np.arange(len(order)) - np.searchsorted(sorted_rows, sorted_rows)
        chosen = order[rank < keep]  # every touched row still has ``keep`` entries (its old ones)
        self.values[touched] = all_values[chosen].reshape(len(touched), keep)
        self.index[touched] = all_index[chosen].reshape(len(touched), keep)


def _kth_sq(s: _Set, k: int, chunk: int, w: float, slack: float, bar: tqdm) -> np.ndarray:
    """Exact squared distance (float64, original units) from each point to its k-th neighbour in its set."""
    n = len(s.fast)
    keep = min(k + 1 + _SPARE, n)
    nearest = _Nearest(n, keep, s.fast.dtype.type)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        q = _sq_block(s, slice(start, stop), s, slice(start, n))
        nearest.offer(start, q, start)
        if stop < n:
            # By symmetry the same block holds the later rows' distances to this chunk's rows.
            nearest.offer(stop, q[:, stop - start :], start, by_column=True)
        del q
        bar.update()

    # Every fast value q is within W of the exact one (in fast units). So, with q₍ₖ₊₁₎ the (k+1)-th smallest
    # fast value of a row, the exact (k+1)-th smallest V lies in [q₍ₖ₊₁₎ − W, q₍ₖ₊₁₎ + W]: pairs with
    # q < q₍ₖ₊₁₎ − 2W are certainly below V (only counted), and every other pair at or below V has
    # q ≤ q₍ₖ₊₁₎ + 2W. V is found among the exact values of those in between.
    order = np.argsort(nearest.values, axis=1)
    values = np.take_along_axis(nearest.values, order, axis=1).astype(np.float64)
    index = np.take_along_axis(nearest.index, order, axis=1)
    width = 2 * (w * (s.norms64 + s.norms64.max()) + slack)
    low, high = values[:, k] - width, values[:, k] + width
    below = np.count_nonzero(values < low[:, None], axis=1)
    in_band = (values >= low[:, None]) & (values <= high[:, None])
    # A row whose kept candidates all lie within the band may have more beyond them: scan it again.
    again = np.flatnonzero(in_band[:, -1]) if keep < n else np.empty(0, dtype=np.int64)
    in_band[again] = False
    rows, pos = _positions(in_band)
    parts = [(rows, index[rows, pos])]
    for start in range(0, len(again), chunk):
        some = again[start : start + chunk]
        q = _sq_block(s, some, s, slice(0, n)).astype(np.float64)
        below[some] = np.count_nonzero(q < low[some, None], axis=1)
        hit_rows, hit_cols = _positions((q >= low[some, None]) & (q <= high[some, None]))
        parts.append((some[hit_rows], hit_cols))
    rows = np.concatenate([r for r, _ in parts])
    cols = np.concatenate([c for _, c in parts])

    exact = np.zeros(len(rows), dtype=np.float64)
    other = rows != cols  # a point's distance to itself is 0
    exact[other] = _exact_sq(s.source, rows[other], s.source, cols[other])
    order = np.lexsort((exact, rows))
    starts = np.searchsorted(rows[order], np.arange(n))
    return exact[order][starts + k - below]


# --------------------------------------------------------------------------------------------- cross


def _cross(
    real: _Set,
    fake: _Set,
    real_radius: np.ndarray,
    fake_radius: np.ndarray,
    chunk: int,
    scale: float,
    w: float,
    slack: float,
    bar: tqdm,
) -> tuple[int, int, int, int]:
    """Covered fakes, (real ball, fake) pairs inside, covered reals and recalled reals."""
    cross_dtype = np.float32 if real.dist_dtype == fake.dist_dtype == np.float32 else np.float64
    fast_dtype, scale2, m = real.fast.dtype.type, scale * scale, len(fake.fast)
    real_width = w * (real.norms64 + fake.norms64.max()) + slack
    fake_width = w * (real.norms64.max() + fake.norms64) + slack
    r_lo, r_hi = _thresholds(real_radius, cross_dtype)
    f_lo, f_hi = _thresholds(fake_radius, cross_dtype)
    # In fast units: q < *_in ⇒ certainly inside; q ≥ *_out ⇒ certainly outside; in between: recompute.
    r_in = _round(r_lo * scale2 - real_width, fast_dtype, -np.inf)[:, None]
    r_out = _round(r_hi * scale2 + real_width, fast_dtype, np.inf)[:, None]
    f_in = _round(f_lo * scale2 - fake_width, fast_dtype, -np.inf)[None, :]
    f_out = _round(f_hi * scale2 + fake_width, fast_dtype, np.inf)[None, :]

    fake_covered = np.zeros(m, dtype=bool)
    real_covered = np.zeros(len(real.fast), dtype=bool)
    recalled = np.zeros(len(real.fast), dtype=bool)
    inside = 0
    for start in range(0, len(real.fast), chunk):
        stop = min(start + chunk, len(real.fast))
        q = _sq_block(real, slice(start, stop), fake, slice(0, m))
        sure = q < r_in[start:stop]
        fake_covered |= sure.any(0)
        inside += int(np.count_nonzero(sure))
        covered = sure.any(1)
        band = q < r_out[start:stop]
        band ^= sure  # certainly-inside pairs are a subset of the not-certainly-outside ones
        del sure
        a_rows, a_cols = _positions(band, sparse_rows=True)
        sure = q < f_in
        rec = sure.any(1)
        band = q < f_out
        band ^= sure
        band[rec] = False  # rows already recalled need no further check
        b_rows, b_cols = _positions(band, sparse_rows=True)
        del q, sure, band

        # Resolve the pairs within round-off of a radius with exact squared distances.
        keys = np.unique(np.concatenate([a_rows * m + a_cols, b_rows * m + b_cols]))
        if len(keys):
            rows, cols = keys // m, keys % m
            dist = _distance(_exact_sq(real.source, rows + start, fake.source, cols), cross_dtype)
            hit = np.isin(keys, a_rows * m + a_cols, assume_unique=True) & (dist < real_radius[rows + start])
            inside += int(np.count_nonzero(hit))
            fake_covered[cols[hit]] = True
            covered[rows[hit]] = True
            rec[rows[dist < fake_radius[cols]]] = True
        real_covered[start:stop] = covered
        recalled[start:stop] = rec
        bar.update()
    return int(fake_covered.sum()), inside, int(real_covered.sum()), int(recalled.sum())


# ----------------------------------------------------------------------------------------------- API


def _progress(enabled: bool | None, sizes: list[int], total: int) -> tqdm:
    show = max(sizes) >= _PROGRESS_FROM if enabled is None else bool(enabled)
    return tqdm(total=total, desc="PRDC", unit="block", disable=not show)


def knn_radii(
    features: ArrayLike,
    nearest_k: int = 5,
    *,
    chunk_size: int = _DEFAULT_CHUNK,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Distance from each row of ``features`` to its ``nearest_k``-th nearest neighbour in the set.

    The point itself counts as the 0-th neighbour (prdc's ``compute_nearest_neighbour_distances``).
    Values are exact (see the module docstring), in scikit-learn's dtype: float32 for float32 features,
    float64 otherwise. Memory is O(chunk_size·N + N·D).

    Raises
    ------
    DataError
        If ``features`` is not a finite numeric N×D matrix.
    ConfigError
        If ``nearest_k`` is not below N, or ``chunk_size`` / ``device`` are invalid.
    """
    t = _as_features(features, "features")
    k = _check_k(nearest_k, {"features": len(t)})
    chunk = _check_chunk(chunk_size)
    dev = _resolve_device(device, [t])
    fast_dtype = _fast_dtype(dev, t.shape[1])
    (s,), _ = _prepare([t], ["features"], dev, fast_dtype)
    w, slack = _bound_factor(t.shape[1], s.fast.dtype.type)
    with _progress(progress, [len(t)], math.ceil(len(t) / chunk)) as bar:
        sq = _kth_sq(s, k, chunk, w, slack, bar)
    return torch.from_numpy(np.sqrt(sq.astype(s.dist_dtype)))


def precision_recall_density_coverage(
    real: ArrayLike,
    fake: ArrayLike,
    nearest_k: int = 5,
    *,
    chunk_size: int = _DEFAULT_CHUNK,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020).

    Parameters
    ----------
    real, fake
        N×D and M×D features (NumPy arrays or torch tensors, any real dtype).
    nearest_k
        k of the k-NN radii (5 in the paper); must be below N and M.
    chunk_size
        Rows per block; memory is O(chunk_size·max(N, M) + (N + M)·D). Results do not depend on it.
    device
        Where the matrix products run (default: the inputs' device if they share one, else CPU).
    progress
        Show a progress bar (default: from 20 000 samples in either set).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``density``, ``coverage`` as floats, equal to ``prdc.compute_prdc``'s
        (see the module docstring for exact ties).

    Raises
    ------
    DataError
        If either input is not a finite numeric N×D matrix, or their dimensions differ.
    ConfigError
        If ``nearest_k`` is not below both sample counts, or ``chunk_size`` / ``device`` are invalid.
    """
    r, f = _as_features(real, "real"), _as_features(fake, "fake")
    if r.shape[1] != f.shape[1]:
        raise DataError(
            f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}; "
            "extract both with the same feature extractor."
        )
    k = _check_k(nearest_k, {"real": len(r), "fake": len(f)})
    chunk = _check_chunk(chunk_size)
    dev = _resolve_device(device, [r, f])
    fast_dtype = _fast_dtype(dev, r.shape[1])
    (rs, fs), scale = _prepare([r, f], ["real", "fake"], dev, fast_dtype)
    w, slack = _bound_factor(r.shape[1], rs.fast.dtype.type)
    n, m = len(r), len(f)
    with _progress(progress, [n, m], 2 * math.ceil(n / chunk) + math.ceil(m / chunk)) as bar:
        real_radius = _distance(_kth_sq(rs, k, chunk, w, slack, bar), rs.dist_dtype)
        fake_radius = _distance(_kth_sq(fs, k, chunk, w, slack, bar), fs.dist_dtype)
        covered_fakes, inside, covered_reals, recalled = _cross(
            rs, fs, real_radius, fake_radius, chunk, scale, w, slack, bar
        )
    # The same float operations as prdc's means of boolean/integer arrays, so the values are bit-identical.
    return {
        "precision": covered_fakes / m,
        "recall": recalled / n,
        "density": (1.0 / float(k)) * (inside / m),
        "coverage": covered_reals / n,
    }


__all__ = ["knn_radii", "precision_recall_density_coverage"]
