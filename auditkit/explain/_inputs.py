"""The image check every attribution entry point shares: a non-empty N×C×H×W float tensor in [0, 1]."""

from __future__ import annotations

from typing import Any

import torch

from auditkit.errors import DataError

RANGE_TOLERANCE = 1e-4  # interpolation and resizing overshoot [0, 1] by a few ulps; more is a wrong scale


def check_images(images: Any, *, float32_only: bool = False, purpose: str = "") -> torch.Tensor:
    """``images`` detached as float32, or a ``DataError`` naming what is wrong and the fix.

    ``float32_only`` rejects other float dtypes instead of converting them (LIME reproduces the ``lime``
    package bit for bit, which a silent float64 → float32 cast would break). ``purpose`` ends the NaN message
    (e.g. ``" before LIME"``).
    """
    if not isinstance(images, torch.Tensor):
        raise DataError(f"images must be a torch tensor N×C×H×W in [0, 1]; got {type(images).__name__}.")
    if images.ndim == 3:
        raise DataError(
            f"images must be N×C×H×W; got one image of shape {tuple(images.shape)}. Use images[None]."
        )
    if images.ndim != 4 or 0 in images.shape:
        raise DataError(f"images must be a non-empty N×C×H×W tensor; got shape {tuple(images.shape)}.")
    if not images.is_floating_point() or (float32_only and images.dtype != torch.float32):
        raise DataError(
            f"images must be float32 in [0, 1]; got {images.dtype}. Use images.float() (divide uint8 by 255)."
        )
    images = images.detach().float()
    finite = torch.isfinite(images.flatten(1)).all(dim=1)
    if not finite.all():
        bad = (~finite).nonzero().flatten().tolist()
        raise DataError(f"images {bad[:10]} contain NaN or infinite values; drop or repair them{purpose}.")
    lo, hi = images.min().item(), images.max().item()
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise DataError(
            f"images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. Rescale them (e.g. (x + 1) / 2 "
            "for [-1, 1] images)."
        )
    return images


__all__ = ["RANGE_TOLERANCE", "check_images"]
