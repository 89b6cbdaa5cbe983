"""The outcome of an audit: ``AuditResult``, the versioned JSON an audit writes and everything else reads.

Kept apart from :mod:`auditkit.audit` (which runs audits and needs torch) so that reports, the dashboard and
``auditkit diff`` read results without importing torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditkit._atomic import json_bytes
from auditkit.errors import ConfigError

SCHEMA = "auditkit.audit-result/1"
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "audit-result-1.schema.json"


@dataclass
class AuditResult:
    """An audit's outcome: versioned JSON-safe data plus where its files are.

    Attributes
    ----------
    data
        The whole result (``SCHEMA`` in ``data["schema"]``); see ``auditkit/schemas/``.
    path
        The audit's folder, when it was stored.
    """

    data: dict[str, Any]
    path: Path | None = None

    SCHEMA = SCHEMA

    @property
    def verdict(self) -> str:
        """``pass``, ``warn`` or ``fail``: the worst finding's severity."""
        return str(self.data["findings"]["verdict"])

    @property
    def audit_id(self) -> str | None:
        return self.data["runtime"].get("audit_id")

    @property
    def findings(self) -> list[dict[str, Any]]:
        """The policy's findings, worst first."""
        return list(self.data["findings"]["findings"])

    def at_least(self, severity: str) -> list[dict[str, Any]]:
        """Findings of ``severity`` (``warn``/``fail``) or worse."""
        order = ("pass", "warn", "fail")
        return [f for f in self.findings if order.index(f["severity"]) >= order.index(severity)]

    def to_json(self, *, runtime: bool = True) -> bytes:
        """The result as stable JSON bytes; ``runtime=False`` drops ids, dates and timings."""
        data = dict(self.data) if runtime else {k: v for k, v in self.data.items() if k != "runtime"}
        return json_bytes(data)

    def save(self, path: str | Path) -> Path:
        """Write the JSON to ``path`` atomically."""
        from auditkit._atomic import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_json())
        return Path(path)

    def validate(self) -> None:
        """Check the data against the published JSON Schema; ``ConfigError`` names the first violation."""
        import jsonschema

        schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(self.data)
        )
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            raise ConfigError(f"audit result does not follow {SCHEMA_FILE.name} at {where}: {error.message}")

    @classmethod
    def load(cls, path: str | Path) -> AuditResult:
        """Read ``audit.json`` (or an audit folder holding it); ``ConfigError`` for anything else."""
        p = Path(path)
        if p.is_dir():
            p = p / "audit.json"
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read audit result {p}: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise ConfigError(f"{p} is not an auditkit audit result (schema {SCHEMA}).")
        return cls(data, p.parent)


__all__ = ["SCHEMA", "SCHEMA_FILE", "AuditResult"]
