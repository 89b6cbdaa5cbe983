"""Reliability: the dashboard and other readers read a store while a process writes into it.

One child process writes runs, metrics, chunked artifacts and audits (including rewriting one audit's
``audit.json`` over and over) for a few seconds. Meanwhile reader threads in this process and two reader
processes run what the dashboard reads (``runs_table``, ``audits_table``, ``load_audit``, the bias,
findings and quality tables) and ``RunStore`` reads of metrics and artifacts. No reader may fail: no
"database is locked", no half-written or mixed ``audit.json`` (each version carries a checksum of itself),
no step with only part of its metrics, no artifact that differs from its index row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from auditkit.audit import audit
from auditkit.data import Shapes
from auditkit.store import RunStore

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _concurrency import read, read_once  # noqa: E402
from _standins import SHAPE_SKEW, ShapesStandIn  # noqa: E402

SECONDS = 6.0
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _child(*args: str) -> subprocess.Popen:
    command = [sys.executable, str(HERE / "_concurrency.py"), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=SECONDS + 120)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out)


def test_readers_never_fail_while_a_process_writes(tmp_path: Path, trained_judge) -> None:
    # a real audit result (bias stage only) is the template of every audit.json the writer writes
    made = audit(
        ShapesStandIn(SHAPE_SKEW),
        Shapes(300, seed=3),
        trained_judge,
        n=300,
        stages=("bias",),
        n_boot=20,
        store=RunStore(tmp_path / "scratch"),
        progress=False,
    )
    template = tmp_path / "template.json"
    template.write_bytes(made.to_json())
    home = tmp_path / "home"

    writer = _child("write", str(home), str(SECONDS), str(template))
    readers = [_child("read", str(home), str(SECONDS)) for _ in range(2)]
    with ThreadPoolExecutor(3) as pool:
        threads = list(pool.map(lambda _: read(home, SECONDS), range(3)))
    written = _result(writer)
    results = threads + [_result(proc) for proc in readers]

    errors = [e for r in results for e in r["errors"]]
    assert not errors, f"{sum(r['n_errors'] for r in results)} failed reads, e.g.:\n" + "\n".join(errors)
    # the test saw real traffic: the writer got through rounds, every reader read many times and saw audits
    assert written["rounds"] >= 3, written
    assert all(r["rounds"] >= 3 and r["audits"] >= 1 for r in results), results
    store = RunStore(home)
    assert len(store.list_audits(status="completed")) == written["rounds"]
    assert read_once(home)["audits"] == written["rounds"]
    assert store.check() == []
