"""Writers for the image corpus the folder tests generate: good files in every mode, and broken ones.

Every writer returns what it wrote (the raw integer pixels), so tests compare the loader with values
that never passed through auditkit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rgb_png(path: Path, h: int = 6, w: int = 9, seed: int = 0) -> np.ndarray:
    """An 8-bit RGB PNG covering 0 and 255; returns the H×W×3 uint8 pixels."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr[0, 0], arr[0, 1] = 0, 255
    Image.fromarray(arr).save(path)
    return arr


def gray_png(path: Path, h: int = 6, w: int = 9, seed: int = 1) -> np.ndarray:
    """An 8-bit grayscale (L) PNG; returns the H×W uint8 pixels."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


def rgba_png(path: Path, h: int = 6, w: int = 9, seed: int = 2) -> np.ndarray:
    """An RGBA PNG whose alpha spans transparent, opaque and partial values; returns H×W×4 uint8."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    arr[0, :3, 3] = (0, 255, 128)
    Image.fromarray(arr).save(path)
    return arr


def la_png(path: Path, h: int = 6, w: int = 9, seed: int = 3) -> np.ndarray:
    """A gray + alpha (LA) PNG; returns H×W×2 uint8."""
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 2), dtype=np.uint8)
    Image.frombytes("LA", (w, h), arr.tobytes()).save(path)  # fromarray's mode= is deprecated
    return arr


def palette_png(
    path: Path, h: int = 6, w: int = 9, seed: int = 4, transparent: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A palette (P) PNG with 8 colours, optionally with per-entry alpha (a tRNS chunk).

    Returns ``(palette K×3 uint8, indices H×W uint8, alpha per entry K uint8 or None)``.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    index = rng.integers(0, 8, (h, w), dtype=np.uint8)
    im = Image.frombytes("P", (w, h), index.tobytes())
    im.putpalette(palette.reshape(-1).tolist())
    if not transparent:
        im.save(path)
        return palette, index, None
    alpha = np.array([0, 255, 128, 64, 200, 255, 10, 255], dtype=np.uint8)
    im.save(path, transparency=alpha.tobytes())
    return palette, index, alpha


def gray16_png(path: Path, h: int = 6, w: int = 9, seed: int = 5) -> np.ndarray:
    """A 16-bit grayscale PNG (opens as ``I;16``) covering 0 and 65535; returns H×W uint16."""
    arr = np.random.default_rng(seed).integers(0, 65536, (h, w), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 0, 65535
    Image.fromarray(arr).save(path)
    return arr


def bilevel_png(path: Path, h: int = 6, w: int = 9, seed: int = 6) -> np.ndarray:
    """A 1-bit PNG; returns H×W bool."""
    arr = np.random.default_rng(seed).random((h, w)) > 0.5
    Image.fromarray(arr).save(path)
    return arr


def jpeg(path: Path, h: int = 6, w: int = 9, seed: int = 7, mode: str = "RGB") -> None:
    """A JPEG (RGB or CMYK); lossy, so tests compare with Pillow's own decode of the file."""
    channels = len(mode)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    Image.frombytes(mode, (w, h), arr.tobytes()).save(path, quality=90)


def float_tiff(path: Path, values: np.ndarray) -> None:
    """A 32-bit float (mode F) TIFF holding ``values`` (H×W)."""
    Image.fromarray(values.astype(np.float32)).save(path)


def int32_tiff(path: Path, values: np.ndarray) -> None:
    """A 32-bit integer (mode I) TIFF holding ``values`` (H×W)."""
    Image.fromarray(values.astype(np.int32)).save(path)


# --------------------------------------------------------------------------- bad files


def corrupt_bytes(path: Path, seed: int = 8) -> None:
    """Random bytes under an image extension: no format recognises them."""
    path.write_bytes(np.random.default_rng(seed).bytes(600))


def truncated_png(path: Path, h: int = 32, w: int = 32) -> None:
    """A valid PNG cut in half: the header parses, the pixel data ends early."""
    rgb_png(path, h, w, seed=9)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def scrambled_png(path: Path, h: int = 32, w: int = 32) -> None:
    """A PNG with an intact header and garbage in the middle of its compressed data."""
    rgb_png(path, h, w, seed=10)
    data = bytearray(path.read_bytes())
    data[100:300] = np.random.default_rng(11).bytes(200)
    path.write_bytes(bytes(data))


def zero_byte(path: Path) -> None:
    """An empty file with an image extension."""
    path.write_bytes(b"")
