"""The run store: one folder per run and per audit, and an SQLite index of them.

Layout under the store's home (``AUDITKIT_HOME``, default ``./auditkit-runs``)::

    index.sqlite         tables meta (schema version), runs, audits, metrics, artifacts (with SHA-256)
    runs/<run-id>/       config.json, and whatever the run writes through the store (checkpoints, samples)
    audits/<audit-id>/   config.json, results, reports

Why hand-written: what is needed is a small index next to plain files that a reviewer can open without
auditkit. Experiment trackers (MLflow, Aim, W&B) bring a server or their own storage format and many
dependencies; an ORM adds nothing over four tables. The standard library's ``sqlite3`` plus atomic file
writes (``auditkit._atomic``) cover it in one readable file.

Crash safety -- a crash at any point leaves the old state or the new one, never a half:

* Files are written to a temp file, fsynced and renamed (``auditkit._atomic``); a crash leaves the old
  or the new file plus, at most, a stray temp file that ``check`` reports and ``check(repair=True)`` removes.
* Every index change is one ``BEGIN IMMEDIATE`` transaction; ``synchronous=FULL`` makes a commit durable.
  WAL journal mode lets a reader (the dashboard) read while a trainer writes.
* Files come before rows: a run's folder and ``config.json`` exist before its row, so a crash in between
  leaves an unlisted folder (reported by ``check``), never a row without its folder.
* Replacing an indexed artifact is two-phase: the new hash is first recorded as ``pending_sha256``, then
  the file is renamed, then the row is finalised. Whatever the crash point, the file on disk matches the
  row's ``sha256`` or its ``pending_sha256``; ``check`` says which and ``check(repair=True)`` finalises it.

The store opens a short-lived SQLite connection per operation, so one ``RunStore`` may be shared by
threads (Streamlit) and many processes may open the same home. It assumes a local file system: SQLite's
WAL mode does not work over network file systems.
"""

from __future__ import annotations

import json
import math
import mimetypes
import operator
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from auditkit._atomic import (
    atomic_write_bytes,
    fsync_dir,
    fsync_file,
    is_temp_name,
    json_bytes,
    replace_durably,
    sha256_file,
    temp_path_for,
    write_temp,
)
from auditkit.errors import ConfigError, StoreError

__all__ = [
    "STATUSES",
    "ArtifactRecord",
    "AuditInfo",
    "MetricRecord",
    "RunInfo",
    "RunStore",
    "default_home",
]

STATUSES = frozenset({"running", "completed", "failed", "interrupted"})
"""Statuses a run or an audit can have."""

_BUSY_TIMEOUT_S = 10.0
_ID_RE = re.compile(r"(run|audit)-\d{8}-\d{6}-[0-9a-f]{6}")
_CONFIG_FILE = "config.json"
_REPAIR_HINT = "`auditkit store check --repair` (RunStore.check(repair=True))"
_LIST_HINT = {  # the CLI has `runs list`; audits are listed from Python for now
    "run": "list the known ones with `auditkit runs list`",
    "audit": "list the known ones with RunStore.list_audits()",
    None: "list the known ones with `auditkit runs list`",
}

# Schema history: (version, statements), applied in order by ``_migrate``, one transaction each. A migration
# is a tuple of statements rather than one script because ``executescript`` commits before it runs, which
# would break the all-or-nothing upgrade. Append new versions; never edit a shipped one.
_SCHEMA_V1: tuple[str, ...] = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        config TEXT NOT NULL
    )""",
    "CREATE INDEX runs_by_time ON runs (created_at)",
    """CREATE TABLE audits (
        id TEXT PRIMARY KEY,
        run_id TEXT REFERENCES runs (id),
        name TEXT,
        status TEXT NOT NULL,
        verdict TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        config TEXT NOT NULL
    )""",
    "CREATE INDEX audits_by_run ON audits (run_id, created_at)",
    """CREATE TABLE metrics (
        id INTEGER PRIMARY KEY,
        owner_id TEXT NOT NULL,
        name TEXT NOT NULL,
        step INTEGER,
        value REAL NOT NULL,
        logged_at TEXT NOT NULL
    )""",
    "CREATE INDEX metrics_by_owner ON metrics (owner_id, name, step)",
    """CREATE TABLE artifacts (
        owner_id TEXT NOT NULL,
        relpath TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        media_type TEXT,
        created_at TEXT NOT NULL,
        pending_sha256 TEXT,
        PRIMARY KEY (owner_id, relpath)
    )""",
)
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = ((1, _SCHEMA_V1),)
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass(frozen=True)
class RunInfo:
    """One run (a training or sampling job) as the index records it."""

    id: str
    kind: str
    name: str | None
    status: str
    created_at: str
    updated_at: str
    config: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class AuditInfo:
    """One audit as the index records it; ``run_id`` is the audited run, if it came from the store."""

    id: str
    run_id: str | None
    name: str | None
    status: str
    verdict: str | None
    created_at: str
    updated_at: str
    config: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class MetricRecord:
    """One logged value."""

    name: str
    step: int | None
    value: float
    logged_at: str


@dataclass(frozen=True)
class ArtifactRecord:
    """One indexed file of a run or audit; ``created_at`` is when this content was written."""

    owner_id: str
    relpath: str
    sha256: str
    size: int
    media_type: str | None
    created_at: str
    path: Path


def default_home() -> Path:
    """The store's home: ``$AUDITKIT_HOME`` if set, else ``./auditkit-runs`` (absolute)."""
    value = os.environ.get("AUDITKIT_HOME", "").strip()
    return Path(value).expanduser().absolute() if value else Path.cwd() / "auditkit-runs"


class RunStore:
    """Runs, audits, their metrics and files, under one home folder.

    Parameters
    ----------
    home
        The store's folder; ``None`` means ``default_home()``. It is created, with the index schema, if
        missing (safe when several processes do so at once).

    Raises
    ------
    StoreError
        If the home cannot be created or written, if ``index.sqlite`` is not an SQLite database, or if it
        was created by a newer auditkit.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self._home = Path(home).expanduser().absolute() if home is not None else default_home()
        self._db = self._home / "index.sqlite"
        try:
            for folder in (self._home, self._home / "runs", self._home / "audits"):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the run store folder {self._home}: {exc.strerror or exc}; "
                "set AUDITKIT_HOME (or pass home=) to a folder you can write"
            ) from exc
        if not os.access(self._home, os.W_OK):
            raise StoreError(
                f"the run store folder {self._home} is not writable; fix its permissions, or set "
                "AUDITKIT_HOME (or pass home=) to a folder you can write"
            )
        with self._connect() as conn:
            _use_wal(conn)
            _migrate(conn, MIGRATIONS)

    @property
    def home(self) -> Path:
        """The store's folder (absolute)."""
        return self._home

    def __repr__(self) -> str:
        return f"RunStore({str(self._home)!r})"

    # -- runs -----------------------------------------------------------------------------------------

    def create_run(
        self, kind: str, name: str | None = None, config: Mapping[str, Any] | None = None
    ) -> RunInfo:
        """Create a run with status ``"running"``: its folder, its ``config.json``, then its index row.

        Parameters
        ----------
        kind
            What the run is, e.g. ``"gan"``, ``"vae"``, ``"diffusion"``, ``"judge"``.
        name
            Optional human label.
        config
            JSON-serialisable settings of the run; stored in ``config.json`` and in the index.
        """
        kind = _text("kind", kind)
        name = _optional_text("name", name)
        config_dict, blob = _config_json(config, "run")
        run_id, path, now = self._new_owner_dir("run")
        try:
            atomic_write_bytes(path / _CONFIG_FILE, blob)
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO runs (id, kind, name, status, created_at, updated_at, config)"
                    " VALUES (?, ?, ?, 'running', ?, ?, ?)",
                    (run_id, kind, name, now, now, blob.decode()),
                )
        except Exception:
            # Not indexed: remove the folder rather than leave an orphan for `check` to report.
            shutil.rmtree(path, ignore_errors=True)
            raise
        return RunInfo(run_id, kind, name, "running", now, now, config_dict, path)

    def get_run(self, run_id: str) -> RunInfo:
        """The run with id ``run_id``; ``StoreError`` if there is none."""
        self._check_id(run_id, "run")
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise self._unknown(run_id)
        return self._run_info(row)

    def list_runs(self, kind: str | None = None, status: str | None = None) -> list[RunInfo]:
        """Runs, newest first, optionally only those of one ``kind`` and/or ``status``."""
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status is not None:
            where.append("status = ?")
            params.append(_status(status))
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY created_at DESC, rowid DESC", params).fetchall()
        return [self._run_info(row) for row in rows]

    def set_run_status(self, run_id: str, status: str) -> RunInfo:
        """Set a run's status (one of ``STATUSES``; any transition is allowed, e.g. resuming)."""
        self._check_id(run_id, "run")
        status = _status(status)
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", (status, _iso_now(), run_id)
            )
            if cursor.rowcount == 0:
                raise self._unknown(run_id)
            row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._run_info(row)

    # -- audits ---------------------------------------------------------------------------------------

    def create_audit(
        self, name: str | None = None, run_id: str | None = None, config: Mapping[str, Any] | None = None
    ) -> AuditInfo:
        """Create an audit with status ``"running"``, optionally tied to the run it audits.

        Parameters
        ----------
        name
            Optional human label.
        run_id
            The audited run, if it is in this store (a generator the user brought has none).
        config
            JSON-serialisable settings of the audit; stored in ``config.json`` and in the index.
        """
        name = _optional_text("name", name)
        if run_id is not None:
            self._check_id(run_id, "run")
        config_dict, blob = _config_json(config, "audit")
        audit_id, path, now = self._new_owner_dir("audit")
        try:
            atomic_write_bytes(path / _CONFIG_FILE, blob)
            with self._transaction() as conn:
                if run_id is not None:
                    self._require_owner(conn, run_id)
                conn.execute(
                    "INSERT INTO audits (id, run_id, name, status, verdict, created_at, updated_at, config)"
                    " VALUES (?, ?, ?, 'running', NULL, ?, ?, ?)",
                    (audit_id, run_id, name, now, now, blob.decode()),
                )
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return AuditInfo(audit_id, run_id, name, "running", None, now, now, config_dict, path)

    def get_audit(self, audit_id: str) -> AuditInfo:
        """The audit with id ``audit_id``; ``StoreError`` if there is none."""
        self._check_id(audit_id, "audit")
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM audits WHERE id = ?", (audit_id,)).fetchone()
        if row is None:
            raise self._unknown(audit_id)
        return self._audit_info(row)

    def list_audits(self, run_id: str | None = None, status: str | None = None) -> list[AuditInfo]:
        """Audits, newest first, optionally only those of one run and/or one status."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(_status(status))
        with self._connect() as conn:
            if run_id is not None:
                # An unknown run is more likely a typo than a run without audits: say so.
                self._check_id(run_id, "run")
                self._require_owner(conn, run_id)
                where.append("run_id = ?")
                params.append(run_id)
            sql = "SELECT * FROM audits" + (" WHERE " + " AND ".join(where) if where else "")
            rows = conn.execute(sql + " ORDER BY created_at DESC, rowid DESC", params).fetchall()
        return [self._audit_info(row) for row in rows]

    def set_audit_status(self, audit_id: str, status: str, verdict: str | None = None) -> AuditInfo:
        """Set an audit's status (one of ``STATUSES``) and, if given, its verdict (``None`` keeps it)."""
        self._check_id(audit_id, "audit")
        status = _status(status)
        verdict = _optional_text("verdict", verdict)
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE audits SET status = ?, verdict = COALESCE(?, verdict), updated_at = ? WHERE id = ?",
                (status, verdict, _iso_now(), audit_id),
            )
            if cursor.rowcount == 0:
                raise self._unknown(audit_id)
            row = conn.execute("SELECT * FROM audits WHERE id = ?", (audit_id,)).fetchone()
        return self._audit_info(row)

    # -- metrics --------------------------------------------------------------------------------------

    def log_metrics(
        self,
        owner_id: str,
        values: Mapping[str, float] | Iterable[tuple[str, float]],
        step: int | None = None,
    ) -> int:
        """Record several values of a run or audit at one step, all or none (one transaction).

        Parameters
        ----------
        owner_id
            A run or audit id.
        values
            ``{name: value}`` or ``(name, value)`` pairs; values are anything ``float()`` accepts
            (Python, NumPy or one-element torch numbers). An iterable is consumed inside the transaction.
        step
            Optional integer step (``None`` sorts before every step).

        Returns
        -------
        int
            How many values were recorded.

        Raises
        ------
        ConfigError
            If a name is empty or a value is not a finite number: NaN and infinities are refused, not
            stored, because a diverged loss must be reported by the trainer rather than hidden in a log.
            Nothing from the call is recorded then.
        """
        self._check_id(owner_id)
        step = _step(step)
        items = values.items() if isinstance(values, Mapping) else values
        logged_at = _iso_now()
        count = 0
        with self._transaction() as conn:
            self._require_owner(conn, owner_id)
            for item in items:
                name, value = _metric(item, owner_id, step)
                conn.execute(
                    "INSERT INTO metrics (owner_id, name, step, value, logged_at) VALUES (?, ?, ?, ?, ?)",
                    (owner_id, name, step, value, logged_at),
                )
                count += 1
        return count

    def log_metric(self, owner_id: str, name: str, value: float, step: int | None = None) -> None:
        """Record one value; see ``log_metrics``."""
        self.log_metrics(owner_id, [(name, value)], step=step)

    def metrics(self, owner_id: str, name: str | None = None) -> list[MetricRecord]:
        """Values logged for a run or audit (optionally one metric), by step, then in logging order."""
        self._check_id(owner_id)
        sql = "SELECT name, step, value, logged_at FROM metrics WHERE owner_id = ?"
        params: list[Any] = [owner_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        with self._connect() as conn:
            self._require_owner(conn, owner_id)
            rows = conn.execute(sql + " ORDER BY step, id", params).fetchall()
        return [MetricRecord(row["name"], row["step"], row["value"], row["logged_at"]) for row in rows]

    # -- artifacts ------------------------------------------------------------------------------------

    def folder(self, owner_id: str) -> Path:
        """The folder of a run or audit; ``StoreError`` if the id is unknown or its folder was deleted."""
        self._check_id(owner_id)
        with self._connect() as conn:
            self._require_owner(conn, owner_id)
        owner_dir = self._owner_dir(owner_id)
        if not owner_dir.is_dir():
            raise StoreError(
                f"the folder {owner_dir} of {owner_id} is missing although the index lists it; restore it "
                "from a backup, and run `auditkit store check` to see what else is damaged"
            )
        return owner_dir

    def artifact_path(self, owner_id: str, relpath: str) -> Path:
        """Where the file ``relpath`` of a run or audit lives (whether or not it exists yet).

        Raises ``ConfigError`` if ``relpath`` is absolute or leaves the owner's folder.
        """
        rel = _relpath(relpath)
        self._check_id(owner_id)
        with self._connect() as conn:
            self._require_owner(conn, owner_id)
        return self._target(owner_id, rel)

    def write_artifact(
        self,
        owner_id: str,
        relpath: str,
        data: bytes | Iterable[bytes],
        media_type: str | None = None,
    ) -> ArtifactRecord:
        """Write a file in a run's or audit's folder atomically and index it with its SHA-256.

        Parameters
        ----------
        owner_id
            A run or audit id.
        relpath
            Path inside the owner's folder, with ``/`` separators, e.g. ``"samples/step-100.png"``.
        data
            The content, whole or as an iterable of byte chunks (streamed).
        media_type
            e.g. ``"image/png"``; guessed from the extension when ``None``.

        An existing file at ``relpath`` is replaced; a crash leaves the old or the new version.
        """
        target, rel = self._prepare_target(owner_id, relpath, make_parents=True)
        tmp, sha256, size = write_temp(target, data)
        return self._publish(owner_id, rel, target, tmp, sha256, size, media_type)

    @contextmanager
    def artifact_file(self, owner_id: str, relpath: str, media_type: str | None = None) -> Iterator[Path]:
        """Yield a temp path to write an artifact to; on normal exit it is renamed into place and indexed.

        For libraries that write to a path themselves::

            with store.artifact_file(run.id, "checkpoints/last.safetensors") as tmp:
                safetensors.torch.save_file(state, tmp)

        Same guarantees as ``write_artifact``; on an exception in the block nothing changes.
        """
        target, rel = self._prepare_target(owner_id, relpath, make_parents=True)
        tmp = temp_path_for(target)
        try:
            yield tmp
            if not tmp.is_file():
                raise FileNotFoundError(f"nothing was written to the temp path {tmp} for {target}")
            fsync_file(tmp)
            sha256, size = sha256_file(tmp), tmp.stat().st_size
        except BaseException:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        self._publish(owner_id, rel, target, tmp, sha256, size, media_type)

    def add_artifact(self, owner_id: str, relpath: str, media_type: str | None = None) -> ArtifactRecord:
        """Index (or re-index) a file already in a run's or audit's folder, with its current SHA-256."""
        target, rel = self._prepare_target(owner_id, relpath, make_parents=False)
        if not target.is_file():
            raise StoreError(
                f"cannot index {rel!r} of {owner_id}: there is no file at {target}; write it there first "
                "(RunStore.artifact_file or write_artifact do both steps at once)"
            )
        sha256, size = sha256_file(target), target.stat().st_size
        created_at = _iso_now()
        media_type = media_type or mimetypes.guess_type(rel)[0]
        with self._transaction() as conn:
            self._upsert_artifact(conn, owner_id, rel, sha256, size, media_type, created_at)
        return ArtifactRecord(owner_id, rel, sha256, size, media_type, created_at, target)

    def artifacts(self, owner_id: str) -> list[ArtifactRecord]:
        """Indexed files of a run or audit, by path."""
        self._check_id(owner_id)
        with self._connect() as conn:
            self._require_owner(conn, owner_id)
            rows = conn.execute(
                "SELECT * FROM artifacts WHERE owner_id = ? ORDER BY relpath", (owner_id,)
            ).fetchall()
        return [self._artifact_record(row) for row in rows]

    def remove_artifact(self, owner_id: str, relpath: str) -> bool:
        """Unindex and delete one file of a run or audit (e.g. an old checkpoint); ``False`` if unknown.

        The index row goes first: a crash in between leaves an unindexed file, never a dangling row.
        """
        target, rel = self._prepare_target(owner_id, relpath, make_parents=False)
        with self._transaction() as conn:
            removed = conn.execute(
                "DELETE FROM artifacts WHERE owner_id = ? AND relpath = ?", (owner_id, rel)
            ).rowcount
        target.unlink(missing_ok=True)
        return bool(removed)

    # -- consistency ----------------------------------------------------------------------------------

    def check(self, repair: bool = False) -> list[str]:
        """Look for damage and leftovers of crashes; return one sentence per problem (empty: healthy).

        Checks SQLite's ``integrity_check``; that every run and audit row has its folder and every folder
        its row; that every indexed file exists with its recorded SHA-256; and looks for stray temp files.

        Parameters
        ----------
        repair
            Also finish what crashes interrupted: delete stray temp files and finalise artifact rows left
            between two versions. Nothing else is changed (orphan folders may hold work worth keeping).
            Run it while nothing writes to the store: a live writer's temp file looks like a stray one.
        """
        problems: list[str] = []
        for tmp in self._temp_files():
            if repair:
                with suppress(FileNotFoundError):
                    tmp.unlink()
                problems.append(f"removed the stray temp file {tmp} (left by an interrupted write)")
            else:
                problems.append(
                    f"stray temp file {tmp}, left by an interrupted write; {_REPAIR_HINT} removes it"
                )
        with self._connect() as conn:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if integrity != ["ok"]:
                problems.append(
                    f"the index {self._db} is damaged ({'; '.join(integrity[:5])}); restore it from a backup"
                )
            owners = {
                "run": {row[0] for row in conn.execute("SELECT id FROM runs")},
                "audit": {row[0] for row in conn.execute("SELECT id FROM audits")},
            }
            artifact_rows = conn.execute("SELECT * FROM artifacts ORDER BY owner_id, relpath").fetchall()
            strays = conn.execute(
                "SELECT DISTINCT owner_id FROM metrics WHERE owner_id NOT IN"
                " (SELECT id FROM runs UNION SELECT id FROM audits)"
                " UNION SELECT DISTINCT owner_id FROM artifacts WHERE owner_id NOT IN"
                " (SELECT id FROM runs UNION SELECT id FROM audits)"
            ).fetchall()
        problems += [
            f"the index has metrics or artifacts of {row[0]!r}, which is neither a run nor an audit in it; "
            "restore the index from a backup"
            for row in strays
        ]
        for kind, ids in owners.items():
            folder = self._home / f"{kind}s"
            entries = sorted(folder.iterdir()) if folder.is_dir() else []
            for owner_id in sorted(ids):
                if not (folder / owner_id).is_dir():
                    problems.append(
                        f"{kind} {owner_id} is indexed but its folder {folder / owner_id} is missing"
                    )
            for entry in entries:
                if entry.name not in ids and not is_temp_name(entry.name):
                    problems.append(
                        f"{entry} has no row in the index (a crash between creating it and indexing it?); "
                        "nothing lists it: inspect it, then delete or keep it"
                    )
        for row in artifact_rows:
            problems += self._check_artifact(row, repair)
        return problems

    # -- internals ------------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection in autocommit mode (transactions are explicit); SQLite errors about
        the file itself become ``StoreError``s naming the file and the fix."""
        try:
            conn = sqlite3.connect(self._db, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            yield conn
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # bugs in auditkit, not conditions of the store
        except sqlite3.DatabaseError as exc:
            raise self._sqlite_error(exc) from exc
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front, so a busy store makes
        us wait (up to the busy timeout) at the start instead of failing halfway."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _sqlite_error(self, exc: sqlite3.Error) -> StoreError:
        code = getattr(exc, "sqlite_errorname", "") or ""
        if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return StoreError(
                f"{self._db} is not an auditkit index or is damaged (SQLite: {exc}); restore it from a "
                "backup, or move it aside and auditkit starts a new, empty index (the run folders stay)"
            )
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(
                f"{self._db} stayed locked by another process for more than {_BUSY_TIMEOUT_S:g} s "
                f"(SQLite: {exc}); wait for the other auditkit process to finish, or stop it"
            )
        if code.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
            return StoreError(
                f"cannot open or write the index {self._db} (SQLite: {exc}); make {self._home} writable, "
                "or set AUDITKIT_HOME (or pass home=) to a folder you can write"
            )
        if code.startswith("SQLITE_FULL"):
            return StoreError(f"the disk holding {self._db} is full (SQLite: {exc}); free some space")
        return StoreError(
            f"the index {self._db} failed (SQLite: {exc}); run `auditkit store check` to look for damage"
        )

    def _check_id(self, owner_id: str, kind: str | None = None) -> str:
        """Validate an id's shape (it becomes a folder name) and return its kind, ``run`` or ``audit``."""
        match = _ID_RE.fullmatch(owner_id) if isinstance(owner_id, str) else None
        if match is None or (kind is not None and match[1] != kind):
            expected = {"run": "a run", "audit": "an audit"}.get(kind or "", "a run or audit")
            example = f"{kind or 'run'}-20261123-073100-3f9a2c"
            hint = _LIST_HINT[kind]
            raise StoreError(f"{owner_id!r} is not {expected} id (ids look like {example}); {hint}")
        return match[1]

    def _unknown(self, owner_id: str) -> StoreError:
        kind = self._check_id(owner_id)
        return StoreError(
            f"no {kind} with id {owner_id!r} in the store at {self._home}; {_LIST_HINT[kind]}, "
            "or check that AUDITKIT_HOME points at the right store"
        )

    def _require_owner(self, conn: sqlite3.Connection, owner_id: str) -> None:
        table = f"{self._check_id(owner_id)}s"  # "runs" or "audits": from a fixed set, safe to format
        if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (owner_id,)).fetchone() is None:
            raise self._unknown(owner_id)

    def _owner_dir(self, owner_id: str) -> Path:
        return self._home / f"{self._check_id(owner_id)}s" / owner_id

    def _new_owner_dir(self, kind: str) -> tuple[str, Path, str]:
        """Create a fresh folder for a new run or audit; ``mkdir`` failing on an existing name is what
        makes ids unique across processes. Returns ``(id, folder, created_at)``."""
        parent = self._home / f"{kind}s"
        for _ in range(100):
            now = datetime.now(UTC)
            owner_id = f"{kind}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
            try:
                (parent / owner_id).mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise StoreError(
                    f"cannot create a folder in {parent}: {exc.strerror or exc}; make {self._home} writable, "
                    "or set AUDITKIT_HOME (or pass home=) to a folder you can write"
                ) from exc
            fsync_dir(parent)  # the folder must survive a power cut once its row is committed
            return owner_id, parent / owner_id, _iso(now)
        raise StoreError(f"could not find a free {kind} id in {parent} after 100 tries; is the clock stuck?")

    def _target(self, owner_id: str, rel: str) -> Path:
        owner_dir = self._owner_dir(owner_id)
        target = owner_dir / rel
        # `..` is rejected by _relpath; this catches a symlink inside the folder pointing outside it.
        if not target.resolve().is_relative_to(owner_dir.resolve()):
            raise ConfigError(
                f"artifact path {rel!r} of {owner_id} leads outside its folder {owner_dir} through a "
                "symbolic link; write artifacts to plain folders inside it"
            )
        return target

    def _prepare_target(self, owner_id: str, relpath: str, make_parents: bool) -> tuple[Path, str]:
        """Validate owner and path, and create the file's parent folders if asked; returns
        ``(target, clean relpath)``."""
        rel = _relpath(relpath)
        self.folder(owner_id)
        target = self._target(owner_id, rel)
        missing = []
        folder = target.parent
        while make_parents and not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
            fsync_dir(folder.parent)
        return target, rel

    def _publish(
        self,
        owner_id: str,
        rel: str,
        target: Path,
        tmp: Path,
        sha256: str,
        size: int,
        media_type: str | None,
    ) -> ArtifactRecord:
        """Move a synced temp file into place and index it (two-phase when replacing an indexed file)."""
        media_type = media_type or mimetypes.guess_type(rel)[0]
        try:
            with self._transaction() as conn:
                # Record the incoming hash first: if we crash after the rename, the row still vouches for
                # the file on disk (it matches pending_sha256), and `check` can tell a crash from damage.
                conn.execute(
                    "UPDATE artifacts SET pending_sha256 = ? WHERE owner_id = ? AND relpath = ?",
                    (sha256, owner_id, rel),
                )
            replace_durably(tmp, target)
        except BaseException:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        created_at = _iso_now()
        with self._transaction() as conn:
            self._upsert_artifact(conn, owner_id, rel, sha256, size, media_type, created_at)
        return ArtifactRecord(owner_id, rel, sha256, size, media_type, created_at, target)

    @staticmethod
    def _upsert_artifact(
        conn: sqlite3.Connection,
        owner_id: str,
        rel: str,
        sha256: str,
        size: int,
        media_type: str | None,
        created_at: str,
    ) -> None:
        conn.execute(
            "INSERT INTO artifacts (owner_id, relpath, sha256, size, media_type, created_at, pending_sha256)"
            " VALUES (?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (owner_id, relpath) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,"
            " media_type = excluded.media_type, created_at = excluded.created_at, pending_sha256 = NULL",
            (owner_id, rel, sha256, size, media_type, created_at),
        )

    def _check_artifact(self, row: sqlite3.Row, repair: bool) -> list[str]:
        owner_id, rel, pending = row["owner_id"], row["relpath"], row["pending_sha256"]
        path = self._owner_dir(owner_id) / rel
        label = f"artifact {rel!r} of {owner_id}"
        if not path.is_file():
            return [f"{label} is indexed but its file {path} is missing"]
        actual = sha256_file(path)
        if actual == row["sha256"] and pending is None:
            return []
        if actual not in (row["sha256"], pending):
            return [
                f"{label} changed since it was indexed (SHA-256 {actual}, index {row['sha256']}); "
                "restore it, or re-index it with RunStore.add_artifact if the change is intended"
            ]
        version = "new" if actual == pending else "old"
        if not repair:
            return [
                f"{label}: a write was interrupted; the file holds the {version} version and the index is "
                f"unfinished; {_REPAIR_HINT} finishes it"
            ]
        with self._transaction() as conn:
            # The guard on pending_sha256 leaves the row alone if a writer changed it meanwhile.
            conn.execute(
                "UPDATE artifacts SET sha256 = ?, size = ?, pending_sha256 = NULL"
                " WHERE owner_id = ? AND relpath = ? AND pending_sha256 IS ?",
                (actual, path.stat().st_size, owner_id, rel, pending),
            )
        return [f"{label}: finished an interrupted write (the file holds the {version} version)"]

    def _temp_files(self) -> list[Path]:
        found = []
        for folder, _, files in os.walk(self._home):
            found += [Path(folder) / name for name in files if is_temp_name(name)]
        return sorted(found)

    def _run_info(self, row: sqlite3.Row) -> RunInfo:
        return RunInfo(
            id=row["id"],
            kind=row["kind"],
            name=row["name"],
            status=row["status"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            config=json.loads(row["config"]),
            path=self._home / "runs" / row["id"],
        )

    def _audit_info(self, row: sqlite3.Row) -> AuditInfo:
        return AuditInfo(
            id=row["id"],
            run_id=row["run_id"],
            name=row["name"],
            status=row["status"],
            verdict=row["verdict"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            config=json.loads(row["config"]),
            path=self._home / "audits" / row["id"],
        )

    def _artifact_record(self, row: sqlite3.Row) -> ArtifactRecord:
        return ArtifactRecord(
            owner_id=row["owner_id"],
            relpath=row["relpath"],
            sha256=row["sha256"],
            size=row["size"],
            media_type=row["media_type"],
            created_at=row["created_at"],
            path=self._owner_dir(row["owner_id"]) / row["relpath"],
        )


# -- schema migrations ----------------------------------------------------------------------------------


def _schema_version(conn: sqlite3.Connection) -> int:
    """The index's schema version; 0 for an empty database."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL once (the mode is persistent, so only the first opener does it).

    Changing the journal mode needs the database to itself, and SQLite answers "database is locked" at
    once instead of waiting out the busy timeout, so several processes opening a new store together retry
    here. A file system without WAL support keeps the rollback journal: as crash-safe, but readers block
    during commits.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _migrate(conn: sqlite3.Connection, migrations: Sequence[tuple[int, Sequence[str]]]) -> int:
    """Bring the index up to the newest version in ``migrations``; return the version it is at.

    Each pending migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the version
    bump, so a failing one leaves the index exactly at the previous version. The version is re-read once
    the write lock is held, so two processes opening a fresh store at once apply each migration once.
    ``conn`` must be in autocommit mode (``isolation_level=None``).

    Raises
    ------
    StoreError
        If the index is newer than every version in ``migrations``, or a migration fails.
    """
    versions = [version for version, _ in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3... in order, got {versions}")
    latest = versions[-1] if versions else 0
    db_file = conn.execute("PRAGMA database_list").fetchone()[2]
    current = _schema_version(conn)
    if current > latest:
        raise _newer_error(db_file, current, latest)
    for version, statements in migrations:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = _schema_version(conn)
            if current > latest:
                raise _newer_error(db_file, current, latest)
            if version > current:
                try:
                    for statement in statements:
                        conn.execute(statement)
                except sqlite3.Error as exc:
                    raise StoreError(
                        f"upgrading the index {db_file} from schema version {current} to {version} failed "
                        f"({exc}); the index is unchanged. Report this as an auditkit bug, and meanwhile "
                        "use the auditkit release that created this store"
                    ) from exc
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),)
                )
                current = version
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return current


def _newer_error(db_file: str, found: int, latest: int) -> StoreError:
    return StoreError(
        f"the index {db_file} has schema version {found}, but this auditkit knows versions up to {latest}: "
        "it was created by a newer auditkit; upgrade auditkit (pip install -U auditkit) to open it"
    )


# -- validation helpers ---------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z``: fixed width, so strings sort like times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_now() -> str:
    return _iso(datetime.now(UTC))


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _optional_text(what: str, value: Any) -> str | None:
    return None if value is None else _text(what, value)


def _status(status: Any) -> str:
    if status not in STATUSES:
        raise ConfigError(f"unknown status {status!r}; use one of {', '.join(sorted(STATUSES))}")
    return status


def _config_json(config: Mapping[str, Any] | None, what: str) -> tuple[dict[str, Any], bytes]:
    """Serialise a config once: the bytes go to ``config.json`` and the index, the dict back to the caller."""
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config of a new {what} must be a mapping (dict), not {type(config).__name__}")
    try:
        blob = json_bytes(dict(config))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"the config of a new {what} cannot be stored as JSON ({exc}); use dicts with string keys, "
            "lists, strings, finite numbers, booleans and None"
        ) from exc
    return json.loads(blob), blob


def _step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool):
        raise ConfigError(f"step must be an integer or None, got {step!r}")
    try:
        return operator.index(step)
    except TypeError:
        raise ConfigError(f"step must be an integer or None, got {step!r}") from None


def _metric(item: Any, owner_id: str, step: int | None) -> tuple[str, float]:
    try:
        name, value = item
    except (TypeError, ValueError):
        raise ConfigError(
            f"metrics of {owner_id} must be a mapping of name to value or (name, value) pairs, got {item!r}"
        ) from None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a metric name of {owner_id} must be a non-empty string, got {name!r}")
    not_a_number = ConfigError(f"metric {name!r} of {owner_id} at step {step} is not a number: {value!r}")
    if isinstance(value, str | bytes):  # float() would parse "0.5": a string here is a caller's mistake
        raise not_a_number
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise not_a_number from None
    if not math.isfinite(number):
        raise ConfigError(
            f"metric {name!r} of {owner_id} at step {step} is {number}; non-finite values are refused and "
            "nothing from this call was logged. If training diverged, report it (e.g. set_run_status(..., "
            "'failed')) instead of logging the value"
        )
    return name, number


def _relpath(relpath: Any) -> str:
    """Validate an artifact path: relative, ``/``-separated, inside the owner's folder."""
    if not isinstance(relpath, str) or not relpath.strip() or "\x00" in relpath:
        raise ConfigError(f"an artifact path must be a non-empty string, got {relpath!r}")
    hint = "give a path inside the run's or audit's folder with '/' separators, like 'samples/grid.png'"
    path = PurePosixPath(relpath)
    if "\\" in relpath or path.is_absolute() or PureWindowsPath(relpath).drive:
        raise ConfigError(f"artifact path {relpath!r} is absolute or uses '\\'; {hint}")
    if ".." in path.parts or not path.parts:
        raise ConfigError(f"artifact path {relpath!r} leaves its folder; {hint}")
    if any(is_temp_name(part) for part in path.parts):
        raise ConfigError(f"artifact path {relpath!r} looks like a temp file, which `check` removes")
    if path.as_posix() == _CONFIG_FILE:
        raise ConfigError(f"artifact path {relpath!r} is where the store keeps the config; choose another")
    return path.as_posix()
