"""``python -m auditkit ARGS`` that can stop at a chosen point of its work, for the crash tests.

Usage: ``python _crash_child.py POINT N MARKER BARRIER -- ARGS...``

When the process reaches ``POINT`` for the ``N``-th time, it writes its pid to ``MARKER`` and sleeps until
the parent kills it: the kill then lands exactly there, e.g. between renaming a checkpoint into place and
finishing its index row. ``POINT`` ``none`` runs freely. ``BARRIER`` (a point or ``none``) stops the process
the first time it gets there, also writing ``MARKER``: the parent kills at a random moment, and the barrier
at the end of the work makes sure that moment comes before the process could finish by itself.

Points
------
``log-torn``
    Training appends half of a ``metrics.jsonl`` line (a torn write).
``ckpt-temp-written``
    A checkpoint's safetensors file is written to its temp name, not yet renamed.
``ckpt-before-rename`` / ``ckpt-after-rename``
    The store recorded the incoming checkpoint's hash as pending; the file is not renamed yet / is renamed
    but its index row is not final.
``before-flush``
    A checkpoint is indexed; the metrics logged since the previous one are not yet in the index.
``before-prune``
    Old checkpoints are about to be removed.
``finish``
    The last step is done; the final checkpoint, grid and generator file are not written yet.
``generator-temp-written``
    ``generator.safetensors`` is written to its temp name, not yet renamed.
``stage-arrays-written``
    An audit stage's arrays are stored, its JSON (which makes the stage count as done) is not.
``artifact-before-rename`` / ``artifact-after-rename``
    Any artifact of an audit, as for checkpoints above.
``completed``
    The audit wrote ``audit.json`` but is not yet marked completed.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path

import auditkit.generators.registry as registry
import auditkit.store as store_module
import auditkit.training.checkpoint as checkpoint
from auditkit.cli import main
from auditkit.store import RunStore
from auditkit.training.trainer import Trainer

POINT, N, MARKER, BARRIER = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
ARGS = sys.argv[sys.argv.index("--") + 1 :]
_seen: Counter[str] = Counter()


def due(point: str) -> bool:
    """Count one arrival at ``point``; whether the process must stop there."""
    _seen[point] += 1
    return (point == POINT and _seen[point] == N) or (point == BARRIER and _seen[point] == 1)


def stop(point: str) -> None:
    MARKER.write_text(f"{os.getpid()} {point} {_seen[point]}")
    time.sleep(600)  # the parent kills us long before this ends
    raise SystemExit(f"{point}: not killed within 600 s")


def reached(point: str) -> None:
    if due(point):
        stop(point)


def wrap(owner, name: str, before: str | None = None, after: str | None = None, when=None) -> None:
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        hit = when is None or when(*args, **kwargs)
        if hit and before:
            reached(before)
        result = real(*args, **kwargs)
        if hit and after:
            reached(after)
        return result

    setattr(owner, name, wrapper)


def torn_log(self, row):
    if self.dist.is_main and due("log-torn"):
        with open(self.run.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(f'{{"step": {self.step}, "loss')
        stop("log-torn")
    return real_log(self, row)


def is_checkpoint(tmp, path) -> bool:
    return "/checkpoints/" in Path(path).as_posix()


def is_audit_file(tmp, path) -> bool:
    return "/audits/" in Path(path).as_posix()


def stage_arrays(self, owner_id, relpath, *args, **kwargs) -> bool:
    return relpath.startswith("stages/") and relpath.endswith(".safetensors")


wrap(checkpoint, "save_file", after="ckpt-temp-written")
wrap(registry, "save_file", after="generator-temp-written")
wrap(
    store_module,
    "replace_durably",
    before="ckpt-before-rename",
    after="ckpt-after-rename",
    when=is_checkpoint,
)
wrap(
    store_module,
    "replace_durably",
    before="artifact-before-rename",
    after="artifact-after-rename",
    when=is_audit_file,
)
wrap(Trainer, "_flush_metrics", before="before-flush")
wrap(Trainer, "_finish", before="finish")
wrap(RunStore, "remove_artifact", before="before-prune")
wrap(RunStore, "write_artifact", after="stage-arrays-written", when=stage_arrays)
wrap(
    RunStore,
    "set_audit_status",
    before="completed",
    when=lambda self, i, status, *a, **k: status == "completed",
)
real_log = Trainer._log
Trainer._log = torn_log

main(ARGS)
