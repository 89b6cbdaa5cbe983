"""Tests of the run store and of the atomic-write helpers.

References are independent of the code under test: ``hashlib`` for hashes, raw ``sqlite3`` connections for
what the index holds, the file system for what is on disk, and SIGKILLed child processes for crash safety.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import pytest

from auditkit import store as store_module
from auditkit._atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
)
from auditkit.errors import ConfigError, StoreError
from auditkit.store import MIGRATIONS, RunStore, _migrate, default_home

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("_store_child.py")
CHUNK, N_CHUNKS, N_VALUES = 64 * 1024, 16, 100  # as in _store_child.py


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


@contextmanager
def _raw(store: RunStore) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the index, independent of the store's own code."""
    with closing(sqlite3.connect(store.home / "index.sqlite", isolation_level=None)) as conn:
        yield conn


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "home")


# -- atomic writes ------------------------------------------------------------------------------------


def test_atomic_write_bytes_hash_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    data = os.urandom(3000)
    digest = atomic_write_bytes(target, (data[i : i + 700] for i in range(0, len(data), 700)))
    assert target.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert atomic_write_text(tmp_path / "t.txt", "héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    assert _temp_files(tmp_path) == []


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old content")

    def broken():
        yield b"new "
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        atomic_write_bytes(target, broken())
    assert target.read_bytes() == b"old content"
    assert _temp_files(tmp_path) == []


def test_atomic_write_json_format(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    digest = atomic_write_json(target, {"b": [1, 2], "a": "é"})
    assert target.read_text(encoding="utf-8") == '{\n  "a": "é",\n  "b": [\n    1,\n    2\n  ]\n}\n'
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()
    with pytest.raises(ValueError):
        atomic_write_json(target, {"loss": math.nan})  # NaN is not JSON
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "é", "b": [1, 2]}


def test_atomic_path(tmp_path: Path) -> None:
    target = tmp_path / "grid.png"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"
        assert tmp.name.startswith(".") and ".tmp-" in tmp.name
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"

    with pytest.raises(KeyError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyError("library failed")
    assert target.read_bytes() == b"new"
    with pytest.raises(FileNotFoundError), atomic_path(target):
        pass  # the library wrote nothing
    assert _temp_files(tmp_path) == []


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(5 * (1 << 19) + 17)  # 2.5 MiB + 17: several chunks and a partial one
    (tmp_path / "big").write_bytes(data)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()


# -- runs and audits ----------------------------------------------------------------------------------


def test_run_roundtrip(store: RunStore) -> None:
    config = {"lr": 0.001, "layers": [64, 128], "nested": {"name": "β"}}
    run = store.create_run("gan", name="baseline", config=config)
    assert run.id.startswith("run-") and len(run.id) == len("run-20261123-073100-3f9a2c")
    assert (run.kind, run.name, run.status, run.config) == ("gan", "baseline", "running", config)
    assert run.path == store.home / "runs" / run.id
    assert json.loads((run.path / "config.json").read_text(encoding="utf-8")) == config
    assert run.created_at.endswith("Z") and run.created_at == run.updated_at
    assert store.get_run(run.id) == run
    with _raw(store) as conn:
        assert conn.execute("SELECT kind, status FROM runs WHERE id = ?", (run.id,)).fetchall() == [
            ("gan", "running")
        ]


def test_list_runs_order_and_filters(store: RunStore) -> None:
    made = [store.create_run(kind) for kind in ("gan", "vae", "gan", "diffusion")]
    assert [r.id for r in store.list_runs()] == [r.id for r in reversed(made)]
    assert [r.id for r in store.list_runs(kind="gan")] == [made[2].id, made[0].id]
    done = store.set_run_status(made[1].id, "completed")
    assert done.status == "completed" and done.updated_at >= made[1].updated_at
    assert store.get_run(made[1].id).status == "completed"
    assert [r.id for r in store.list_runs(status="completed")] == [made[1].id]
    assert store.list_runs(kind="gan", status="completed") == []
    with pytest.raises(ConfigError, match="'finished'.*completed"):
        store.set_run_status(made[0].id, "finished")
    with pytest.raises(ConfigError, match="'done'"):
        store.list_runs(status="done")


def test_unknown_and_malformed_ids(store: RunStore) -> None:
    missing = "run-20200101-000000-abcdef"
    for call in (
        lambda: store.get_run(missing),
        lambda: store.set_run_status(missing, "failed"),
        lambda: store.metrics(missing),
        lambda: store.write_artifact(missing, "a.bin", b"x"),
    ):
        with pytest.raises(StoreError, match=f"{missing}.*auditkit runs list"):
            call()
    with pytest.raises(StoreError, match=r"audit-20200101-000000-abcdef.*list_audits\(\)"):
        store.get_audit("audit-20200101-000000-abcdef")
    with pytest.raises(StoreError, match="'../etc' is not a run id"):
        store.get_run("../etc")
    run = store.create_run("gan")
    with pytest.raises(StoreError, match="not an audit id"):
        store.get_audit(run.id)


def test_config_must_be_json(store: RunStore) -> None:
    with pytest.raises(ConfigError, match="cannot be stored as JSON"):
        store.create_run("gan", config={"device": object()})
    with pytest.raises(ConfigError, match="must be a mapping"):
        store.create_run("gan", config=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="kind"):
        store.create_run("")
    assert list((store.home / "runs").iterdir()) == []


def test_audit_roundtrip_and_filters(store: RunStore) -> None:
    run = store.create_run("vae")
    other = store.create_run("vae")
    first = store.create_audit(name="bias", run_id=run.id, config={"policy": "p1"})
    second = store.create_audit(run_id=run.id)
    loose = store.create_audit(name="brought generator")
    assert store.get_audit(first.id) == first
    assert (first.run_id, first.status, first.verdict) == (run.id, "running", None)
    assert first.config == {"policy": "p1"}
    assert first.path == store.home / "audits" / first.id and (first.path / "config.json").is_file()
    assert [a.id for a in store.list_audits()] == [loose.id, second.id, first.id]
    assert [a.id for a in store.list_audits(run_id=run.id)] == [second.id, first.id]
    assert store.list_audits(run_id=other.id) == []
    with pytest.raises(StoreError, match="not a run id"):
        store.list_audits(run_id=first.id)

    judged = store.set_audit_status(first.id, "completed", verdict="fail")
    assert (judged.status, judged.verdict) == ("completed", "fail")
    assert store.set_audit_status(first.id, "completed").verdict == "fail"  # None keeps the verdict
    assert [a.id for a in store.list_audits(status="completed")] == [first.id]


def test_create_audit_of_unknown_run_leaves_nothing(store: RunStore) -> None:
    with pytest.raises(StoreError, match="run-20200101-000000-abcdef"):
        store.create_audit(run_id="run-20200101-000000-abcdef")
    assert list((store.home / "audits").iterdir()) == []
    assert store.list_audits() == []


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_roundtrip_and_order(store: RunStore) -> None:
    run = store.create_run("gan")
    assert store.log_metrics(run.id, {"loss": 2.0, "acc": np.float32(0.5)}, step=1) == 2
    assert store.log_metrics(run.id, [("loss", 3.0), ("loss", 3.5)], step=0) == 2
    store.log_metric(run.id, "fid", 41, step=None)
    store.log_metric(run.id, "loss", 1.0, step=np.int64(2))
    got = [(m.name, m.step, m.value) for m in store.metrics(run.id)]
    # None first, then by step, then in logging order within a step
    assert got == [
        ("fid", None, 41.0),
        ("loss", 0, 3.0),
        ("loss", 0, 3.5),
        ("loss", 1, 2.0),
        ("acc", 1, 0.5),
        ("loss", 2, 1.0),
    ]
    losses = [(m.step, m.value) for m in store.metrics(run.id, name="loss")]
    assert losses == [(0, 3.0), (0, 3.5), (1, 2.0), (2, 1.0)]
    audit = store.create_audit(run_id=run.id)
    store.log_metric(audit.id, "coverage", 0.25)
    assert [(m.name, m.value) for m in store.metrics(audit.id)] == [("coverage", 0.25)]
    assert store.log_metrics(run.id, {}) == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_metric_refused_and_nothing_logged(store: RunStore, bad: float) -> None:
    run = store.create_run("gan")
    with pytest.raises(ConfigError, match=r"'loss'.*step 5.*nothing from this call was logged"):
        store.log_metrics(run.id, {"acc": 0.9, "loss": bad, "later": 1.0}, step=5)
    assert store.metrics(run.id) == []


def test_metric_bad_inputs(store: RunStore) -> None:
    run = store.create_run("gan")
    with pytest.raises(ConfigError, match="'loss'.*not a number"):
        store.log_metric(run.id, "loss", "0.5")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty string"):
        store.log_metric(run.id, "", 1.0)
    with pytest.raises(ConfigError, match="step must be an integer"):
        store.log_metric(run.id, "loss", 1.0, step=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pairs"):
        store.log_metrics(run.id, [1.0, 2.0])  # type: ignore[list-item]
    assert store.metrics(run.id) == []


# -- artifacts ----------------------------------------------------------------------------------------


def test_artifact_roundtrip_and_overwrite(store: RunStore) -> None:
    run = store.create_run("gan")
    data = os.urandom(10_000)
    record = store.write_artifact(run.id, "samples/grid.png", data)
    assert record.path == run.path / "samples" / "grid.png" == store.artifact_path(run.id, "samples/grid.png")
    assert record.path.read_bytes() == data
    assert record.sha256 == hashlib.sha256(record.path.read_bytes()).hexdigest()
    assert (record.size, record.media_type, record.relpath) == (len(data), "image/png", "samples/grid.png")
    assert store.artifacts(run.id) == [record]

    new = [os.urandom(4096) for _ in range(5)]
    replaced = store.write_artifact(run.id, "samples/grid.png", iter(new), media_type="application/x-test")
    assert record.path.read_bytes() == b"".join(new)
    assert replaced.sha256 == hashlib.sha256(b"".join(new)).hexdigest()
    assert store.artifacts(run.id) == [replaced]
    with _raw(store) as conn:
        assert conn.execute("SELECT sha256, size, pending_sha256 FROM artifacts").fetchall() == [
            (replaced.sha256, 5 * 4096, None)
        ]
    assert _temp_files(store.home) == []


def test_artifact_file_and_add_artifact(store: RunStore) -> None:
    audit = store.create_audit()
    with store.artifact_file(audit.id, "report/summary.json") as tmp:
        tmp.write_text('{"ok": true}\n', encoding="utf-8")
    target = audit.path / "report" / "summary.json"
    assert target.read_text(encoding="utf-8") == '{"ok": true}\n'

    with pytest.raises(OSError), store.artifact_file(audit.id, "report/summary.json") as tmp:
        tmp.write_text("half")
        raise OSError("disk went away")
    assert target.read_text(encoding="utf-8") == '{"ok": true}\n'

    with atomic_path(audit.path / "weights.bin") as tmp:
        tmp.write_bytes(b"\x00" * 100)
    added = store.add_artifact(audit.id, "weights.bin")
    assert added.sha256 == hashlib.sha256(b"\x00" * 100).hexdigest() and added.size == 100
    with pytest.raises(StoreError, match="missing.bin"):
        store.add_artifact(audit.id, "missing.bin")
    got = {a.relpath: a.sha256 for a in store.artifacts(audit.id)}
    assert got == {
        "report/summary.json": hashlib.sha256(target.read_bytes()).hexdigest(),
        "weights.bin": added.sha256,
    }
    assert _temp_files(store.home) == [] and store.check() == []


@pytest.mark.parametrize("crash_after_rename", [False, True])
def test_interrupted_replacement_is_recognised_and_finished(
    store: RunStore, monkeypatch: pytest.MonkeyPatch, crash_after_rename: bool
) -> None:
    run = store.create_run("gan")
    store.write_artifact(run.id, "w.bin", b"old")

    def die(tmp: Path, path: Path) -> None:  # the process dies just before or just after the rename
        if crash_after_rename:
            os.replace(tmp, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "replace_durably", die)
    with pytest.raises(KeyboardInterrupt):
        store.write_artifact(run.id, "w.bin", b"newer")
    monkeypatch.undo()

    expected = b"newer" if crash_after_rename else b"old"
    path = run.path / "w.bin"
    assert path.read_bytes() == expected
    with _raw(store) as conn:
        sha, pending = conn.execute("SELECT sha256, pending_sha256 FROM artifacts").fetchone()
    assert (sha, pending) == (hashlib.sha256(b"old").hexdigest(), hashlib.sha256(b"newer").hexdigest())
    version = "new" if crash_after_rename else "old"
    (problem,) = store.check()
    assert "'w.bin'" in problem and "interrupted" in problem and f"holds the {version} version" in problem
    assert len(store.check(repair=True)) == 1
    assert store.check() == []
    assert [(a.sha256, a.size) for a in store.artifacts(run.id)] == [
        (hashlib.sha256(expected).hexdigest(), len(expected))
    ]


@pytest.mark.parametrize(
    "relpath",
    ["../escape.bin", "a/../../escape.bin", "/etc/passwd", "C:\\x.bin", "a\\b.bin", "", ".", "config.json"],
)
def test_artifact_path_escape_rejected(store: RunStore, relpath: str) -> None:
    run = store.create_run("gan")
    with pytest.raises(ConfigError):
        store.write_artifact(run.id, relpath, b"x")
    with pytest.raises(ConfigError):
        store.artifact_path(run.id, relpath)
    assert store.artifacts(run.id) == []
    assert not (store.home / "escape.bin").exists() and not (store.home / "runs" / "escape.bin").exists()


def test_artifact_symlink_escape_rejected(store: RunStore, tmp_path: Path) -> None:
    run = store.create_run("gan")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run.path / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="symbolic link"):
        store.write_artifact(run.id, "link/x.bin", b"x")
    assert list(outside.iterdir()) == []


# -- home, concurrency, damage ------------------------------------------------------------------------


def test_home_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "from-env"))
    assert default_home() == tmp_path / "from-env"
    run = RunStore().create_run("gan")
    assert (tmp_path / "from-env" / "runs" / run.id / "config.json").is_file()
    assert (tmp_path / "from-env" / "index.sqlite").is_file()

    monkeypatch.delenv("AUDITKIT_HOME")
    monkeypatch.chdir(tmp_path)
    assert RunStore().home == tmp_path / "auditkit-runs"


def test_bad_home_and_bad_index(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="AUDITKIT_HOME"):
        RunStore(tmp_path / "file")
    home = tmp_path / "home"
    home.mkdir()
    (home / "index.sqlite").write_bytes(b"this is not an SQLite database\n" * 100)
    with pytest.raises(StoreError, match=r"index\.sqlite is not an auditkit index.*move it aside"):
        RunStore(home)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
@pytest.mark.parametrize("fresh", [True, False])
def test_read_only_home(tmp_path: Path, fresh: bool) -> None:
    home = tmp_path / "home"
    if not fresh:
        RunStore(home).create_run("gan")
    home.mkdir(exist_ok=True)
    home.chmod(0o555)
    try:
        with pytest.raises(StoreError, match=f"{re.escape(str(home))}.*AUDITKIT_HOME"):
            RunStore(home)
    finally:
        home.chmod(0o755)


def test_reader_not_blocked_by_open_write_transaction(store: RunStore) -> None:
    run = store.create_run("gan")
    store.log_metric(run.id, "loss", 1.0, step=0)
    new_id = "run-20990101-000000-abcdef"
    with _raw(store) as writer:
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        # A tiny cache makes the writer spill uncommitted pages to disk, the moment at which a rollback
        # journal would lock readers out; WAL keeps them in the -wal file, invisible and harmless to readers.
        writer.execute("PRAGMA cache_size = 10")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO runs (id, kind, name, status, created_at, updated_at, config)"
            " VALUES (?, 'vae', NULL, 'running', ?, ?, '{}')",
            (new_id, "2099-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z"),
        )
        rows = [(run.id, f"m{i}", 0, float(i), "2099-01-01T00:00:00.000000Z") for i in range(3000)]
        writer.executemany(
            "INSERT INTO metrics (owner_id, name, step, value, logged_at) VALUES (?, ?, ?, ?, ?)", rows
        )
        assert [r.id for r in store.list_runs()] == [run.id]
        assert [r.id for r in RunStore(store.home).list_runs()] == [run.id]
        assert [(m.name, m.value) for m in store.metrics(run.id)] == [("loss", 1.0)]
        writer.execute("COMMIT")
    assert [r.id for r in store.list_runs()] == [new_id, run.id]
    assert len(store.metrics(run.id)) == 3001


def test_concurrent_opening_and_creation(tmp_path: Path) -> None:
    home = tmp_path / "fresh"

    def work(i: int) -> str:
        store = RunStore(home)
        run = store.create_run("thread", config={"i": i})
        store.log_metrics(run.id, {f"m{j}": j for j in range(10)}, step=i)
        return run.id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(work, range(8)))
    store = RunStore(home)
    assert sorted(r.id for r in store.list_runs()) == sorted(ids) and len(set(ids)) == 8
    with _raw(store) as conn:
        assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone() == (80,)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    assert store.check() == []


def test_check_finds_damage(store: RunStore) -> None:
    run = store.create_run("gan")
    gone = store.create_run("vae")
    record = store.write_artifact(run.id, "w.bin", b"original")
    assert store.check() == []

    record.path.write_bytes(b"tampered")
    for child in gone.path.iterdir():
        child.unlink()
    gone.path.rmdir()
    (store.home / "audits" / "audit-20200101-000000-abcdef").mkdir()  # a crash between mkdir and insert
    problems = store.check()
    assert len(problems) == 3
    assert any("'w.bin'" in p and "changed since it was indexed" in p for p in problems)
    assert any(gone.id in p and "folder" in p and "missing" in p for p in problems)
    assert any("audit-20200101-000000-abcdef has no row" in p for p in problems)
    assert store.check(repair=True) == problems  # repair touches neither user files nor orphan folders
    assert record.path.read_bytes() == b"tampered"


# -- schema migrations --------------------------------------------------------------------------------


def _store_with_data(tmp_path: Path) -> tuple[RunStore, str]:
    store = RunStore(tmp_path / "home")
    run = store.create_run("gan", config={"lr": 0.1})
    store.log_metric(run.id, "loss", 0.5, step=3)
    return store, run.id


def _version_and_columns(conn: sqlite3.Connection) -> tuple[str, list[str]]:
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    return version, [row[1] for row in conn.execute("PRAGMA table_info(runs)")]


def test_migration_adds_version_and_keeps_data(tmp_path: Path) -> None:
    store, run_id = _store_with_data(tmp_path)
    extended = [*MIGRATIONS, (2, ("ALTER TABLE runs ADD COLUMN note TEXT", "UPDATE runs SET note = 'v2'"))]
    with _raw(store) as conn:
        assert _version_and_columns(conn)[0] == "1"
        assert _migrate(conn, extended) == 2
        assert _migrate(conn, extended) == 2  # idempotent
        version, columns = _version_and_columns(conn)
        assert version == "2" and "note" in columns
        assert conn.execute("SELECT id, kind, config, note FROM runs").fetchall() == [
            (run_id, "gan", '{\n  "lr": 0.1\n}\n', "v2")
        ]
        assert conn.execute("SELECT name, step, value FROM metrics").fetchall() == [("loss", 3, 0.5)]
    # This auditkit only knows version 1: the upgraded index is refused, not misread.
    with pytest.raises(StoreError, match=r"schema version 2.*newer auditkit.*upgrade auditkit"):
        RunStore(store.home)


def test_failing_migration_leaves_previous_version(tmp_path: Path) -> None:
    store, run_id = _store_with_data(tmp_path)
    broken = [*MIGRATIONS, (2, ("ALTER TABLE runs ADD COLUMN note TEXT", "ALTER TABLE no_such_table ADD x"))]
    with _raw(store) as conn:
        with pytest.raises(StoreError, match=r"from schema version 1 to 2 failed.*unchanged"):
            _migrate(conn, broken)
        assert not conn.in_transaction
        columns = ["id", "kind", "name", "status", "created_at", "updated_at", "config"]
        assert _version_and_columns(conn) == ("1", columns)
    reopened = RunStore(store.home)
    assert reopened.get_run(run_id).config == {"lr": 0.1}
    assert [m.value for m in reopened.metrics(run_id)] == [0.5]


def test_newer_index_refused_and_bad_migration_list(tmp_path: Path) -> None:
    store, _ = _store_with_data(tmp_path)
    with _raw(store) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        with pytest.raises(ValueError, match="numbered"):
            _migrate(conn, [(2, ())])
    with pytest.raises(StoreError, match=r"index\.sqlite has schema version 99.*upgrade auditkit"):
        RunStore(store.home)


# -- child processes: opening at once, and crash safety under SIGKILL --------------------------------

needs_sigkill = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def _spawn(mode: str, home: Path, run_id: str, marker: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    args = [sys.executable, str(CHILD), mode, str(home), run_id, str(marker)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(marker: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before signalling: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            pytest.fail("child did not signal within 60 s")
        time.sleep(0.005)


def _kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the child (if still alive) and return its exit status: ``-SIGKILL`` if the kill ended it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return proc.returncode


def _integrity(store: RunStore) -> list[str]:
    with _raw(store) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def test_processes_creating_one_store_at_once(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    procs = [_spawn("open", home, "-", tmp_path / "unused") for _ in range(6)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    store = RunStore(home)
    assert sorted(r.config["pid"] for r in store.list_runs()) == sorted(p.pid for p in procs)
    with _raw(store) as conn:
        assert conn.execute("SELECT key, value FROM meta").fetchall() == [("schema_version", "1")]
    assert store.check() == []


@needs_sigkill
def test_kill_mid_artifact_keeps_old_version(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "home")
    run = store.create_run("gan")
    version1 = b"\x01" * (CHUNK * N_CHUNKS)  # what the child writes, in full, before version 2

    proc = _spawn("artifact", store.home, run.id, tmp_path / "halfway")
    try:
        _wait_for(tmp_path / "halfway", proc)
    finally:
        status = _kill(proc)
    assert status == -signal.SIGKILL  # killed halfway, not finished

    on_disk = (run.path / "data.bin").read_bytes()
    assert on_disk == version1
    assert [a.sha256 for a in store.artifacts(run.id)] == [hashlib.sha256(on_disk).hexdigest()]
    strays = _temp_files(store.home)
    assert len(strays) == 1 and strays[0].parent == run.path and strays[0].stat().st_size > 0
    problems = store.check()
    assert len(problems) == 1 and strays[0].name in problems[0] and "stray temp file" in problems[0]
    assert len(store.check(repair=True)) == 1
    assert _temp_files(store.home) == [] and store.check() == []
    assert _integrity(store) == ["ok"]


@needs_sigkill
def test_kill_mid_transaction_commits_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "home")
    run = store.create_run("gan")
    proc = _spawn("metrics", store.home, run.id, tmp_path / "halfway")
    try:
        _wait_for(tmp_path / "halfway", proc)
    finally:
        status = _kill(proc)
    assert status == -signal.SIGKILL

    assert _integrity(store) == ["ok"]
    with _raw(store) as conn:
        per_step = dict(conn.execute("SELECT step, COUNT(*) FROM metrics GROUP BY step").fetchall())
    assert per_step == {0: N_VALUES, 1: N_VALUES, 2: N_VALUES}  # step 3 was half-sent: none of it committed
    assert Counter(m.step for m in store.metrics(run.id)) == per_step
    assert store.check() == []


@needs_sigkill
def test_random_kills_leave_whole_states(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rng = random.Random(20261123)
    for i in range(4):
        marker = tmp_path / f"started-{i}"
        proc = _spawn("loop", home, "-", marker)
        try:
            _wait_for(marker, proc)
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            status = _kill(proc)
        assert status == -signal.SIGKILL

    store = RunStore(home)
    assert _integrity(store) == ["ok"]
    with _raw(store) as conn:
        sql = "SELECT owner_id, step, COUNT(*) FROM metrics GROUP BY owner_id, step"
        counts = conn.execute(sql).fetchall()
        rows = conn.execute("SELECT owner_id, relpath, sha256, pending_sha256 FROM artifacts").fetchall()
    assert len(counts) >= 4 * 2  # each child committed at least one step of its run and its audit
    assert {count for _, _, count in counts} == {N_VALUES}  # every step has all of its values or none
    assert len(rows) >= 4 * 2
    for owner_id, relpath, sha256, pending in rows:
        actual = hashlib.sha256((home / "runs" / owner_id / relpath).read_bytes()).hexdigest()
        # A kill between the two phases of a replacement leaves the file at the old or the new version.
        assert actual == sha256 or (pending is not None and actual == pending)

    store.check(repair=True)
    for run in store.list_runs():
        for record in store.artifacts(run.id):
            assert hashlib.sha256(record.path.read_bytes()).hexdigest() == record.sha256
    # What may remain after repair: folders of runs or audits killed before their row was committed.
    assert all("has no row in the index" in problem for problem in store.check())
    assert _temp_files(home) == []
