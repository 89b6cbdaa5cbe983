"""Where the top-level ``dashboards/``, ``reports/`` and ``configs/`` folders are, in a checkout or a wheel.

A wheel carries them as ``auditkit/_bundled/<name>`` (see ``pyproject.toml``); a source checkout or an
editable install has them beside the ``auditkit`` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from auditkit.errors import AuditKitError

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: Literal["dashboards", "reports", "configs"]) -> Path:
    """The folder holding the dashboard app, the report templates or the example training configs.

    Raises
    ------
    AuditKitError
        When neither the installed copy nor the source-tree copy exists (a broken install).
    """
    if name not in ("dashboards", "reports", "configs"):
        raise AuditKitError(f"unknown resource folder {name!r}; choose 'dashboards', 'reports' or 'configs'.")
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise AuditKitError(
        f"auditkit's {name}/ folder is missing from {_PACKAGE}; reinstall auditkit "
        "(pip install -c constraints.txt .) from a complete source tree."
    )
