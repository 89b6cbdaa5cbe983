"""Where the top-level ``dashboards/`` and ``reports/`` folders are, in a source tree or an installed package.

A wheel carries them as ``auditkit/_bundled/<name>`` (see ``pyproject.toml``); a source checkout or an
editable install has them beside the ``auditkit`` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from auditkit.errors import AuditKitError

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: Literal["dashboards", "reports"]) -> Path:
    """The folder holding the dashboard app (``"dashboards"``) or the report templates (``"reports"``).

    Raises
    ------
    AuditKitError
        When neither the installed copy nor the source-tree copy exists (a broken install).
    """
    if name not in ("dashboards", "reports"):
        raise AuditKitError(f"unknown resource folder {name!r}; choose 'dashboards' or 'reports'.")
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise AuditKitError(
        f"auditkit's {name}/ folder is missing from {_PACKAGE}; reinstall auditkit "
        "(pip install -c constraints.txt .) from a complete source tree."
    )
