"""Validated configuration objects: pydantic models whose errors become one readable ``ConfigError``.

Shared by the training config, the family model configs and the audit policy, so a typo in any YAML file
reads the same way: which key, what was wrong, what was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from auditkit.errors import ConfigError


def _describe(error: ValidationError, what: str) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key {where!r}")
        elif item["type"] == "missing":
            parts.append(f"missing key {where!r}")
        else:
            parts.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return f"bad {what}: " + "; ".join(parts) + "."


def validate(model: type[BaseModel], values: Mapping[str, Any] | None, what: str) -> Any:
    """``model(**values)`` with pydantic's errors turned into one readable ``ConfigError``."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"bad {what}: expected a mapping of keys to values; got {type(values).__name__}.")
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, what)) from None


__all__ = ["validate"]
