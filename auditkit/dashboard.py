"""Helpers for the reviewers' Streamlit dashboard (``dashboards/``): store access, caching, path safety.

The pages only present; everything they show comes from here, read from the run store under
``AUDITKIT_HOME``. Streamlit is imported inside the few UI helpers only, so ``import auditkit`` stays light
and the data helpers can be tested without it.

Caching is keyed by file identity (path, size, modification time) or content hash, not by time, so a page
shows a changed audit on the next rerun and an unchanged one without reading it again. Pickers read the
store's SQLite index (ids, names, verdicts) and open only the audit that is chosen, so a page costs the same
with 20 audits as with one.

The password gate (:func:`hash_secret`, :func:`check_secret`, :func:`password_gate`): ``auditkit
dashboard`` passes the server only a salted scrypt hash of the password, in ``AUDITKIT_DASHBOARD_AUTH``;
the app compares hashes with :func:`hmac.compare_digest` before any page runs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from auditkit.errors import AuditKitError, ConfigError
from auditkit.result import SCHEMA as AUDIT_SCHEMA  # torch-free, so pages load fast

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
    """``audit.json`` as ``AuditResult.load`` reads it: JSON with the audit result's schema tag."""
    del size, mtime_ns  # only part of the cache key
    data = _parse_json(path)
    if not isinstance(data, dict) or data.get("schema") != AUDIT_SCHEMA:
        raise ConfigError(f"{path} is not an auditkit audit result (schema {AUDIT_SCHEMA}).")
    return data


def clear_caches() -> None:
    """Forget every cached read (audits, logs, galleries, diffs, renders): the next page reads files again."""
    for cached in (_load_json, _json_file, _sha256, _metrics_log, _gallery, _panel_grid, _diff, _render):
        cached.cache_clear()


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


def condition_gap_rows(data: Mapping[str, Any], corrected: bool = True) -> list[dict[str, Any]]:
    """For a conditional generator: the gap (TVD) of each attribute within each requested class.

    One row per ``attribute | condition=value`` scope: ``attribute``, ``condition`` (``shape=circle``),
    ``n`` and ``tvd`` (raw or corrected for the judge's errors); for the per-condition heat map.
    """
    rows = []
    for scope in data.get("bias", {}).get("scopes", {}).values():
        if scope.get("kind") != "condition" or not scope.get("condition"):
            continue
        gap = scope.get("gap_corrected" if corrected else "gap_raw") or {}
        rows.append(
            {
                "attribute": "×".join(scope.get("attributes") or []),
                "condition": "=".join(map(str, scope["condition"])),
                "n": scope.get("n"),
                "tvd": gap.get("tvd"),
            }
        )
    return rows


def table_height(rows: int) -> int:
    """Pixels for a Streamlit table to show ``rows`` rows without scrolling (35 px a row and the header)."""
    return 35 * (rows + 1) + 3


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


# -- store index ---------------------------------------------------------------------------------------


def finished_audits(store: Any) -> list[dict[str, Any]]:
    """Completed audits from the store's index (id, name, verdict, run, created), newest first.

    Only the SQLite index is read, never an ``audit.json``: pickers list audits at the cost of one query.
    """
    rows = [row for row in audits_table(store) if row["status"] == "completed"]
    return rows


def audit_label(row: Mapping[str, Any]) -> str:
    """How a picker names an audit: id, name and verdict."""
    return f"{row['id']}  {row['name']}  ({row['verdict'] or 'no verdict'})".replace("  ()", "")


def _read_json(path: Path) -> Any:
    return _json_file(*_identity(path))


@functools.lru_cache(maxsize=256)
def _json_file(path: str, size: int, mtime_ns: int) -> Any:
    del size, mtime_ns
    return _parse_json(path)


def _parse_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; re-run the step that wrote it.") from None


# -- training -----------------------------------------------------------------------------------------

TRAIN_KIND = "train"  # the kind auditkit.training gives its runs (RUN_KIND there)
METRICS_LOG = "metrics.jsonl"  # one JSON object per logged step (auditkit.training.trainer.METRICS_FILE)
TRAINING_SUMMARY = "training.json"
_GRID = re.compile(r"samples/step-(\d+)\.png")


def training_runs(store: Any) -> list[dict[str, Any]]:
    """Training runs from the store's index (id, name, status, created), newest first."""
    return [row for row in runs_table(store) if row["kind"] == TRAIN_KIND]


@dataclass(frozen=True)
class MetricsLog:
    """A training run's ``metrics.jsonl``: the rows by step, and lines that could not be read."""

    rows: tuple[dict[str, float], ...]
    bad_lines: tuple[int, ...]

    @property
    def losses(self) -> list[str]:
        """Logged names that are losses (``loss``, ``loss_d``, ...), in first-logged order."""
        return [name for name in self.names if name.startswith("loss")]

    @property
    def others(self) -> list[str]:
        """Other logged diagnostics (e.g. the discriminator's mean logits, a VAE's KL term)."""
        return [name for name in self.names if not name.startswith("loss") and name != "img_per_s"]

    @property
    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(k for k in row if k != "step"))
        return list(seen)


def metrics_log(store: Any, run_id: str) -> MetricsLog:
    """The run's metrics log, cached by file identity; empty when the run logged nothing yet.

    A line that is not a JSON object with a ``step`` (a log cut by a crash mid-write) is skipped and its
    number reported in ``bad_lines``, so one torn line does not hide the rest of the curve.
    """
    path = safe_path(store.home, safe_path(store.home, store.get_run(run_id).path) / METRICS_LOG)
    if not path.is_file():
        return MetricsLog((), ())
    return _metrics_log(*_identity(path))


@functools.lru_cache(maxsize=64)
def _metrics_log(path: str, size: int, mtime_ns: int) -> MetricsLog:
    del size, mtime_ns
    rows, bad = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad.append(number)
                continue
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                bad.append(number)
                continue
            rows.append({k: v for k, v in row.items() if isinstance(v, int | float) and math.isfinite(v)})
    rows.sort(key=lambda r: r["step"])
    return MetricsLog(tuple(rows), tuple(bad))


def sample_grids(store: Any, run_id: str) -> list[tuple[str, Path]]:
    """The sample grids a training run wrote, ``(label, path)``: ``step N`` in step order, then ``final``.

    Read from the store's artifact index, so a grid still being written is not listed.
    """
    folder = safe_path(store.home, store.get_run(run_id).path)
    steps, final = [], []
    for record in store.artifacts(run_id):
        match = _GRID.fullmatch(record.relpath)
        if match:
            steps.append((int(match.group(1)), record.relpath))
        elif record.relpath == "samples/final.png":
            final.append(("final", safe_path(store.home, folder / record.relpath)))
    grids = [(f"step {step}", safe_path(store.home, folder / rel)) for step, rel in sorted(steps)]
    return grids + final


def training_summary(store: Any, run_id: str) -> dict[str, Any] | None:
    """The run's ``training.json`` (written when it finishes), or ``None`` while it has none."""
    path = safe_path(store.home, safe_path(store.home, store.get_run(run_id).path) / TRAINING_SUMMARY)
    return _read_json(path) if path.is_file() else None


def config_rows(config: Mapping[str, Any]) -> list[dict[str, str]]:
    """A nested config as ``setting``/``value`` rows with dotted names (``data.source``), values as text."""
    rows: list[dict[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key in sorted(value):
                walk(f"{prefix}.{key}" if prefix else str(key), value[key])
        else:
            text = "(not set)" if value is None else value if isinstance(value, str) else json.dumps(value)
            rows.append({"setting": prefix, "value": text})

    walk("", config.get("train", config))
    return rows


# -- samples ------------------------------------------------------------------------------------------

PAGE_SIZE = 48
THUMBNAIL_PX = 96


@dataclass(frozen=True)
class Gallery:
    """The generated images an audit kept, with what the judge read on each and what was asked for.

    The audit keeps, per attribute and judged value, the first ``2 × explain_per_value`` images (in
    sampling order) that the judge read as that value (``stages/samples.safetensors``, ``kept/ATTR/V``),
    beside the judged labels of all ``n`` images (``judged``) and, for a conditional generator, the
    requested classes (``conditions``). The sample index of each kept image is therefore the position of
    the k-th image judged ``V``; :func:`sample_gallery` recovers it and checks it is consistent.

    Attributes
    ----------
    rows
        One per distinct kept image, by sample index: ``sample``, one column per audited attribute (the
        judge's reading), ``condition`` (the requested class, or ``None``), ``matches`` (whether the judge
        read the requested class; ``None`` when it cannot tell).
    thumbnails
        Sample index → ``uint8`` H×W×3 image, enlarged without smoothing.
    kept
        Attribute → judged value → the sample indices kept for it, in the order the audit kept them.
    """

    n: int
    attributes: tuple[str, ...]
    values: dict[str, tuple[str, ...]]
    condition: str | None
    class_names: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    thumbnails: dict[int, np.ndarray]
    kept: dict[str, dict[str, tuple[int, ...]]]
    judged_counts: dict[str, dict[str, int]]
    condition_counts: dict[str, int]
    condition_matches: dict[str, int]

    @property
    def conditional(self) -> bool:
        return bool(self.condition_counts)

    @property
    def checks_condition(self) -> bool:
        """Whether the judge reads the condition's attribute, so a sample can be judged as asked or not."""
        return self.conditional and self.condition in self.attributes

    def explanation_rows(self, attribute: str, per_value: int) -> list[dict[str, Any]]:
        """The images the explanation stage explained for ``attribute``, in its panel's row order.

        The stage takes the first ``per_value`` kept images of each judged value, values in index order.
        """
        rows: list[dict[str, Any]] = []
        for value, samples in self.kept.get(attribute, {}).items():
            rows += [
                {"row": len(rows) + i, "value": value, "sample": k} for i, k in enumerate(samples[:per_value])
            ]
        return rows


def sample_gallery(store: Any, audit_id: str, data: Mapping[str, Any]) -> Gallery | None:
    """The gallery of an audit's kept samples, cached by the identity of its stage files.

    ``None`` when the audit kept no samples (its stage cache was removed).

    Raises
    ------
    ConfigError
        If the stored images do not match the stored judged labels (a damaged or foreign stage file).
    """
    folder = audit_folder(store, audit_id)
    meta = safe_path(store.home, folder / "stages" / "samples.json")
    blob = safe_path(store.home, folder / "stages" / "samples.safetensors")
    if not (meta.is_file() and blob.is_file()):
        return None
    attrs = tuple(data.get("scope", {}).get("attributes", ()))
    judge_values = data.get("judge", {}).get("attributes", {})
    generator = data.get("scope", {}).get("generator", {})
    spec = (
        attrs,
        tuple(tuple(judge_values.get(a, ())) for a in attrs),
        generator.get("condition"),
        tuple(generator.get("class_names") or ()),
    )
    return _gallery(_identity(meta), _identity(blob), spec)


@functools.lru_cache(maxsize=8)
def _gallery(meta_id: tuple[str, int, int], blob_id: tuple[str, int, int], spec: tuple[Any, ...]) -> Gallery:
    from safetensors import safe_open

    attrs, value_names, condition, class_names = spec
    values = dict(zip(attrs, value_names, strict=True))
    kept = _json_file(*meta_id).get("value", {}).get("kept", {})
    thumbs: dict[int, np.ndarray] = {}
    kept_index: dict[str, dict[str, tuple[int, ...]]] = {}
    with safe_open(blob_id[0], framework="numpy") as fh:
        keys = set(fh.keys())
        judged = fh.get_tensor("judged")
        conditions = fh.get_tensor("conditions") if "conditions" in keys else None
        for j, attr in enumerate(attrs):
            for value in kept.get(attr, []):
                key = f"kept/{attr}/{value}"
                images = fh.get_tensor(key) if key in keys else np.zeros((0,))
                where = np.flatnonzero(judged[:, j] == value)
                if len(images) > len(where):
                    raise ConfigError(
                        f"{blob_id[0]} keeps {len(images)} images judged {attr}={value} but only "
                        f"{len(where)} samples were judged so; the stage file is damaged: re-run the audit."
                    )
                indices = where[: len(images)].tolist()
                kept_index.setdefault(attr, {})[values[attr][value]] = tuple(indices)
                for index, image in zip(indices, images, strict=True):
                    if index not in thumbs:
                        thumbs[index] = _thumbnail(image)
    rows = []
    for index in sorted(thumbs):
        row: dict[str, Any] = {"sample": index}
        row.update({a: _name(values[a], judged[index, j]) for j, a in enumerate(attrs)})
        row["condition"] = _name(class_names, conditions[index]) if conditions is not None else None
        row["matches"] = (
            row[condition] == row["condition"] if conditions is not None and condition in attrs else None
        )
        rows.append(row)
    judged_counts = {
        a: {name: int((judged[:, j] == v).sum()) for v, name in enumerate(values[a])}
        for j, a in enumerate(attrs)
    }
    condition_counts, condition_matches = {}, {}
    if conditions is not None:
        jc = attrs.index(condition) if condition in attrs else None
        for c, name in enumerate(class_names):
            asked = conditions == c
            condition_counts[name] = int(asked.sum())
            if jc is not None and name in values[condition]:
                condition_matches[name] = int((judged[asked, jc] == values[condition].index(name)).sum())
    return Gallery(
        n=int(judged.shape[0]),
        attributes=attrs,
        values=values,
        condition=condition if conditions is not None else None,
        class_names=class_names,
        rows=tuple(rows),
        thumbnails=thumbs,
        kept=kept_index,
        judged_counts=judged_counts,
        condition_counts=condition_counts,
        condition_matches=condition_matches,
    )


def _name(names: Sequence[str], index: Any) -> str:
    i = int(index)
    return names[i] if 0 <= i < len(names) else str(i)


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """C×H×W float in [0, 1] → H×W×3 uint8, enlarged by pixel repetition (no smoothing of small images)."""
    hwc = np.clip(np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1), 0.0, 1.0)
    if hwc.shape[-1] == 1:
        hwc = np.repeat(hwc, 3, axis=-1)
    scale = max(1, math.ceil(THUMBNAIL_PX / max(hwc.shape[:2])))
    big = np.repeat(np.repeat(hwc, scale, axis=0), scale, axis=1)
    return (big * 255.0 + 0.5).astype(np.uint8)


def filter_samples(
    rows: Sequence[Mapping[str, Any]],
    *,
    conditions: Sequence[str] | None = None,
    attribute: str | None = None,
    values: Sequence[str] | None = None,
    matches: bool | None = None,
) -> list[Mapping[str, Any]]:
    """Rows whose requested class is in ``conditions``, whose judged ``attribute`` is in ``values`` and
    whose judged-as-asked flag equals ``matches``; ``None`` leaves a criterion out."""
    out = []
    for row in rows:
        if conditions is not None and row.get("condition") not in conditions:
            continue
        if attribute is not None and values is not None and row.get(attribute) not in values:
            continue
        if matches is not None and row.get("matches") is not matches:
            continue
        out.append(row)
    return out


def paginate(items: Sequence[Any], page: int, page_size: int = PAGE_SIZE) -> tuple[list[Any], int]:
    """The items of 1-based ``page`` (clamped to the pages that exist) and the number of pages (≥ 1)."""
    pages = max(1, math.ceil(len(items) / page_size))
    page = min(max(int(page), 1), pages)
    return list(items[(page - 1) * page_size : page * page_size]), pages


# -- explanations -------------------------------------------------------------------------------------

VERDICT_TEXT = {
    "trustworthy": "TRUSTWORTHY",
    "questionable": "QUESTIONABLE",
    "failed": "FAILED",
}


def audit_image(store: Any, folder: str | os.PathLike[str], relpath: str) -> Path | None:
    """An image artifact of an audit (``relpath`` as ``audit.json`` names it), checked to stay inside the
    store; ``None`` if the file is missing."""
    path = safe_path(store.home, safe_path(store.home, folder) / relpath)
    return path if path.is_file() else None


def check_rows(checks: Mapping[str, Any]) -> list[dict[str, str]]:
    """An explanation verdict's checks as ``check``/``value`` rows (numbers to 4 significant digits)."""
    rows = []
    for name, value in sorted(checks.items()):
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, float):
            text = f"{value:.4g}"
        elif value is None:
            text = "(not computed)"
        else:
            text = str(value)
        rows.append({"check": name.replace("_", " "), "value": text})
    return rows


def ranking_rows(ranking: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Latent attribution ranking: input, its share of the total effect, mean |effect| and signed effect."""
    return [
        {
            "rank": i,
            "input": r.get("input"),
            "share": r.get("share"),
            "mean |effect|": r.get("mean_abs"),
            "mean effect": r.get("mean_signed"),
        }
        for i, r in enumerate(ranking, start=1)
    ]


@dataclass(frozen=True)
class PanelGrid:
    """Pixel bands of a stored explanation panel: one per image row and per column (image, then methods)."""

    rows: tuple[tuple[int, int], ...]
    columns: tuple[tuple[int, int], ...]


def panel_grid(path: str | os.PathLike[str], n_rows: int, n_columns: int) -> PanelGrid | None:
    """Locate the cells of an explanation panel PNG (``auditkit.explain.method_panel``), or ``None``.

    The panel stores no coordinates, so they are read off the picture: each cell is an image framed by
    its axes, separated from the next by white space; titles, row labels and the caption are thin bands
    of text. The ``n_rows`` tallest non-white horizontal bands are the rows, and within the first row the
    ``n_columns`` widest vertical bands are the columns. ``None`` when the bands do not look like such a
    grid (the page then shows the whole panel).
    """
    return _panel_grid(*_identity(Path(path)), n_rows, n_columns)


@functools.lru_cache(maxsize=32)
def _panel_grid(path: str, size: int, mtime_ns: int, n_rows: int, n_columns: int) -> PanelGrid | None:
    del size, mtime_ns
    ink = _ink(path)
    rows = _largest_bands(ink.any(axis=1), n_rows)
    if rows is None:
        return None
    columns = _largest_bands(ink[rows[0][0] : rows[0][1]].any(axis=0), n_columns)
    if columns is None:
        return None
    return PanelGrid(rows, columns)


def _ink(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    return (pixels < 250).any(axis=2)


def _largest_bands(mask: np.ndarray, count: int) -> tuple[tuple[int, int], ...] | None:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    bands = list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
    if count < 1 or len(bands) < count:
        return None
    bands.sort(key=lambda b: b[1] - b[0], reverse=True)
    chosen, rest = bands[:count], bands[count:]
    sizes = [b - a for a, b in chosen]
    # cells are equal in size; text bands (titles, labels, caption) are much thinner than a cell
    if min(sizes) < 0.9 * max(sizes) or (rest and rest[0][1] - rest[0][0] > 0.5 * min(sizes)):
        return None
    return tuple(sorted(chosen))


def panel_cell(path: str | os.PathLike[str], grid: PanelGrid, row: int, column: int) -> np.ndarray:
    """One cell of a panel (``column`` 0 is the image, then one per method) as an H×W×3 ``uint8`` array."""
    from PIL import Image

    (top, bottom), (left, right) = grid.rows[row], grid.columns[column]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").crop((left, top, right, bottom)))


# -- compare ------------------------------------------------------------------------------------------


def audit_diff(store: Any, before: str, after: str) -> Any:
    """``auditkit.report.diff_audits`` of two audits of the store, cached by their files' identities."""
    paths = [safe_path(store.home, audit_folder(store, a) / "audit.json") for a in (before, after)]
    for audit_id, path in zip((before, after), paths, strict=True):
        if not path.is_file():
            raise ConfigError(f"audit {audit_id} has no audit.json yet (still running, or it failed).")
    return _diff(_identity(paths[0]), _identity(paths[1]))


@functools.lru_cache(maxsize=16)
def _diff(before: tuple[str, int, int], after: tuple[str, int, int]) -> Any:
    from auditkit.report.diff import diff_audits
    from auditkit.result import AuditResult

    results = [AuditResult(_load_json(*identity), Path(identity[0]).parent) for identity in (before, after)]
    return diff_audits(*results)


def metric_change_rows(diff: Any, only_changed: bool = False) -> list[dict[str, Any]]:
    """One row per compared metric: before and after with intervals, change, direction, regression."""
    rows = []
    for m in diff.metrics:
        if only_changed and not m.changed:
            continue
        if m.old is None or m.new is None:
            direction = "only before" if m.new is None and m.old is not None else "only after"
            direction = "not computable" if m.old is None and m.new is None else direction
        else:
            direction = "worse" if m.worse else "better" if m.delta else "same"
        rows.append(
            {
                "regression": "REGRESSION" if m.regression else "",
                "metric": m.metric,
                "scope": m.scope,
                "before": m.old,
                "before interval": _interval_text(m.old_interval),
                "after": m.new,
                "after interval": _interval_text(m.new_interval),
                "change": m.delta,
                "direction": direction,
                "intervals overlap": {None: "", True: "yes", False: "no"}[m.overlap],
            }
        )
    # regressions first, then the rest in the diff's order
    rows.sort(key=lambda r: not r["regression"])
    return rows


def finding_change_rows(diff: Any) -> list[dict[str, Any]]:
    """Findings whose severity changed, appeared or disappeared, regressions first (as the diff orders)."""
    return [
        {
            "regression": "REGRESSION" if f.regression else "",
            "change": f.kind,
            "metric": f.metric,
            "scope": f.scope,
            "before": SEVERITY_TEXT.get(f.old_severity or "", "(none)"),
            "after": SEVERITY_TEXT.get(f.new_severity or "", "(none)"),
            "message": f.message,
        }
        for f in diff.findings
    ]


def verdict_change_rows(diff: Any) -> list[dict[str, Any]]:
    """Attribution methods whose quality verdict changed."""
    return [
        {
            "attribute": e.attribute,
            "method": e.method,
            "before": e.old or "(none)",
            "after": e.new or "(none)",
            "worse": {None: "", True: "yes", False: "no"}[e.worse],
        }
        for e in diff.explanations
    ]


def _interval_text(interval: Sequence[float] | None) -> str:
    return f"[{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""


# -- password gate ------------------------------------------------------------------------------------

AUTH_ENV = "AUDITKIT_DASHBOARD_AUTH"  # what the server receives: a salted hash, never the password
PASSWORD_ENV = "AUDITKIT_DASHBOARD_PASSWORD"  # where `auditkit dashboard` looks for a password by default
MIN_PASSWORD_LENGTH = 8
# scrypt at n=2**14, r=8 (RFC 7914's interactive setting): about 16 MiB and tens of ms per guess
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """A salted scrypt hash of ``secret``, as text: ``scrypt$n$r$p$salt$hash`` (hex)."""
    if not secret:
        raise ConfigError("the dashboard password is empty; set a password of at least 8 characters.")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return "$".join(
        ["scrypt", str(_SCRYPT["n"]), str(_SCRYPT["r"]), str(_SCRYPT["p"]), salt.hex(), digest.hex()]
    )


def check_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` hashes to ``encoded`` (from :func:`hash_secret`), compared in constant time.

    Raises
    ------
    ConfigError
        If ``encoded`` is not such a hash (the gate then stays shut).
    """
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        expected = bytes.fromhex(digest)
        got = hashlib.scrypt(
            secret.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        raise ConfigError(
            f"{AUTH_ENV} does not hold a password hash made by `auditkit dashboard`; start the dashboard "
            "with `auditkit dashboard --password-env VAR` (or --token) instead of setting it by hand."
        ) from None
    return hmac.compare_digest(got, expected)


# -- Streamlit pieces shared by the pages (streamlit imported lazily) ---------------------------------


def password_gate() -> bool:
    """Ask for the password when the server has one (``AUDITKIT_DASHBOARD_AUTH``); ``True`` once given.

    Nothing of the store is read before the password is right. A wrong one shows an error.
    """
    import streamlit as st

    encoded = os.environ.get(AUTH_ENV, "").strip()
    if not encoded or st.session_state.get("_auditkit_authenticated") == encoded:
        return True
    st.title("auditkit dashboard")
    st.caption("This dashboard is protected: enter the password (or the token printed when it started).")
    with st.form("login"):
        given = st.text_input("Password", type="password", key="_auditkit_password")
        submitted = st.form_submit_button("Open")
    if submitted:
        try:
            ok = check_secret(given, encoded)
        except AuditKitError as exc:
            st.error(str(exc))
            return False
        if ok:
            st.session_state["_auditkit_authenticated"] = encoded
            st.session_state.pop("_auditkit_password", None)
            st.rerun()
        st.error("Wrong password.")
    return False


def page_store() -> Any:
    """The store for a page, or ``None`` after showing the empty-store message."""
    import streamlit as st

    store = open_store(dashboard_home())
    if store is None or not store.list_runs() and not store.list_audits():
        st.info(EMPTY_STORE_MESSAGE)
        return None
    return store


def pick_audit(
    store: Any, *, key: str = "audit", label: str = "Audit", index: int = 0
) -> tuple[str, dict[str, Any], Path] | None:
    """A selectbox of finished audits (newest first, from the index); loads only the chosen one.

    Returns ``(id, data, folder)``, or ``None`` after a message when there is nothing to show.
    """
    import streamlit as st

    audits = finished_audits(store)
    if not audits:
        st.info("No finished audits yet: run `auditkit demo` or `auditkit audit`, then reload this page.")
        return None
    labels = {row["id"]: audit_label(row) for row in audits}
    chosen = st.selectbox(
        label, list(labels), index=min(index, len(labels) - 1), format_func=labels.__getitem__, key=key
    )
    try:
        data = load_audit(store, chosen)
    except AuditKitError as exc:
        st.error(str(exc))
        return None
    if data is None:
        st.error(
            f"audit {chosen} is marked completed but its audit.json is missing; "
            "run `auditkit store check` to find what happened to its folder."
        )
        return None
    return chosen, data, audit_folder(store, chosen)
