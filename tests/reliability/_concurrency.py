"""Writer and reader of one store at the same time, for ``test_concurrent_reads.py``.

``python _concurrency.py write HOME SECONDS TEMPLATE``
    For ``SECONDS``, repeatedly: create a run, log a step of 100 metrics (one transaction), write a
    once-only artifact in 64 KiB chunks, create an audit of the run and write its ``audit.json`` (the
    ``TEMPLATE`` audit with a sequence number and a checksum of its content), rewrite the first audit's
    ``audit.json`` in place, and mark the new audit completed. Prints how many rounds it finished.
``python _concurrency.py read HOME SECONDS``
    Runs :func:`read_once` in a loop for ``SECONDS`` and prints ``{"rounds": ..., "errors": [...]}``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from auditkit import dashboard
from auditkit._atomic import json_bytes
from auditkit.store import RunStore

N_VALUES = 100
CHUNK = 64 * 1024


def checksum(data: dict[str, Any]) -> str:
    """SHA-256 of an audit's data without its checksum field: proves a reader saw one whole version."""
    rest = copy.deepcopy(data)
    rest["runtime"].pop("check", None)
    return hashlib.sha256(json_bytes(rest)).hexdigest()


def audit_bytes(template: dict[str, Any], seq: int) -> bytes:
    data = copy.deepcopy(template)
    data["runtime"]["seq"] = seq
    data["runtime"]["padding"] = "x" * (seq % 7) * 1000  # sizes vary, so a torn read cannot pass
    data["runtime"]["check"] = checksum(data)
    return json_bytes(data)


def write(home: Path, seconds: float, template: dict[str, Any]) -> int:
    store = RunStore(home)
    first = None
    rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = store.create_run("concurrency", config={"round": rounds})
        store.log_metrics(run.id, {f"m{i}": float(i + rounds) for i in range(N_VALUES)}, step=0)
        payload = os.urandom(4 * CHUNK)
        store.write_artifact(
            run.id, "blob.bin", (payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK))
        )
        info = store.create_audit(name=f"round {rounds}", run_id=run.id, config={"round": rounds})
        store.write_artifact(
            info.id, "audit.json", audit_bytes(template, rounds), media_type="application/json"
        )
        first = first or info.id
        store.write_artifact(first, "audit.json", audit_bytes(template, 10_000 + rounds))
        store.set_audit_status(info.id, "completed", verdict=template["findings"]["verdict"])
        rounds += 1
    return rounds


def read_once(home: Path) -> dict[str, int]:
    """One pass of what the dashboard and a CLI user read; raises on anything inconsistent."""
    store = dashboard.open_store(home)
    if store is None:
        return {"audits": 0}
    runs = dashboard.runs_table(store)
    audits = dashboard.audits_table(store)
    dashboard.verdict_counts(audits)
    seen = 0
    for row in audits:
        data = dashboard.load_audit(store, row["id"])
        if data is None:
            assert row["status"] == "running", row  # a completed audit always has its audit.json
            continue
        assert data["runtime"]["check"] == checksum(data), f"{row['id']}: a mix of two versions"
        dashboard.findings_rows(data)
        dashboard.bias_summary(data)
        dashboard.quality_rows(data)
        seen += 1
    for row in runs[:5]:
        values = store.metrics(row["id"])
        assert len(values) in (0, N_VALUES), f"{row['id']}: {len(values)} of {N_VALUES} values of one step"
        for record in store.artifacts(row["id"]):
            digest = hashlib.sha256(record.path.read_bytes()).hexdigest()
            assert digest == record.sha256, f"{record.path} does not match its index row"
    return {"audits": seen}


def read(home: Path, seconds: float) -> dict[str, Any]:
    rounds, audits, errors = 0, 0, []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            audits += read_once(home)["audits"]
        except Exception:  # every failure is reported to the test, none ends the loop
            errors.append(traceback.format_exc(limit=4))
        rounds += 1
    return {"rounds": rounds, "audits": audits, "errors": errors[:5], "n_errors": len(errors)}


if __name__ == "__main__":
    mode, home, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    if mode == "write":
        template = json.loads(Path(sys.argv[4]).read_text(encoding="utf-8"))
        print(json.dumps({"rounds": write(home, seconds, template)}))
    else:
        print(json.dumps(read(home, seconds)))
