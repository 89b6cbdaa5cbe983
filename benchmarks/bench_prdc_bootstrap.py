"""PRDC bootstrap: recomputing PRDC on every resample (before) vs neighbour lists computed once (after).

Run: ``.venv/bin/python benchmarks/bench_prdc_bootstrap.py`` (``--no-write`` to leave RESULTS.md alone).

The case is the audit's (``bench_audit.py``): 20 000 reference and 5000 generated judge features (64-d),
k = 5, 100 resamples; a second row at Inception's 2048-d with fewer images. Features are the clustered
float32 stand-ins of ``bench_prdc.py``. "Before" is what ``prdc_ci`` did until now: the resampled
matrices through ``precision_recall_density_coverage``, timed on the first few resamples (it takes seconds
each) and projected to all of them; "after" is ``prdc_ci`` itself, timed in full (set-up included). The
first resamples of both are checked to be identical (same seed, same rows, equal floats).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _results import machine, write_section
from bench_prdc import features

from auditkit.metrics.bootstrap import _streams, prdc_ci
from auditkit.metrics.prdc import precision_recall_density_coverage

K = 5


def run_case(n_real: int, n_fake: int, dim: int, resamples: int, before: int) -> dict:
    real, fake = features(1, n_real, dim, 1.0), features(2, n_fake, dim, 1.1)
    precision_recall_density_coverage(real[:500], fake[:500], K)  # warm-up: BLAS threads and buffers

    start = time.perf_counter()
    estimate = precision_recall_density_coverage(real, fake, K, progress=False)
    t_estimate = time.perf_counter() - start
    streams = _streams(0, 2)  # the streams prdc_ci draws its resamples from (seed 0)
    slow, times = [], []
    for _ in range(before):
        i, j = (rng.integers(0, n, n) for rng, n in zip(streams, (n_real, n_fake), strict=True))
        start = time.perf_counter()
        slow.append(precision_recall_density_coverage(real[i], fake[j], K, progress=False))
        times.append(time.perf_counter() - start)
    per_resample = float(np.median(times))

    start = time.perf_counter()
    fast = prdc_ci(real, fake, K, n_resamples=resamples, seed=0)
    t_after = time.perf_counter() - start
    identical = all(
        fast[key].distribution[b] == slow[b][key] for b in range(before) for key in slow[b]
    ) and all(fast[key].estimate == estimate[key] for key in estimate)
    t_before = t_estimate + resamples * per_resample
    return {
        "case": f"{n_real:,} real × {n_fake:,} fake, {dim}-d",
        "before_per_resample": per_resample,
        "before_total": t_before,
        "after_total": t_after,
        "after_per_resample": t_after / resamples,  # set-up (and the estimate) included
        "ratio": t_before / t_after,
        "identical": identical,
        "intervals": {k: (v.low, v.high) for k, v in fast.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--before", type=int, default=3, help="resamples timed on the old path")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    rows = [
        run_case(20_000, 5_000, 64, args.resamples, args.before),
        run_case(10_000, 5_000, 2048, args.resamples, args.before),
    ]
    lines = [
        "## PRDC bootstrap (`bench_prdc_bootstrap.py`)",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. k = {K}, {args.resamples} resamples of "
        "both sets, clustered float32 features (`bench_prdc.py`). Before: PRDC recomputed on each resample "
        f"(median of the first {args.before}, projected to all, plus the estimate); after: `prdc_ci` in full "
        "(neighbour lists and cross pairs once, then each resample from them). Identical: the first "
        "resamples and the estimate are equal floats on both paths.",
        "",
        "| case | before per resample (s) | before total (s) | after total (s) | after per resample (s) "
        "(set-up included) | ratio | identical |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['before_per_resample']:.2f} | {r['before_total']:.1f} | "
            f"{r['after_total']:.2f} | {r['after_per_resample']:.4f} | {r['ratio']:.0f}× | "
            f"{'yes' if r['identical'] else 'NO'} |"
        )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("bench_prdc_bootstrap", body)


if __name__ == "__main__":
    main()
