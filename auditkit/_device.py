"""Where tensors go: turn what a user wrote (None, "auto", "cpu", "cuda:1") into a checked device."""

from __future__ import annotations

import torch

from auditkit.errors import ConfigError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when present, else CPU; anything else is checked and returned.

    Raises ``ConfigError`` for a name torch does not know or a CUDA device on a machine without one.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"device {device!r} is not a torch device ({exc}); use 'auto', 'cpu' or 'cuda'."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but this torch sees no CUDA device; use 'cpu' or 'auto'."
        )
    return dev


__all__ = ["resolve_device"]
