"""Dashboard page times with a realistic store (200 training runs, 20 audits), through Streamlit's AppTest.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dashboard.py [--home DIR] [--repeats 5]

The store is built from real work: a judge, a tiny class-conditional DCGAN trained on Shapes (its metrics
log, sample grids and config) and a full audit of that generator (every stage, two attribution methods).
The 200 runs copy the training run's files with perturbed losses; the 20 audits copy the audit's folder
with perturbed metrics and verdicts, each indexed in the store like the original.

Each page is timed as the median of ``--repeats`` runs: *first view* (in a new process, as right after the
server starts: the imports the page triggers included, Python's and Streamlit's own start-up not), *cold*
(a new session with every dashboard cache cleared, so each file is read again; modules already imported,
as in a running server) and *warm* (a rerun of the same session, as when a reviewer changes a widget).
The goal from issue 8: under 2 s. For scale, the cost of what part 1's audit picker did on every page
(reading all 20 ``audit.json``) is timed too. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _results import machine

PAGES = ("overview", "training", "samples", "quality", "bias", "explanations", "compare", "reports")
N_RUNS, N_AUDITS = 200, 20
TRAINING = {
    "family": "dcgan",
    "name": "dcgan-shapes-tiny",
    "data": {"source": "shapes", "n": 2000, "size": 32, "seed": 0, "condition": "shape"},
    "model": {"latent_dim": 16, "width": 16, "embed_dim": 8},
    "steps": 60,
    "batch_size": 32,
    "log_every": 2,
    "sample_every": 15,
    "checkpoint_every": 1000,
    "device": "cpu",
    "seed": 0,
}


def build_store(home: Path) -> None:
    """A judge, one real training run and one real audit, then copies up to 200 runs and 20 audits."""
    from auditkit.audit import audit
    from auditkit.bias import train_judge
    from auditkit.data import Shapes
    from auditkit.store import RunStore
    from auditkit.training import train

    store = RunStore(home)
    start = time.perf_counter()
    judge = train_judge(Shapes(3000, seed=1), epochs=6, width=8, seed=0, progress=False)
    trained = train(TRAINING, store=store, progress=False)
    source = audit(
        trained.run_id,
        Shapes(1000, seed=4),
        judge,
        store=store,
        name="dcgan audit",
        n=1000,
        seed=0,
        intersections=[("shape", "colour")],
        explain_methods=("saliency", "input_x_gradient"),
        explain_per_value=4,
        n_boot=200,
        quality_bootstrap=50,
        progress=False,
    )
    print(f"real run and audit built in {time.perf_counter() - start:.0f} s")

    rng = random.Random(0)
    run = store.get_run(trained.run_id)
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines() if line]
    grids = [a.relpath for a in store.artifacts(run.id) if a.relpath.startswith("samples/")]
    for i in range(N_RUNS - 1):
        copy = store.create_run("train", name=f"dcgan-shapes-{i:03d}", config=run.config)
        scale = rng.uniform(0.8, 1.2)
        log = "".join(
            json.dumps({k: (v * scale if k != "step" else v) for k, v in row.items()}) + "\n" for row in rows
        )
        store.write_artifact(copy.id, "metrics.jsonl", log.encode())
        for rel in [*grids, "training.json"]:
            store.write_artifact(copy.id, rel, (run.path / rel).read_bytes())
        store.set_run_status(copy.id, rng.choice(["completed"] * 8 + ["interrupted", "failed"]))

    for i in range(N_AUDITS - 1):
        info = store.create_audit(name=f"dcgan audit {i:02d}", config=store.get_audit(source.audit_id).config)
        for path in sorted(source.path.rglob("*")):
            rel = path.relative_to(source.path).as_posix()
            if path.is_file() and rel not in ("audit.json", "config.json"):
                store.write_artifact(info.id, rel, path.read_bytes())
        data = _perturbed(source.data, info.id, rng)
        store.write_artifact(info.id, "audit.json", json.dumps(data).encode())
        store.set_audit_status(info.id, "completed", verdict=data["verdict"])


def _perturbed(data: dict, audit_id: str, rng: random.Random) -> dict:
    """The audit's result with its headline numbers moved by up to ±20 % and a drawn verdict."""
    data = json.loads(json.dumps(data))
    data["runtime"]["audit_id"] = audit_id
    factor = rng.uniform(0.8, 1.2)
    quality = data.get("quality") or {}
    for key in ("fid", "kid"):
        if key in quality:
            quality[key] *= factor
            interval = quality.get("ci", {}).get(key)
            if interval:
                interval["low"] *= factor
                interval["high"] *= factor
    for scope in data.get("bias", {}).get("scopes", {}).values():
        for gap in ("gap_raw", "gap_corrected"):
            if scope.get(gap, {}).get("tvd") is not None:
                scope[gap]["tvd"] *= factor
    data["verdict"] = rng.choice(["pass", "warn", "fail"])
    data["findings"]["verdict"] = data["verdict"]
    return data


def time_pages(home: Path, repeats: int) -> list[dict]:
    from streamlit.testing.v1 import AppTest

    from auditkit.dashboard import clear_caches
    from auditkit.resources import resource_dir

    os.environ["AUDITKIT_HOME"] = str(home)
    app = str(resource_dir("dashboards") / "app.py")

    def open_page(page: str):
        at = AppTest.from_file(app, default_timeout=120).run()
        if page != "overview":
            at.switch_page(f"views/{page}.py")
        return at

    results = []
    for page in PAGES:
        cold, warm = [], []
        for _ in range(repeats):
            clear_caches()
            at = open_page(page)
            start = time.perf_counter()
            at.run()
            cold.append(time.perf_counter() - start)
            assert not at.exception, (page, [e.value for e in at.exception])
            start = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - start)
        first = statistics.median(first_view(app, home, page) for _ in range(repeats))
        results.append(
            {"page": page, "first": first, "cold": statistics.median(cold), "warm": statistics.median(warm)}
        )
    return results


_FIRST_VIEW = """
import os, sys, time
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
if sys.argv[2] != "overview":
    at.switch_page(f"views/{sys.argv[2]}.py")
start = time.perf_counter()
at.run()
assert not at.exception, [e.value for e in at.exception]
print(time.perf_counter() - start)
"""


def first_view(app: str, home: Path, page: str) -> float:
    """The page's first view in a new process (a server just started): the imports it triggers included."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_VIEW, app, page],
        env={**os.environ, "AUDITKIT_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def all_audits_cost(home: Path, repeats: int) -> float:
    """What part 1's picker did on every page view: read each audit's JSON (cold caches)."""
    from auditkit.dashboard import clear_caches, load_audit
    from auditkit.store import RunStore

    store = RunStore(home)
    times = []
    for _ in range(repeats):
        clear_caches()
        start = time.perf_counter()
        for info in store.list_audits():
            load_audit(store, info.id)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=None, help="where to build the store (default: a temp folder)")
    parser.add_argument("--reuse", action="store_true", help="time an existing store at --home")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        if not args.reuse:
            build_store(home)
        load = os.getloadavg()[0]
        results = time_pages(home, args.repeats)
        legacy = all_audits_cost(home, args.repeats)
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    print(f"\nMachine: {machine()}. Load average at start: {load:.1f}.")
    print(f"Store: {N_RUNS} training runs, {N_AUDITS} audits. Median of {args.repeats} runs per page.\n")
    print("| page | first view, new process (s) | cold (s) | warm (s) | all under 2 s |")
    print("|---|---|---|---|---|")
    for r in results:
        ok = "yes" if max(r["first"], r["cold"], r["warm"]) < 2 else "NO"
        print(f"| {r['page']} | {r['first']:.3f} | {r['cold']:.3f} | {r['warm']:.3f} | {ok} |")
    print(f"\nReading all {N_AUDITS} audit.json files (part 1's picker, per page view, cold): {legacy:.3f} s")


if __name__ == "__main__":
    main()
