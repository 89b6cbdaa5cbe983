"""PRDC: auditkit's chunked exact implementation vs the prdc package, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_prdc.py``. Prints a table and rewrites the PRDC section of
``benchmarks/RESULTS.md``.

Features are clustered float32 vectors (20 clusters on a 64-dimensional subspace plus isotropic noise, a
stand-in for Inception features). Each measurement runs in its own child process, so that its peak
resident memory (``ru_maxrss``) is its own; the 10 000 × 10 000 inputs are written once to a temporary
folder and loaded by both children, so prdc and auditkit see the same data, and their values are
compared for identity. The large case runs auditkit alone: prdc would hold three dense N×N float32
distance matrices (3 × 10 GB at 50 000) plus argpartition's N×N int64 index array (20 GB) and boolean
comparison matrices, i.e. well over 50 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _results import machine, write_section

K = 5


def features(seed: int, n: int, dim: int, spread: float) -> np.ndarray:
    """Clustered float32 features, generated in slices so that no float64 copy inflates the peak."""
    layout = np.random.default_rng(dim)  # the cluster layout is shared by real and fake
    centres = (layout.standard_normal((20, dim)) * 3).astype(np.float32)
    basis = (layout.standard_normal((64, dim)) / 8).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, 4096):
        b = min(a + 4096, n)
        z = rng.standard_normal((b - a, 64), dtype=np.float32)
        noise = rng.standard_normal((b - a, dim), dtype=np.float32)
        out[a:b] = centres[rng.integers(0, 20, b - a)] + spread * (z @ basis) + 0.3 * noise
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(which: str, data: str, repeats: int) -> dict:
    """One measurement in this (fresh) process; returns times, values and memory."""
    if which == "large":
        n, dim = (int(v) for v in data.split("x"))
        real, fake = features(1, n, dim, 1.0), features(2, n, dim, 1.1)
    else:
        real, fake = np.load(Path(data) / "real.npy"), np.load(Path(data) / "fake.npy")
    if which == "prdc":
        from prdc import compute_prdc

        def run() -> dict:
            with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sample counts
                return {key: float(v) for key, v in compute_prdc(real, fake, K).items()}
    else:
        from auditkit.metrics.prdc import precision_recall_density_coverage

        precision_recall_density_coverage(real[:500], fake[:500], K)  # warm-up: BLAS threads and buffers

        def run() -> dict:
            return precision_recall_density_coverage(real, fake, K, progress=False)

    before = current_mb()
    times, values = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        values = run()
        times.append(time.perf_counter() - start)
    inputs = (real.nbytes + fake.nbytes) / 2**20
    return {"times": times, "values": values, "peak_mb": peak_mb(), "before_mb": before, "inputs_mb": inputs}


def in_child(which: str, data: str, repeats: int) -> dict:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", which, data, str(repeats)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {which} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2, help="alternating prdc / auditkit rounds")
    parser.add_argument("--repeats", type=int, default=2, help="auditkit runs per round (prdc: one)")
    parser.add_argument("--large-n", type=int, default=50_000)
    parser.add_argument("--large-dim", type=int, default=2048)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, data, repeats = args.child
        print(json.dumps(child(which, data, int(repeats))))
        return

    # Rounds alternate so that a slow spell of a shared machine hits both; the best time of each is kept.
    ours, ref = [], []
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "real.npy", features(1, args.n, args.dim, 1.0))
        np.save(Path(tmp) / "fake.npy", features(2, args.n, args.dim, 1.1))
        for _ in range(args.rounds):
            ours.append(in_child("auditkit", tmp, args.repeats))
            ref.append(in_child("prdc", tmp, 1))
    t_ours = min(t for r in ours for t in r["times"])
    t_ref = min(t for r in ref for t in r["times"])
    same = all(r["values"] == ref[0]["values"] for r in ours + ref)
    ours_peak, ref_peak = max(r["peak_mb"] for r in ours), max(r["peak_mb"] for r in ref)
    print(
        f"{args.n}×{args.n} at {args.dim}-d: prdc {t_ref:.1f} s (peak RSS {ref_peak:,.0f} MB), "
        f"auditkit {t_ours:.1f} s (peak RSS {ours_peak:,.0f} MB), ratio {t_ref / t_ours:.1f}×, "
        f"identical values: {same}\n  auditkit {ours[0]['values']}\n  prdc     {ref[0]['values']}\n"
        f"  all times: prdc {[round(t, 1) for r in ref for t in r['times']]}, "
        f"auditkit {[round(t, 1) for r in ours for t in r['times']]}"
    )
    large = in_child("large", f"{args.large_n}x{args.large_dim}", 1)
    print(
        f"{args.large_n}×{args.large_n} at {args.large_dim}-d, auditkit only: {large['times'][0]:.1f} s, "
        f"peak RSS {large['peak_mb']:,.0f} MB (inputs {large['inputs_mb']:,.0f} MB, "
        f"{large['before_mb']:,.0f} MB resident before the call)\n  {large['values']}"
    )

    def seconds(result: dict) -> str:
        return ", ".join(f"{t:.1f}" for t in result["times"])

    def row(case: str, prdc_s: str, ours_s: float, ratio: str, same_s: str, rss: str) -> str:
        return f"| {case} | {prdc_s} | {ours_s:.1f} | {ratio} | {same_s} | {rss} |"

    values = ", ".join(f"{key} {value:.4f}" for key, value in ours[0]["values"].items())
    lines = [
        "## PRDC (`bench_prdc.py`)",
        "",
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d')}. k = {K}, clustered float32 features; "
        f"best of {args.rounds * args.repeats} auditkit runs (default chunk_size 1024) and "
        f"{args.rounds} prdc 0.2 runs, alternating; each measurement in its own process; peak RSS includes "
        "the Python runtime and the inputs.",
        "",
        "| case | prdc (s) | auditkit (s) | ratio | identical values | peak RSS prdc / auditkit |",
        "|---|---|---|---|---|---|",
        row(
            f"{args.n:,} × {args.n:,}, {args.dim}-d",
            f"{t_ref:.1f}",
            t_ours,
            f"{t_ref / t_ours:.1f}×",
            "yes" if same else "**NO**",
            f"{ref_peak:,.0f} MB / {ours_peak:,.0f} MB",
        ),
        row(
            f"{args.large_n:,} × {args.large_n:,}, {args.large_dim}-d",
            "not run (> 50 GB)",
            large["times"][0],
            "—",
            "—",
            f"— / {large['peak_mb']:,.0f} MB (inputs {large['inputs_mb']:,.0f} MB)",
        ),
        "",
        f"Values at {args.n:,}: {values}. Goal: ≥ 5× faster than prdc at 10k × 10k, 2048-d: "
        f"{'met' if t_ref / t_ours >= 5 else 'NOT met'}.",
        "",
        "Every run in order, per round auditkit / prdc (s), and that round's ratio (the machine is shared, "
        "so rounds vary): "
        + "; ".join(
            f"{seconds(o)} / {seconds(r)} ({min(r['times']) / min(o['times']):.1f}×)"
            for o, r in zip(ours, ref, strict=True)
        )
        + ".",
    ]
    print(f"wrote {write_section('bench_prdc', chr(10).join(lines))}")


if __name__ == "__main__":
    main()
