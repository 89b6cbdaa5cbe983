"""Run every side-by-side benchmark and rewrite ``benchmarks/RESULTS.md`` (``make bench``).

Each script runs in its own process (so one's threads, caches and memory do not colour the next), writes
its own section of RESULTS.md, and this runner adds a summary section on top: machine, library versions,
date, and each script's status and wall time. The GPU benchmarks run when CUDA is present and are listed
as skipped otherwise.

    python benchmarks/run_all.py            # every side-by-side benchmark (about 40 min on 2 CPU cores)
    python benchmarks/run_all.py --quick    # smaller sizes, to check the scripts (about 5 min)
    python benchmarks/run_all.py --only prdc --only lime
    python benchmarks/run_all.py --with-training   # also train generators and measure them (hours)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _results import RESULTS, machine, write_section

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    gpu: bool = False
    training: bool = False


BENCHES = (
    Bench("shapes", "bench_shapes.py", quick=("--n", "5000", "--baseline-n", "1000", "--repeats", "1")),
    Bench("frechet", "bench_frechet.py", quick=("--dims", "512", "--repeats", "1")),
    Bench(
        "prdc", "bench_prdc.py", quick=("--n", "2000", "--rounds", "1", "--repeats", "1", "--large-n", "5000")
    ),
    Bench("prdc_bootstrap", "bench_prdc_bootstrap.py", quick=("--resamples", "10", "--before", "1")),
    Bench("features", "bench_features.py", quick=("--n", "4", "--batch", "4", "--repeats", "1")),
    Bench("training", "bench_training.py", quick=("--steps", "10", "--warmup", "2", "--rounds", "1")),
    Bench("lime", "bench_lime.py", quick=("--samples", "200", "--rounds", "1")),
    Bench("explain", "bench_explain.py", quick=("--images", "4", "--shap-images", "1", "--rounds", "1")),
    Bench("dashboard", "bench_dashboard.py", quick=("--repeats", "1")),
    Bench("gpu_metrics", "bench_gpu_metrics.py", quick=("--n", "500", "--repeats", "1"), gpu=True),
    Bench(
        "training_gpu", "bench_training.py", ("--device", "cuda", "--compile"), ("--device", "cuda"), gpu=True
    ),
    Bench("quality", "bench_quality.py", training=True),
)

VERSIONED = (
    "auditkit",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch-fidelity",
    "torchmetrics",
    "prdc",
    "captum",
    "shap",
    "lime",
    "streamlit",
)


def versions() -> str:
    found = []
    for name in VERSIONED:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes: checks the scripts, not the speed"
    )
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--with-training", action="store_true", help="also train and measure generators")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    known = {b.name for b in BENCHES}
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(known)}")
    cuda = torch.cuda.is_available()
    env = dict(os.environ)
    target = RESULTS
    if args.quick:
        target = Path(tempfile.mkdtemp(prefix="auditkit-bench-")) / "RESULTS.md"
        shutil.copyfile(RESULTS, target)
        env["AUDITKIT_BENCH_RESULTS"] = str(target)
        os.environ["AUDITKIT_BENCH_RESULTS"] = str(target)
    rows = []
    failed = 0
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        if bench.training and not (args.with_training or bench.name in args.only):
            rows.append((bench.name, "skipped (needs --with-training)", 0.0))
            continue
        if bench.gpu and not cuda:
            rows.append((bench.name, "skipped (no CUDA device)", 0.0))
            continue
        command = [
            sys.executable,
            str(HERE / bench.script),
            *bench.args,
            *(bench.quick if args.quick else ()),
        ]
        print(f"== {bench.name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=HERE.parent, env=env, timeout=args.timeout)
            status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {args.timeout:.0f} s"
        wall = time.perf_counter() - started
        failed += status != "ok"
        rows.append((bench.name, status, wall))
        print(f"== {bench.name}: {status} in {wall:.0f} s", flush=True)
    lines = [
        "## How these were measured",
        "",
        f"Last run of `benchmarks/run_all.py{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d')}: {machine()}; "
        f"CUDA: {torch.cuda.get_device_name(0) if cuda else 'none'}.",
        "",
        f"Versions: {versions()}.",
        "",
        "Every section below is rewritten by its own script and names its method (medians of alternating "
        "rounds, both sides checked equal first). The machines are shared, so ratios measured in one run "
        "are the numbers to trust, not absolute times across runs.",
        "",
        "| benchmark | status | wall (s) |",
        "|---|---|---:|",
        *(f"| {name} | {status} | {wall:.0f} |" for name, status, wall in rows),
    ]
    _place_summary_first(target)
    write_section("run_all", "\n".join(lines), target)
    print("\n".join(lines))
    if args.quick:
        print(f"\n--quick: results went to {target}; benchmarks/RESULTS.md is unchanged.")
    return 1 if failed else 0


def _place_summary_first(path: Path) -> None:
    """Put an empty summary section right after the title, the first time, so readers see it first."""
    text = path.read_text()
    if "<!-- run_all:start -->" in text:
        return
    title, _, rest = text.partition("\n")
    path.write_text(f"{title}\n\n<!-- run_all:start -->\n<!-- run_all:end -->\n{rest}")


if __name__ == "__main__":
    sys.exit(main())
