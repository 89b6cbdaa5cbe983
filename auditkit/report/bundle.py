"""A report folder: the reports of an audit written together with the manifest that vouches for them.

``auditkit report`` and the demo both publish this way, so a folder of reports is always covered by a
``manifest.json`` that ``auditkit verify`` checks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditkit.errors import ConfigError
from auditkit.report.integrity import MANIFEST_FILE, write_manifest
from auditkit.report.render import write_report

REPORT_NAMES = {
    "html": "report.html",
    "pdf": "report.pdf",
    "md": "report.md",
    "json": "report.json",
    "modelcard": "model-card.md",
}


@dataclass(frozen=True)
class ReportBundle:
    """What :func:`write_reports` wrote: one path per format, and the manifest covering the folder."""

    reports: dict[str, Path]
    manifest: Path
    covered: tuple[str, ...]


def write_reports(
    result: Any,
    formats: Sequence[str] = ("html", "pdf"),
    out: str | os.PathLike[str] | None = None,
    *,
    template_dir: str | os.PathLike[str] | None = None,
    sign_key: str | os.PathLike[str] | bytes | None = None,
) -> ReportBundle:
    """Render ``result`` in each format into ``out`` and write (or extend) its ``manifest.json``.

    Parameters
    ----------
    result
        An :class:`~auditkit.audit.AuditResult` loaded from its folder, or that folder.
    formats
        Any of ``html``, ``pdf``, ``md``, ``json``, ``modelcard``; files are named as in ``REPORT_NAMES``.
    out
        The report folder (created if missing); default the audit's own folder. There the manifest covers
        the reports, ``audit.json``, every artifact and the sign-offs; elsewhere the reports written there
        (HTML and PDF embed everything they show). Reports rendered earlier into the same folder stay covered.
    template_dir, sign_key
        A copy of ``reports/`` with your templates; an Ed25519 private key to sign the manifest.

    Raises
    ------
    ConfigError
        An unknown format, a result without a folder and no ``out``, or a damaged existing manifest.
    """
    from auditkit.result import AuditResult

    loaded = result if isinstance(result, AuditResult) else AuditResult.load(result)
    unknown = [f for f in formats if f not in REPORT_NAMES]
    if unknown or not formats:
        raise ConfigError(
            f"unknown report format(s) {unknown or list(formats)}; choose from {', '.join(REPORT_NAMES)}."
        )
    folder = Path(loaded.path) if loaded.path is not None else None
    if out is None and folder is None:
        raise ConfigError("this audit result has no folder; pass out= to say where the reports go.")
    target = Path(out) if out is not None else folder
    assert target is not None
    target.mkdir(parents=True, exist_ok=True)
    covered = _already_covered(target)
    reports: dict[str, Path] = {}
    for fmt in dict.fromkeys(formats):
        path = write_report(loaded, fmt, target / REPORT_NAMES[fmt], template_dir=template_dir)
        reports[fmt] = path
        covered.add(path.name)
        if fmt == "md":
            covered.update(p.relative_to(target).as_posix() for p in (target / "charts").glob("*.png"))
    if folder is not None and target.resolve() == folder.resolve():
        covered.add("audit.json")
        covered.update(a["path"] for a in loaded.data["manifest"]["artifacts"])
        if (folder / "signoffs.json").is_file():
            covered.add("signoffs.json")
    files = tuple(sorted(covered))
    manifest = write_manifest(target, files, sign_key=sign_key)
    return ReportBundle(reports=reports, manifest=manifest, covered=files)


def _already_covered(target: Path) -> set[str]:
    manifest = target / MANIFEST_FILE
    if not manifest.is_file():
        return set()
    try:
        listed = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        return {p for p in listed if (target / p).is_file()}
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{manifest} is damaged; delete it and render the reports again.") from None
