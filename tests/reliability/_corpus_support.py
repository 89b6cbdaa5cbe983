"""What the bad-input corpus shares: a small baseline store, a per-case copy of it, and the checks.

The baseline is built once per module: a tiny trained DCGAN run (32×32 Shapes, 4 steps, two checkpoints),
the session's trained judge saved to a folder, and a completed bias-only audit of the run. Every case gets
its own copy of it, plants one bad input, drives the public API or the CLI, and then the test checks that
the store is consistent and that every file written before the case is still there, byte for byte.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditkit.errors import AuditKitError
from auditkit.store import RunStore

TINY_TRAIN = {
    "family": "dcgan",
    "data": {"source": "shapes", "n": 96, "size": 32, "seed": 0},
    "model": {"latent_dim": 8, "width": 8, "embed_dim": 4},
    "steps": 4,
    "batch_size": 16,
    "log_every": 1,
    "sample_every": 2,
    "checkpoint_every": 2,
    "device": "cpu",
    "seed": 1,
}


@dataclass
class Baseline:
    """The store every case starts from (never modified: cases work on copies)."""

    root: Path
    run_id: str
    audit_id: str


@dataclass
class Env:
    """One case's private copy of the baseline; ``tmp`` is scratch space beside it."""

    tmp: Path
    home: Path
    judge_dir: Path
    run_id: str
    audit_id: str

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / self.run_id

    @property
    def audit_dir(self) -> Path:
        return self.home / "audits" / self.audit_id

    def store(self) -> RunStore:
        return RunStore(self.home)


@dataclass
class Probe:
    """How a case is driven and what it must produce.

    Exactly one of ``argv`` (CLI, in-process ``auditkit.cli.main``) and ``call`` (Python) is set.
    ``names``: strings the message must contain (the offending input). ``planted``: substrings of the
    ``store.check()`` problems the case caused on purpose; any other problem fails the test. ``touched``:
    files or folders the case damaged on purpose (exempt from the "nothing lost" comparison).
    """

    names: tuple[str, ...]
    argv: list[str] | None = None
    call: Callable[[], Any] | None = None
    error: type[AuditKitError] = AuditKitError
    planted: tuple[str, ...] = ()
    touched: tuple[Path, ...] = ()
    index_damaged: bool = False
    after: Callable[[], None] | None = None  # extra checks once the error was seen


def copy_env(baseline: Baseline, tmp: Path) -> Env:
    home = tmp / "home"
    shutil.copytree(baseline.root / "home", home)
    judge_dir = tmp / "judge"
    shutil.copytree(baseline.root / "judge", judge_dir)
    scratch = tmp / "scratch"
    scratch.mkdir()
    return Env(scratch, home, judge_dir, baseline.run_id, baseline.audit_id)


def file_hashes(home: Path) -> dict[Path, str]:
    """SHA-256 of every file under the run and audit folders."""
    found = {}
    for top in ("runs", "audits"):
        for path in sorted((home / top).rglob("*")):
            if path.is_file():
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def index_snapshot(store: RunStore) -> dict[str, Any]:
    """Everything the index says about its runs and audits (statuses aside: a failed command may set one)."""
    owners = [r.id for r in store.list_runs()] + [a.id for a in store.list_audits()]
    return {
        "runs": {r.id: (r.kind, r.name, r.config) for r in store.list_runs()},
        "audits": {a.id: (a.run_id, a.name, a.config) for a in store.list_audits()},
        "metrics": {o: [(m.name, m.step, m.value) for m in store.metrics(o)] for o in owners},
        "artifacts": {o: {a.relpath: a.sha256 for a in store.artifacts(o)} for o in owners},
    }


def assert_nothing_lost(
    before_files: dict[Path, str], before_index: dict[str, Any], env: Env, probe: Probe
) -> None:
    """Every file and index entry from before the case is still there, unchanged (bar planted damage)."""
    touched = [p.resolve() for p in probe.touched]

    def exempt(path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved == t or resolved.is_relative_to(t) for t in touched)

    for path, digest in before_files.items():
        if exempt(path):
            continue
        assert path.is_file(), f"{path} was lost"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was changed"
    if probe.index_damaged:
        return
    after = index_snapshot(env.store())
    for section, entries in before_index.items():
        for owner, value in entries.items():
            assert owner in after[section], f"{owner} vanished from the index ({section})"
            if section == "artifacts":
                # an artifact may be re-written by a command that legitimately redoes work; rows never vanish
                assert set(value) <= set(after[section][owner]), f"artifacts of {owner} vanished"
            else:
                assert after[section][owner] == value, f"{section} of {owner} changed"


def assert_consistent(env: Env, probe: Probe) -> None:
    """``store.check()`` reports exactly the damage the case planted, nothing else."""
    if probe.index_damaged:
        return
    problems = env.store().check()
    unexpected = [p for p in problems if not any(s in p for s in probe.planted)]
    assert not unexpected, unexpected
    for planted in probe.planted:
        assert any(planted in p for p in problems), f"store check no longer reports {planted!r}: {problems}"
