"""How many rows of an expanded input fit in memory at once.

Methods that expand their inputs (integrated-gradients steps, occlusion windows, LIME and SHAP samples)
evaluate the model on many more images than they were given. They split that work so one batch stays under
a byte budget, the same rule for every method, so a user sets one number (``memory_budget``) for them all.
"""

from __future__ import annotations

import math
import os

from auditkit.errors import ConfigError

DEFAULT_BUDGET = 512 * 2**20  # 512 MiB: fits a laptop; on a GPU users raise it
_ENV = "AUDITKIT_MEMORY_BUDGET"
_ACTIVATION_FACTOR = 8  # allowance for a small CNN's activations per input byte, forward pass


def memory_budget(budget: int | float | str | None = None) -> int:
    """The budget in bytes: ``budget`` when given, else ``$AUDITKIT_MEMORY_BUDGET``, else 512 MiB.

    Strings may carry a unit: ``"256MB"``, ``"2GiB"``, ``"1e9"``.
    """
    raw = budget if budget is not None else os.environ.get(_ENV)
    if raw is None:
        return DEFAULT_BUDGET
    value = _parse_bytes(raw)
    if value < 2**20:
        raise ConfigError(f"memory_budget must be at least 1 MiB; got {raw!r}.")
    return value


def rows_per_batch(bytes_per_row: int, budget: int | float | str | None = None, *, grad: bool = True) -> int:
    """How many inputs of ``bytes_per_row`` bytes to evaluate at once under ``budget`` (at least 1).

    ``grad`` reserves room for the backward pass as well as the forward activations.
    """
    if bytes_per_row <= 0:
        raise ConfigError(f"bytes_per_row must be positive; got {bytes_per_row}.")
    factor = _ACTIVATION_FACTOR * (2 if grad else 1)
    return max(1, memory_budget(budget) // (bytes_per_row * factor))


_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}  # fmt: skip


def _parse_bytes(raw: int | float | str) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"memory_budget must be a number of bytes or a size like '512MB'; got {raw!r}.")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise ConfigError(f"memory_budget must be finite; got {raw!r}.")
        return int(raw)
    text = str(raw).strip().lower().replace(" ", "")
    number = text.rstrip("kmgib")
    unit = text[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if unit not in _UNITS or not math.isfinite(value):
        raise ConfigError(
            f"memory_budget {raw!r} is not a size; write bytes or a size like '512MB' or '2GiB'."
        )
    return int(value * _UNITS[unit])


__all__ = ["DEFAULT_BUDGET", "memory_budget", "rows_per_batch"]
