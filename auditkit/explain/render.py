"""Attribution maps as pictures: heat maps, overlays on the image, and side-by-side method panels (PNG).

One colour convention everywhere (report, dashboard, CLI):

- **signed** maps (integrated gradients, DeepLift, SHAP, LIME, occlusion) use the diverging ``RdBu_r`` map
  centred on zero: red pushes the explained score up, blue pushes it down, white is neutral;
- **unsigned** maps (saliency, Grad-CAM) use the sequential ``inferno`` map from zero (black) up.

Each map is scaled by its own 99th percentile of ``|a|`` (clipped above), because magnitudes are not
comparable across methods and one hot pixel would otherwise wash out the rest. The image under an overlay
is shown in grey so the map's colours stay readable.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, works without a display
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colormaps

from auditkit.errors import DataError
from auditkit.explain.core import Attribution

SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "inferno"
PERCENTILE = 99.0


def heatmap(attribution: torch.Tensor, *, signed: bool) -> np.ndarray:
    """One map (H×W or 1×H×W) as an RGB uint8 H×W×3 image in the module's colour convention."""
    a = _plane(attribution)
    finite = np.isfinite(a)
    a = np.where(finite, a, 0.0)
    scale = np.percentile(np.abs(a), PERCENTILE) if a.size else 0.0
    scale = scale if scale > 0 else (np.abs(a).max() or 1.0)
    if signed:
        values = np.clip(a / scale, -1, 1) * 0.5 + 0.5
        rgb = colormaps[SIGNED_CMAP](values)[..., :3]
    else:
        rgb = colormaps[UNSIGNED_CMAP](np.clip(np.abs(a) / scale, 0, 1))[..., :3]
    rgb[~finite] = (0.5, 0.5, 0.5)  # NaN pixels show as flat grey, never as a strong colour
    return (rgb * 255).round().astype(np.uint8)


def overlay(
    image: torch.Tensor, attribution: torch.Tensor, *, signed: bool, alpha: float = 0.6
) -> np.ndarray:
    """``attribution`` over a grey version of ``image`` (C×H×W in ``[0, 1]``), as RGB uint8 H×W×3.

    Where the map is strong it covers the image (weight ``alpha``); where it is near zero the image shows.
    """
    img = _image_hwc(image)
    grey = img.mean(axis=2, keepdims=True).repeat(3, axis=2)
    a = _plane(attribution)
    heat = heatmap(attribution, signed=signed).astype(np.float64) / 255
    strength = np.abs(np.where(np.isfinite(a), a, 0.0))
    top = np.percentile(strength, PERCENTILE) or strength.max() or 1.0
    weight = alpha * np.clip(strength / top, 0, 1)[..., None]
    return ((1 - weight) * grey * 255 + weight * heat * 255).round().clip(0, 255).astype(np.uint8)


def overlay_png(
    image: torch.Tensor, attribution: torch.Tensor, *, signed: bool, scale: int = 4, alpha: float = 0.6
) -> bytes:
    """:func:`overlay` as PNG bytes, upscaled ``scale``× with nearest-neighbour pixels (sharp when small)."""
    from PIL import Image

    rgb = overlay(image, attribution, signed=signed, alpha=alpha)
    pil = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def method_panel(
    images: torch.Tensor,
    attributions: Mapping[str, Attribution],
    *,
    row_labels: Sequence[str] | None = None,
    max_rows: int = 8,
    dpi: int = 120,
) -> bytes:
    """Side-by-side PNG: one row per image (the image, then each method's overlay), one column per method.

    Parameters
    ----------
    images
        N×C×H×W in ``[0, 1]``: the images the attributions explain.
    attributions
        Column title → :class:`Attribution` over the same images.
    row_labels
        A label per image (e.g. "circle → predicted circle"); default the image index.
    max_rows
        At most this many images are drawn (the first ones).
    dpi
        Resolution of the PNG.
    """
    if images.ndim != 4 or not attributions:
        raise DataError("method_panel needs N×C×H×W images and at least one attribution.")
    n = min(images.shape[0], max_rows)
    for name, attr in attributions.items():
        if attr.maps.shape[0] < n or attr.maps.shape[-2:] != images.shape[-2:]:
            raise DataError(
                f"attribution {name!r} has maps of shape {tuple(attr.maps.shape)}; it must cover the "
                f"{images.shape[0]} images of size {tuple(images.shape[-2:])}."
            )
    cols = 1 + len(attributions)
    fig, axes = plt.subplots(n, cols, figsize=(1.7 * cols, 1.7 * n + 0.5), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(_image_hwc(images[i]), interpolation="nearest")
        axes[i, 0].set_ylabel(row_labels[i] if row_labels else f"image {i}", fontsize=8)
        for j, attr in enumerate(attributions.values(), start=1):
            axes[i, j].imshow(overlay(images[i], attr.maps[i], signed=attr.signed), interpolation="nearest")
            if i in attr.nonfinite:
                axes[i, j].text(0.5, 0.5, "NaN", color="black", ha="center", va="center",
                                transform=axes[i, j].transAxes, fontsize=10, weight="bold")  # fmt: skip
    axes[0, 0].set_title("image", fontsize=9)
    for j, name in enumerate(attributions, start=1):
        axes[0, j].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(
        0.5, 0.005,
        "signed maps: red raises the score, blue lowers it · unsigned maps: brighter = stronger",
        ha="center", va="bottom", fontsize=7, color="#333333",
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _plane(attribution: torch.Tensor) -> np.ndarray:
    a = attribution.detach().float().cpu()
    if a.ndim == 3:
        a = a.sum(dim=0)
    if a.ndim != 2:
        raise DataError(f"an attribution map must be H×W or C×H×W; got shape {tuple(attribution.shape)}.")
    return a.numpy().astype(np.float64)


def _image_hwc(image: torch.Tensor) -> np.ndarray:
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"an image must be C×H×W with C in (1, 3); got shape {tuple(image.shape)}.")
    img = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)
    return img.repeat(3, axis=2) if img.shape[2] == 1 else img


__all__ = ["SIGNED_CMAP", "UNSIGNED_CMAP", "heatmap", "method_panel", "overlay", "overlay_png"]
