"""Child process for the multi-process tests of ``test_store.py``; most modes wait to be SIGKILLed.

Usage: ``python _store_child.py MODE HOME RUN_ID MARKER``

``artifact``
    Writes ``data.bin`` of run ``RUN_ID`` as 16 chunks of ``0x01`` bytes, then rewrites it from a generator
    of 16 chunks of ``0x02`` bytes that, after 8 chunks, creates ``MARKER`` and sleeps.
``metrics``
    Logs steps 0, 1, 2 of run ``RUN_ID`` (100 values each), then step 3 from a generator that, after 50
    values, creates ``MARKER`` and sleeps.
``loop``
    Repeats forever: create a run and an audit, then per step log 100 values and write two artifacts (one
    overwritten every step, one new). ``MARKER`` appears once the first step is committed. ``RUN_ID``: unused.
``open``
    Opens the store (perhaps creating it) and creates one run, then exits normally.

``import auditkit.store`` does not import torch (the package exports lazily), so a child starts in a
fraction of a second and the crash tests stay fast.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from auditkit.store import RunStore

CHUNK = 64 * 1024
N_CHUNKS = 16
N_VALUES = 100


def _signal_and_wait(marker: Path) -> None:
    marker.touch()
    time.sleep(120)  # the parent kills us long before this ends


def _chunks(marker: Path) -> Iterator[bytes]:
    for i in range(N_CHUNKS):
        if i == N_CHUNKS // 2:
            _signal_and_wait(marker)
        yield b"\x02" * CHUNK


def _values(marker: Path) -> Iterator[tuple[str, float]]:
    for i in range(N_VALUES):
        if i == N_VALUES // 2:
            _signal_and_wait(marker)
        yield f"m{i}", float(i)


def _loop(store, marker: Path) -> None:
    while True:
        run = store.create_run("loop", config={"pid": os.getpid()})
        audit = store.create_audit(run_id=run.id)
        for step in range(3):
            store.log_metrics(run.id, {f"m{i}": float(i * step) for i in range(N_VALUES)}, step=step)
            store.log_metrics(audit.id, ((f"a{i}", 1.0) for i in range(N_VALUES)), step=step)
            payload = os.urandom(1024 * (1 + step))
            chunks = (payload[i : i + 512] for i in range(0, len(payload), 512))
            store.write_artifact(run.id, "latest.bin", chunks)
            store.write_artifact(run.id, f"steps/step-{step}.bin", payload)
            if not marker.exists():
                marker.touch()


def main(argv: list[str]) -> None:
    mode, home, run_id, marker = argv
    store = RunStore(home)
    if mode == "artifact":
        store.write_artifact(run_id, "data.bin", [b"\x01" * CHUNK] * N_CHUNKS)
        store.write_artifact(run_id, "data.bin", _chunks(Path(marker)))
    elif mode == "metrics":
        for step in range(3):
            store.log_metrics(run_id, ((f"m{i}", float(i)) for i in range(N_VALUES)), step=step)
        store.log_metrics(run_id, _values(Path(marker)), step=3)
    elif mode == "loop":
        _loop(store, Path(marker))
    elif mode == "open":
        store.create_run("open", config={"pid": os.getpid()})
        return
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    raise SystemExit("the child finished although it should have been killed")


if __name__ == "__main__":
    main(sys.argv[1:])
