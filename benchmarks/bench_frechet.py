"""Fréchet distance: auditkit's float64 eigen formulation vs the scipy.linalg.sqrtm formula, one run.

Run: ``.venv/bin/python benchmarks/bench_frechet.py``. Covariances come from 10 000 random features with a
spread-out spectrum and a random rotation (like real Inception features, they are full rank and
anisotropic). Three columns: scipy sqrtm (the pytorch-fid formula), auditkit from scratch, and auditkit
against a prepared :class:`FrechetReference` (the re-audit case: the reference factor is computed once).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np
import scipy.linalg
from _results import machine, write_section

from auditkit.metrics.frechet import FrechetReference, frechet_distance


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def gaussian_stats(rng: np.random.Generator, dim: int, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    x = (rng.standard_normal((n, dim)) * np.geomspace(0.05, 3.0, dim)) @ rotation + shift
    return x.mean(0), np.cov(x, rowvar=False)


def median_time(fn, repeats: int) -> tuple[float, float]:
    times, value = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for dim in args.dims:
        mu1, s1 = gaussian_stats(rng, dim, 10_000, 0.0)
        mu2, s2 = gaussian_stats(rng, dim, 10_000, 0.05)
        ref = FrechetReference.from_stats(mu1, s1)
        t_scipy, v_scipy = median_time(partial(scipy_frechet, mu1, s1, mu2, s2), args.repeats)
        t_ours, v_ours = median_time(partial(frechet_distance, mu1, s1, mu2, s2), args.repeats)
        t_ref, _ = median_time(partial(ref.distance, mu2, s2), args.repeats)
        rel = abs(v_ours - v_scipy) / abs(v_scipy)
        rows.append((dim, t_scipy, t_ours, t_ref, rel))
        print(
            f"d={dim}: scipy sqrtm {t_scipy:.3f} s, auditkit {t_ours:.3f} s ({t_scipy / t_ours:.1f}×), "
            f"prepared reference {t_ref:.3f} s ({t_scipy / t_ref:.1f}×), |Δ|/FID {rel:.1e}"
        )
    lines = [
        "## Fréchet distance (`bench_frechet.py`)",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. Median of {args.repeats} runs, float64, "
        "covariances of 10 000 samples.",
        "",
        "| dim | scipy sqrtm (s) | auditkit (s) | ratio | prepared reference (s) | ratio | rel. difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for dim, t_scipy, t_ours, t_ref, rel in rows:
        lines.append(
            f"| {dim} | {t_scipy:.3f} | {t_ours:.3f} | {t_scipy / t_ours:.1f}× | {t_ref:.3f} | "
            f"{t_scipy / t_ref:.1f}× | {rel:.1e} |"
        )
    print(f"wrote {write_section('bench_frechet', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
