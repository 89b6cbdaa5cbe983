"""Reviewer sign-off of an audit: dated records appended to ``signoffs.json`` in the audit's folder.

Each record says who signed (``reviewer``, ``role``), what they decided (``approve``, ``reject`` or
``conditional``), why (``comment``, stored verbatim: escaping is the renderer's job), when (``date``, ISO
8601 in UTC) and what they saw (``audit_sha256``, the SHA-256 of ``audit.json`` at signing time). The hash
ties a decision to one exact result: :func:`check_signoffs` shows which decisions no longer match the
``audit.json`` on disk, so an edit made after sign-off is visible.

The file is a JSON list, oldest first. Adding a record rewrites the file atomically with the earlier records
unchanged (an append-only JSON list cannot be appended to in place without a crash risking a torn file);
a lock file serialises two reviewers signing at the same moment, so neither record is lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditkit._atomic import atomic_write_json, sha256_file
from auditkit.errors import ConfigError, StoreError

SIGNOFFS_FILE = "signoffs.json"
DECISIONS = ("approve", "reject", "conditional")
_FIELDS = ("reviewer", "role", "decision", "comment", "date", "audit_sha256")
_LOCK_FILE = ".signoffs.lock"


def add_signoff(
    audit_dir: str | os.PathLike[str],
    *,
    reviewer: str,
    role: str,
    decision: str,
    comment: str = "",
    now: datetime | None = None,
) -> dict[str, str]:
    """Append a reviewer's dated decision to ``<audit_dir>/signoffs.json``.

    Parameters
    ----------
    audit_dir
        The audit's folder (it holds ``audit.json``).
    reviewer, role
        Who signs and in which capacity (e.g. ``"J. Doe"``, ``"model risk"``); neither may be empty.
    decision
        ``approve``, ``reject`` or ``conditional``.
    comment
        Free text, stored exactly as given.
    now
        The signing time (timezone-aware); default: the current time. Stored in UTC.

    Returns
    -------
    dict
        The record written: reviewer, role, decision, comment, date, audit_sha256.

    Raises
    ------
    ConfigError
        An empty reviewer or role, an unknown decision, a naive ``now``, or no ``audit.json`` in the folder.
    StoreError
        An existing ``signoffs.json`` is damaged (nothing is written then).
    """
    folder = Path(audit_dir)
    audit_json = _audit_json(folder)
    record = {
        "reviewer": _required_text("reviewer", reviewer),
        "role": _required_text("role", role),
        "decision": _decision(decision),
        "comment": _text("comment", comment),
        "date": _utc_date(now),
        "audit_sha256": "",
    }
    with _locked(folder):
        records = load_signoffs(folder)
        # hashed under the lock so the record names the audit.json that was current when it was written
        record["audit_sha256"] = sha256_file(audit_json)
        atomic_write_json(folder / SIGNOFFS_FILE, [*records, record])
    return record


def load_signoffs(audit_dir: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The sign-off records of an audit, oldest first; an empty list when nobody has signed.

    Raises
    ------
    StoreError
        ``signoffs.json`` is unreadable, not a JSON list, or holds a record without the expected fields.
    """
    path = Path(audit_dir) / SIGNOFFS_FILE
    if not path.exists():
        return []
    fix = "restore it from a backup (or the report that embeds it); auditkit never rewrites earlier records"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"the sign-off file {path} is damaged ({exc}); {fix}.") from None
    if not isinstance(records, list):
        raise StoreError(f"the sign-off file {path} must hold a JSON list of records; {fix}.")
    for i, record in enumerate(records):
        problem = _record_problem(record)
        if problem:
            raise StoreError(f"the sign-off file {path} is damaged: record {i} {problem}; {fix}.")
    return records


def check_signoffs(audit_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Each sign-off record with ``audit_changed``: whether ``audit.json`` differs from what was signed.

    A ``True`` means the result was edited (or re-written) after that reviewer signed it, so the decision
    does not cover the current file.
    """
    folder = Path(audit_dir)
    current = sha256_file(_audit_json(folder))
    return [
        {**record, "audit_changed": record["audit_sha256"] != current} for record in load_signoffs(folder)
    ]


# --------------------------------------------------------------------------- internals


def _audit_json(folder: Path) -> Path:
    path = folder / "audit.json"
    if not path.is_file():
        raise ConfigError(
            f"{folder} holds no audit.json; sign off a finished audit's folder (<AUDITKIT_HOME>/audits/<id>)."
        )
    return path


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"the sign-off {what} must be text; got {type(value).__name__} {value!r}.")
    return value


def _required_text(what: str, value: Any) -> str:
    text = _text(what, value).strip()
    if not text:
        raise ConfigError(f"the sign-off needs a {what}: say who signs and in which capacity.")
    return text


def _decision(value: Any) -> str:
    if value not in DECISIONS:
        raise ConfigError(f"sign-off decision {value!r} is not one of {', '.join(DECISIONS)}.")
    return str(value)


def _utc_date(now: datetime | None) -> str:
    moment = datetime.now(UTC) if now is None else now
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(
            f"the sign-off time must be a timezone-aware datetime (e.g. datetime.now(UTC)); got {now!r}."
        )
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "is not an object"
    missing = [k for k in _FIELDS if k not in record]
    if missing:
        return f"lacks {missing}"
    wrong = [k for k in _FIELDS if not isinstance(record[k], str)]
    if wrong:
        return f"has non-text {wrong}"
    if record["decision"] not in DECISIONS:
        return f"has the unknown decision {record['decision']!r}"
    return None


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder's sign-off file (POSIX ``flock``; a no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # Windows: concurrent sign-offs there rely on the atomic rename alone
        yield
        return
    fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


__all__ = ["DECISIONS", "SIGNOFFS_FILE", "add_signoff", "check_signoffs", "load_signoffs"]
