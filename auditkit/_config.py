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


def describe_parse_error(exc: Exception) -> str:
    """A YAML or JSON parse error on one line: what is wrong and where.

    PyYAML's own text spans several lines with a caret drawing, which the CLI's one-line ``error:`` cannot
    show; its ``problem`` and marks say the same in a sentence.
    """
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        return " ".join(str(exc).split())
    text = f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None:
        text += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
    return text


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


__all__ = ["describe_parse_error", "validate"]
