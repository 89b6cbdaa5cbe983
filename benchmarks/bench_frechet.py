"""Fréchet distance: auditkit's symmetric eigen formulation vs scipy ``sqrtm`` and torchmetrics, one run.

Run: ``.venv/bin/python benchmarks/bench_frechet.py [--dims 512 2048] [--repeats 3]``. Prints a table and
rewrites the Fréchet section of ``benchmarks/RESULTS.md``.

Covariances come from 10 000 random features with a spread-out spectrum (standard deviations from 0.05 to 3,
geometric) and a random rotation: full rank and anisotropic, like Inception pool features. Columns:

- scipy sqrtm: the pytorch-fid formula, ``sqrtm(Σ₁Σ₂)``, real part, trace (the baseline of the ratios);
- torchmetrics: ``torchmetrics.image.fid._compute_fid`` (``eigvals`` of the product, float64);
- auditkit: ``frechet_distance`` from scratch (Cholesky + ``dsygst`` + eigenvalues only);
- prepared reference: ``FrechetReference.distance`` with the reference factorised beforehand (re-audits).

The methods are timed in turn within each repeat (not one after the other) so that load from other
processes on a shared machine falls on all of them alike; the load average is printed with the table.
A last row times the low-sample shortcut of ``fid_from_features`` (1 000 + 1 000 samples at 2048-d)
against statistics + the eigen formula on the same features.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
from _results import machine, write_section
from torchmetrics.image.fid import _compute_fid

from auditkit.metrics.frechet import FrechetReference, feature_statistics, fid_from_features, frechet_distance


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The pytorch-fid formula (``calculate_frechet_distance`` without its epsilon retry)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def features(rng: np.random.Generator, dim: int, n: int, shift: float) -> np.ndarray:
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    return (rng.standard_normal((n, dim)) * np.geomspace(0.05, 3.0, dim)) @ rotation + shift


# Share of the machine's CPU time that *other* processes used during each timed call. The machine may be
# shared; a busy neighbour slows multi-threaded LAPACK far more than its share (threads wait on each other).
FOREIGN: list[float] = []


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median seconds and last value of each function, timing them in turn within every repeat."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    values: dict[str, float] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            busy, own = _busy_seconds(), os.times()
            start = time.perf_counter()
            values[name] = fn()
            wall = time.perf_counter() - start
            times[name].append(wall)
            busy_after, own_after = _busy_seconds(), os.times()
            if busy is not None and busy_after is not None and wall > 0.05:
                mine = own_after.user + own_after.system - own.user - own.system
                FOREIGN.append(max(0.0, busy_after - busy - mine) / (wall * (os.cpu_count() or 1)))
    return {k: (statistics.median(times[k]), values[k]) for k in fns}


def bench_dim(rng: np.random.Generator, dim: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Time every method on one pair of 10 000-sample covariances of dimension ``dim``."""
    a, b = features(rng, dim, 10_000, 0.0), features(rng, dim, 10_000, 0.05)
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    m1, t1, m2, t2 = (torch.from_numpy(v) for v in (mu1, s1, mu2, s2))
    ref = FrechetReference(mu1, s1)
    res = interleaved(
        {
            "scipy": lambda: scipy_frechet(mu1, s1, mu2, s2),
            "torchmetrics": lambda: float(_compute_fid(m1, t1, m2, t2)),
            "auditkit": lambda: frechet_distance(mu1, s1, mu2, s2),
            "prepared": lambda: ref.distance(mu2, s2),
        },
        repeats,
    )
    base, value = res["scipy"]
    print(
        f"d={dim}: scipy sqrtm {base:.3f} s; "
        + "; ".join(
            f"{k} {t:.3f} s ({base / t:.1f}×, rel. diff {abs(v - value) / abs(value):.1e})"
            for k, (t, v) in res.items()
            if k != "scipy"
        ),
        flush=True,
    )
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    rows = [(dim, bench_dim(rng, dim, args.repeats)) for dim in args.dims]

    # Low-sample shortcut: fewer samples than dimensions on both sides.
    low_dim, n = 2048, 1000
    a, b = features(rng, low_dim, n, 0.0), features(rng, low_dim, n, 0.05)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the n < d warning is the point of this row
        low = interleaved(
            {
                "statistics + eigen": lambda: frechet_distance(
                    *feature_statistics(ta), *feature_statistics(tb)
                ),
                "low-rank SVD": lambda: fid_from_features(ta, tb),
            },
            args.repeats,
        )
    (t_eig, v_eig), (t_svd, v_svd) = low["statistics + eigen"], low["low-rank SVD"]
    print(
        f"{n}+{n} samples at d={low_dim}: statistics + eigen {t_eig:.3f} s, low-rank SVD {t_svd:.3f} s "
        f"({t_eig / t_svd:.1f}×, rel. diff {abs(v_svd - v_eig) / abs(v_eig):.1e})"
    )

    contention = (
        f"Other processes used {100 * statistics.mean(FOREIGN):.0f}% of the CPU on average during the timed "
        f"calls (worst call {100 * max(FOREIGN):.0f}%; above a few % the times are inflated)"
        if FOREIGN
        else "CPU use of other processes not measured (no /proc/stat)"
    )
    print(contention)
    lines = [
        "## Fréchet distance (`bench_frechet.py`)",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Median of {args.repeats} interleaved "
        f"runs, float64, covariances of 10 000 samples. {contention}. "
        "Ratio: scipy sqrtm time / method time; rel. diff: |auditkit − sqrtm| / sqrtm.",
        "",
        "| dim | scipy sqrtm (s) | torchmetrics eigvals (s) | ratio | auditkit (s) | ratio "
        "| prepared reference (s) | ratio | auditkit rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dim, res in rows:
        base, value = res["scipy"]
        cells = [
            f"{res[k][0]:.3f} | {base / res[k][0]:.1f}×" for k in ("torchmetrics", "auditkit", "prepared")
        ]
        rel = abs(res["auditkit"][1] - value) / abs(value)
        lines.append(f"| {dim} | {base:.3f} | {' | '.join(cells)} | {rel:.1e} |")
    lines += [
        "",
        f"Low-sample shortcut ({n} + {n} samples, {low_dim}-d, features in): statistics + eigen formula "
        f"{t_eig:.3f} s, `fid_from_features` (n₁×n₂ SVD) {t_svd:.3f} s, {t_eig / t_svd:.1f}×; "
        f"rel. diff {abs(v_svd - v_eig) / abs(v_eig):.1e}.",
    ]
    goal = next((res for dim, res in rows if dim == 2048), None)
    if goal is not None:
        ratio = goal["scipy"][0] / goal["auditkit"][0]
        ratio_ref = goal["scipy"][0] / goal["prepared"][0]
        lines += [
            "",
            f"Goal: ≥ 20× faster than scipy sqrtm at 2048-d on 2 cores: from scratch "
            f"{'met' if ratio >= 20 else 'NOT met'} ({ratio:.1f}×); with a prepared reference "
            f"{'met' if ratio_ref >= 20 else 'NOT met'} ({ratio_ref:.1f}×).",
        ]
    text = "\n".join(lines)
    if args.no_write:
        print(text)
    else:
        print(f"wrote {write_section('bench_frechet', text)}")


if __name__ == "__main__":
    main()
