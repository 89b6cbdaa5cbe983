"""Rendering of attribution maps: the colour convention, overlays, NaN handling and the method panel PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

from auditkit import DataError
from auditkit.explain import explain
from auditkit.explain.render import heatmap, method_panel, overlay, overlay_png


def test_signed_maps_diverge_around_zero() -> None:
    a = torch.tensor([[-2.0, 0.0, 2.0, 100.0]])  # 100 lies above the 99th percentile scale: clipped
    rgb = heatmap(a, signed=True)
    scale = np.percentile([2.0, 0.0, 2.0, 100.0], 99)
    expected = colormaps["RdBu_r"](np.clip(np.array([-2.0, 0.0, 2.0, 100.0]) / scale, -1, 1) * 0.5 + 0.5)
    np.testing.assert_array_equal(rgb[0], (expected[:, :3] * 255).round().astype(np.uint8))
    assert rgb[0, 3, 0] > rgb[0, 3, 2]  # strong positive is red
    assert rgb[0, 0, 2] >= rgb[0, 0, 0]  # negative leans blue
    assert rgb[0, 1].min() > 230  # zero is near white


def test_unsigned_maps_are_sequential_from_black() -> None:
    rgb = heatmap(torch.tensor([[0.0, 0.5, 1.0]]), signed=False)
    expected = colormaps["inferno"](np.array([0.0, 0.5, 1.0]) / np.percentile([0, 0.5, 1.0], 99))
    np.testing.assert_array_equal(rgb[0], (expected[:, :3].clip(0, 1) * 255).round().astype(np.uint8))
    assert rgb[0, 0].max() < 10  # zero is black


def test_nan_pixels_render_grey_and_zero_maps_show_the_image() -> None:
    a = torch.tensor([[float("nan"), 1.0], [0.0, -1.0]])
    rgb = heatmap(a, signed=True)
    assert tuple(rgb[0, 0]) == (128, 128, 128)
    image = torch.rand(3, 2, 2)
    out = overlay(image, torch.zeros(1, 2, 2), signed=True)
    grey = (image.mean(dim=0).numpy() * 255).round()
    np.testing.assert_allclose(out[..., 0], grey, atol=1)  # no attribution: the grey image, untouched


def test_overlay_png_and_panel_decode(trained_judge, eval_images) -> None:
    x = eval_images[:3]
    attrs = {m: explain(trained_judge, x, None, m, attribute="shape") for m in ("saliency", "grad_cam")}
    png = overlay_png(x[0], attrs["saliency"].maps[0], signed=False, scale=4)
    assert Image.open(io.BytesIO(png)).size == (128, 128)
    panel = Image.open(io.BytesIO(method_panel(x, attrs, row_labels=["a", "b", "c"])))
    assert panel.format == "PNG" and panel.size[0] > panel.size[1] * 0.6 and panel.size[1] > 300
    with pytest.raises(DataError, match="must cover"):
        method_panel(torch.rand(3, 3, 16, 16), attrs)
