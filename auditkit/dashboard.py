"""Helpers for the reviewers' Streamlit dashboard (``dashboards/``): store access, caching, path safety.

The pages only present; everything they show comes from here, read from the run store under
``AUDITKIT_HOME``. Streamlit is imported inside the few UI helpers only, so ``import auditkit`` stays light
and the data helpers can be tested without it.

Caching is keyed by file identity (path, size, modification time) or content hash, not by time, so a page
shows a changed audit on the next rerun and an unchanged one without reading it again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auditkit.errors import ConfigError

EMPTY_STORE_MESSAGE = "No runs yet: run `auditkit demo` to make one, then reload this page."
SEVERITY_TEXT = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}
QUALITY_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
REPORT_FORMATS = {
    "html": ("report.html", "text/html"),
    "pdf": ("report.pdf", "application/pdf"),
    "json": ("audit.json", "application/json"),
    "modelcard": ("MODEL_CARD.md", "text/markdown"),
}


def dashboard_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The store's home: ``home``, else ``$AUDITKIT_HOME``, else auditkit's default (absolute, resolved)."""
    from auditkit.store import default_home

    return (Path(home).expanduser() if home is not None else default_home()).resolve()


def safe_path(home: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` (absolute, or relative to ``home``) resolved, if it lies inside ``home``.

    Symbolic links are followed before the check, so a link inside the home pointing outside is refused.

    Raises
    ------
    ConfigError
        If the path leaves the home (``../``, an absolute path elsewhere, a link out).
    """
    root = Path(home).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(
            f"the dashboard only reads files inside the store {root}; {str(path)!r} leads outside it"
        )
    return resolved


def open_store(home: str | os.PathLike[str]) -> Any:
    """The ``RunStore`` at ``home``, or ``None`` when no store exists there yet (nothing is created)."""
    from auditkit.store import RunStore

    root = Path(home)
    # Opening a RunStore creates the home; a viewer pointed at the wrong folder should not litter it.
    if not (root / "index.sqlite").is_file():
        return None
    return RunStore(root)


def runs_table(store: Any) -> list[dict[str, Any]]:
    """One row per run (id, kind, name, status, created), newest first."""
    runs = sorted(store.list_runs(), key=lambda r: r.created_at, reverse=True)
    return [
        {"id": r.id, "kind": r.kind, "name": r.name or "", "status": r.status, "created": r.created_at}
        for r in runs
    ]


def audits_table(store: Any) -> list[dict[str, Any]]:
    """One row per audit (id, name, status, verdict, run, created), newest first."""
    audits = sorted(store.list_audits(), key=lambda a: a.created_at, reverse=True)
    return [
        {
            "id": a.id,
            "name": a.name or "",
            "status": a.status,
            "verdict": a.verdict or "",
            "run": a.run_id or "",
            "created": a.created_at,
        }
        for a in audits
    ]


def verdict_counts(audits: list[Mapping[str, Any]]) -> dict[str, int]:
    """How many audits have each verdict (``none`` for those still running or failed before one)."""
    counts: dict[str, int] = {}
    for row in audits:
        key = row.get("verdict") or "none"
        counts[key] = counts.get(key, 0) + 1
    return counts


def audit_folder(store: Any, audit_id: str) -> Path:
    """The folder of an audit, checked to lie inside the store's home."""
    return safe_path(store.home, store.get_audit(audit_id).path)


def _identity(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def load_audit(store: Any, audit_id: str) -> dict[str, Any] | None:
    """An audit's ``audit.json`` data, or ``None`` if it has none yet (still running, or it failed).

    Cached by the file's path, size and modification time.
    """
    path = safe_path(store.home, audit_folder(store, audit_id) / "audit.json")
    if not path.is_file():
        return None
    return _load_json(*_identity(path))


@functools.lru_cache(maxsize=64)
def _load_json(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    del size, mtime_ns  # only part of the cache key
    from auditkit.audit import AuditResult

    return AuditResult.load(path).data


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, cached by its path, size and modification time."""
    return _sha256(*_identity(Path(path)))


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- bias ---------------------------------------------------------------------------------------------


def _values(scope: Mapping[str, Any]) -> list[str]:
    values = scope.get("values") or scope.get("reference", {}).get("values") or []
    return ["×".join(map(str, v)) if isinstance(v, list) else str(v) for v in values]


def bias_summary(data: Mapping[str, Any], corrected: bool = True) -> list[dict[str, Any]]:
    """One row per bias scope: kind, n, TVD with its interval, representation ratio, adjusted p-value."""
    rows = []
    gap_key = "gap_corrected" if corrected else "gap_raw"
    for name, scope in data.get("bias", {}).get("scopes", {}).items():
        gap = scope.get(gap_key, {})
        interval = scope.get("gap_corrected_interval", {}).get("tvd") if corrected else None
        test = scope.get("test", {})
        rows.append(
            {
                "scope": name,
                "kind": scope.get("kind", ""),
                "condition": "=".join(map(str, scope["condition"])) if scope.get("condition") else "",
                "n": scope.get("n"),
                "tvd": gap.get("tvd"),
                "tvd_low": interval[0] if interval else None,
                "tvd_high": interval[1] if interval else None,
                "ratio": gap.get("ratio"),
                "p_adjusted": test.get("p_adjusted"),
                "significant": test.get("significant"),
            }
        )
    return rows


def share_rows(scope: Mapping[str, Any], corrected: bool = True) -> list[dict[str, Any]]:
    """Generated shares (raw or corrected for the judge's errors) with intervals, beside the reference."""
    shares = scope.get("shares", {})
    key = "corrected" if corrected else "raw"
    reference = scope.get("reference", {}).get("shares") or []
    rows = []
    for i, value in enumerate(_values(scope)):
        rows.append(
            {
                "value": value,
                "share": _at(shares.get(key), i),
                "low": _at(shares.get(f"{key}_low"), i),
                "high": _at(shares.get(f"{key}_high"), i),
                "reference": _at(reference, i),
            }
        )
    return rows


def _at(seq: Any, i: int) -> Any:
    return seq[i] if isinstance(seq, list) and i < len(seq) else None


def findings_rows(data: Mapping[str, Any], prefix: str | None = None) -> list[dict[str, Any]]:
    """The policy's findings (optionally only metrics starting with ``prefix``), worst first.

    Severity is spelled out (``FAIL``/``WARN``/``PASS``) so it never rests on colour alone; evidence is a
    compact JSON string for a table cell.
    """
    rows = []
    for f in data.get("findings", {}).get("findings", []):
        if prefix and not str(f.get("metric", "")).startswith(prefix):
            continue
        interval = f.get("interval")
        rows.append(
            {
                "severity": SEVERITY_TEXT.get(f.get("severity"), str(f.get("severity"))),
                "metric": f.get("metric"),
                "scope": f.get("scope"),
                "value": f.get("value"),
                "threshold": f.get("threshold"),
                "interval": f"[{interval[0]:.4g}, {interval[1]:.4g}]" if _pair(interval) else "",
                "message": f.get("message", ""),
                "evidence": json.dumps(f.get("evidence") or {}, sort_keys=True, default=str),
            }
        )
    return rows


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value)


# -- quality ------------------------------------------------------------------------------------------


def quality_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """FID, KID, precision, recall, density, coverage: the estimate and its bootstrap interval."""
    quality = data.get("quality") or {}
    ci = quality.get("ci", {})
    rows = []
    for metric in QUALITY_METRICS:
        if metric not in quality and metric not in ci:
            continue
        interval = ci.get(metric, {})
        rows.append(
            {
                "metric": metric,
                "estimate": quality.get(metric, interval.get("estimate")),
                "low": interval.get("low"),
                "high": interval.get("high"),
                "confidence": interval.get("confidence"),
            }
        )
    return rows


def quality_group_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-group quality (one row per attribute value the judge read), with real and generated counts."""
    rows = []
    for group, by_value in (data.get("quality") or {}).get("groups", {}).items():
        for value, metrics in by_value.items():
            rows.append({"group": group, "value": value, **metrics})
    return rows


# -- reports ------------------------------------------------------------------------------------------


def render_cached(folder: str | os.PathLike[str], fmt: str) -> bytes:
    """``render_report`` of an audit folder, cached by the SHA-256 of ``audit.json`` and ``signoffs.json``.

    Sign-offs are part of the key because reports print them.
    """
    folder = Path(folder)
    signoffs = folder / "signoffs.json"
    key = (file_sha256(folder / "audit.json"), file_sha256(signoffs) if signoffs.is_file() else "")
    return _render(str(folder), fmt, key)


@functools.lru_cache(maxsize=32)
def _render(folder: str, fmt: str, key: tuple[str, str]) -> bytes:
    del key
    from auditkit.report import render_report

    return render_report(folder, fmt)


def verify_status(store: Any, folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``verify`` of each ``manifest.json`` in the audit folder or one level below it."""
    from auditkit.report import verify

    folder = Path(folder)
    rows = []
    for manifest in sorted([*folder.glob("manifest.json"), *folder.glob("*/manifest.json")]):
        manifest = safe_path(store.home, manifest)
        try:
            result = verify(manifest)
        except ConfigError as exc:
            rows.append({"manifest": str(manifest.relative_to(folder)), "ok": False, "detail": str(exc)})
            continue
        detail = {
            "changed": list(result.changed),
            "missing": list(result.missing),
            "rejected": list(result.rejected),
            "signature": result.signature,
            "manifest_intact": result.manifest_intact,
        }
        rows.append(
            {
                "manifest": str(manifest.relative_to(folder)),
                "ok": bool(result.ok),
                "detail": json.dumps(detail, default=str),
            }
        )
    return rows


# -- Streamlit pieces shared by the pages (streamlit imported lazily) ---------------------------------


def page_store() -> Any:
    """The store for a page, or ``None`` after showing the empty-store message."""
    import streamlit as st

    store = open_store(dashboard_home())
    if store is None or not store.list_runs() and not store.list_audits():
        st.info(EMPTY_STORE_MESSAGE)
        return None
    return store


def pick_audit(store: Any) -> tuple[str, dict[str, Any], Path] | None:
    """A selectbox of audits (newest first) that have results; returns ``(id, data, folder)``."""
    import streamlit as st

    audits = [row for row in audits_table(store) if load_audit(store, row["id"]) is not None]
    if not audits:
        st.info("No finished audits yet: run `auditkit demo` or `auditkit audit`, then reload this page.")
        return None
    labels = {row["id"]: f"{row['id']}  {row['name']}  ({row['verdict'] or 'no verdict'})" for row in audits}
    chosen = st.selectbox("Audit", list(labels), format_func=labels.__getitem__, key="audit")
    data = load_audit(store, chosen)
    assert data is not None  # filtered above
    return chosen, data, audit_folder(store, chosen)
