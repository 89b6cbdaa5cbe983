"""Labelled sample grids: what a data set looks like, with each image's attributes written under it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from auditkit._atomic import atomic_path  # noqa: E402
from auditkit.data.imageset import ImageSet  # noqa: E402
from auditkit.errors import ConfigError  # noqa: E402


def preview_figure(
    ds: ImageSet,
    n: int = 36,
    *,
    columns: int | None = None,
    attributes: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """A grid of the first ``n`` images, each captioned with its attribute values.

    Parameters
    ----------
    ds
        The data set.
    n
        How many images (at most ``len(ds)``).
    columns
        Grid width; default near-square.
    attributes
        Which attributes to caption (default: all, at most four).
    title
        Figure title; default describes the set and its observed shares.
    """
    n = min(n, len(ds))
    if n <= 0:
        raise ConfigError("cannot preview an empty data set; ask for at least one image.")
    names = list(attributes) if attributes is not None else list(ds.attributes)[:4]
    for name in names:
        if name not in ds.attributes:
            raise ConfigError(
                f"cannot caption unknown attribute {name!r}; this set has {list(ds.attributes)}."
            )
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    cell = 1.35
    caption_lines = max(len(names), 1)
    title = title if title is not None else _describe(ds)
    height = rows * (cell + 0.13 * caption_lines) + 0.16 * (title.count("\n") + 1)
    # Constrained layout leaves exactly the room the title and the captions need.
    fig = plt.figure(figsize=(columns * cell, height), dpi=110, layout="constrained")
    grid = fig.add_gridspec(rows, columns)
    captions = {a: ds.label_names(a)[:n] for a in names}
    for i in range(n):
        ax = fig.add_subplot(grid[i // columns, i % columns])
        image = ds.images[i].permute(1, 2, 0).numpy()
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("\n".join(captions[a][i] for a in names), fontsize=6.5, linespacing=1.1)
    fig.suptitle(title, fontsize=8.5)
    return fig


def save_preview(ds: ImageSet, path: str | Path, n: int = 36, **options) -> Path:
    """Write :func:`preview_figure` to ``path`` (PNG, PDF or SVG by suffix), atomically."""
    path = Path(path)
    if path.suffix.lower() not in {".png", ".pdf", ".svg"}:
        raise ConfigError(f"preview output {str(path)!r} must end in .png, .pdf or .svg.")
    if not path.parent.is_dir():
        raise ConfigError(f"folder {str(path.parent)!r} for the preview does not exist; create it first.")
    fig = preview_figure(ds, n, **options)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".").lower(), bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _describe(ds: ImageSet) -> str:
    c, h, w = ds.image_shape
    head = f"{ds.info.get('source', type(ds).__name__)}: {len(ds)} images, {c}×{h}×{w}"
    lines = [head]
    for name in list(ds.attributes)[:4]:
        shares = ds.shares(name)
        lines.append(f"{name}: " + ", ".join(f"{v} {s:.0%}" for v, s in shares.items()))
    return "\n".join(lines)
