"""Shapes: pixels agree with labels, planted skews are honoured, generation is deterministic.

The references are independent of the renderer: shapes are measured from the pixels with
``skimage.measure.regionprops`` and skews are checked with ``scipy.stats.chisquare``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from skimage.measure import label, regionprops

from auditkit import ConfigError
from auditkit.data import SKEW_PRESETS, Shapes, parse_skew
from auditkit.data.shapes import ATTRIBUTES, BACKGROUND, PALETTE

# Fill ratio of the bounding box: square 1, circle π/4, triangle 1/2 (with pixel-grid slack). Below
# 24 px a small shape is too few pixels for its outline to tell circle from triangle.
AREA_FACTOR = {"circle": math.pi, "square": 4.0, "triangle": 2.0}


def measure(image: np.ndarray) -> dict[str, str]:
    """Read the attributes of one H×W×3 image from its pixels alone."""
    size = image.shape[0]
    hits = {c: np.all(np.abs(image - np.array(rgb)) < 1e-6, axis=-1) for c, rgb in PALETTE.items()}
    present = [c for c, m in hits.items() if m.any()]
    assert len(present) == 1, f"expected exactly one palette colour, found {present}"
    colour = present[0]
    regions = regionprops(label(hits[colour]))
    region = max(regions, key=lambda r: r.area)
    assert region.area == hits[colour].sum(), "the shape must be one connected region"
    extent = region.extent
    shape = "square" if extent > 0.97 else "circle" if extent > 0.69 else "triangle"
    radius = math.sqrt(region.area / AREA_FACTOR[shape]) / size
    size_name = "large" if radius > 0.20 else "small"
    cx = (region.centroid[1] + 0.5) / size
    position = "left" if cx < 0.4 else "right" if cx > 0.6 else "center"
    return {"shape": shape, "colour": colour, "size": size_name, "position": position}


@pytest.mark.parametrize(("size", "noise"), [(32, 0.0), (32, 0.15), (64, 0.0), (24, 0.05)])
def test_pixels_match_labels(size: int, noise: float) -> None:
    ds = Shapes(600, size=size, seed=11, noise=noise)
    images = ds.images.permute(0, 2, 3, 1).numpy()
    table = ds.attribute_table()
    for i, row in enumerate(table):
        measured = measure(images[i])
        truth = {k: row[k] for k in ATTRIBUTES}
        assert measured == truth, f"image {i}: measured {measured}, table says {truth}"


def test_every_attribute_combination_renders_correctly() -> None:
    # Each of the 54 combinations at least a few times, including the smallest supported image.
    ds = Shapes(2000, size=24, seed=5)
    seen = {tuple(r[k] for k in ATTRIBUTES) for r in ds.attribute_table()}
    assert len(seen) == 3 * 3 * 2 * 3
    images = ds.images.permute(0, 2, 3, 1).numpy()
    for i, row in enumerate(ds.attribute_table()):
        assert measure(images[i]) == {k: row[k] for k in ATTRIBUTES}


def test_geometry_is_the_ground_truth_centre() -> None:
    ds = Shapes(300, size=64, seed=2)
    for i in range(len(ds)):
        colour = ds.label_names("colour")[i]
        mask = np.all(
            np.abs(ds.images[i].permute(1, 2, 0).numpy() - np.array(PALETTE[colour])) < 1e-6, axis=-1
        )
        (region,) = regionprops(mask.astype(np.uint8))
        # Every shape is symmetric about its vertical axis, so the centroid's x is the centre's x.
        assert abs(region.centroid[1] + 0.5 - ds.geometry["cx"][i]) < 0.5


def test_background_noise_is_gaussian_and_only_on_background() -> None:
    ds = Shapes(200, size=32, seed=3, noise=0.05)
    colours = ds.label("colour")
    palette = torch.tensor([PALETTE[c] for c in ATTRIBUTES["colour"]])
    fill = palette[colours].view(-1, 3, 1, 1)
    on_shape = (ds.images == fill).all(dim=1)
    background = ds.images.permute(0, 2, 3, 1)[~on_shape]
    assert background.shape[0] > 0.4 * 200 * 32 * 32
    # Clamping at 0/1 is negligible 10 standard deviations away from the mean.
    assert abs(float(background.mean()) - BACKGROUND) < 2e-3
    assert abs(float(background.std()) - 0.05) < 2e-3
    flat = Shapes(50, size=32, seed=3)
    flat_on_shape = (flat.images == palette[flat.label("colour")].view(-1, 3, 1, 1)).all(dim=1)
    assert torch.all(flat.images.permute(0, 2, 3, 1)[~flat_on_shape] == BACKGROUND)


def _counts(values: torch.Tensor, k: int) -> np.ndarray:
    return np.bincount(values.numpy(), minlength=k)


def test_marginal_skew_honoured_chi_square() -> None:
    p = {"circle": 0.6, "square": 0.3, "triangle": 0.1}
    ds = Shapes(20_000, size=8, seed=123, skew={"shape": p})
    observed = _counts(ds.label("shape"), 3)
    expected = 20_000 * np.array([p[v] for v in ATTRIBUTES["shape"]])
    assert chisquare(observed, expected).pvalue > 0.01
    # A different skew is clearly rejected by the same test.
    assert chisquare(observed, np.full(3, 20_000 / 3)).pvalue < 1e-6
    # The attributes left out of the spec stay uniform.
    for attr in ("colour", "size", "position"):
        k = len(ATTRIBUTES[attr])
        assert chisquare(_counts(ds.label(attr), k), np.full(k, 20_000 / k)).pvalue > 0.01


def test_conditional_skew_honoured_chi_square() -> None:
    spec = SKEW_PRESETS["demo"]
    n = 20_000
    ds = Shapes(n, size=8, seed=7, skew="demo")
    shape, colour = ds.label("shape").numpy(), ds.label("colour").numpy()
    observed = np.bincount(shape * 3 + colour, minlength=9)
    expected = np.zeros(9)
    for i, s in enumerate(ATTRIBUTES["shape"]):
        row = spec["colour|shape"].get(s, {c: 1 / 3 for c in ATTRIBUTES["colour"]})
        for j, c in enumerate(ATTRIBUTES["colour"]):
            expected[i * 3 + j] = n * spec["shape"][s] * row[c]
    assert chisquare(observed, expected).pvalue > 0.01
    # Independence of colour and shape (the unskewed joint) is clearly rejected.
    independent = np.outer(np.array(list(spec["shape"].values())), np.full(3, 1 / 3)).ravel() * n
    assert chisquare(observed, independent).pvalue < 1e-6


def test_deterministic_by_seed_across_chunks() -> None:
    a = Shapes(5000, size=16, seed=42, noise=0.1, skew="demo")
    b = Shapes(5000, size=16, seed=42, noise=0.1, skew="demo")
    c = Shapes(5000, size=16, seed=43, noise=0.1, skew="demo")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.labels, c.labels)


def test_output_contract() -> None:
    ds = Shapes(10, size=32, seed=0)
    assert ds.images.dtype == torch.float32 and ds.images.shape == (10, 3, 32, 32)
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (10, 4)
    assert list(ds.attributes) == ["shape", "colour", "size", "position"]
    image, labels = ds[3]
    assert torch.equal(image, ds.images[3]) and torch.equal(labels, ds.labels[3])
    assert ds.info["skew"] == {} and ds.info["seed"] == 0
    assert len(Shapes(0).images) == 0


def test_skew_inline_yaml_file_and_roundtrip(tmp_path) -> None:
    inline = parse_skew("{colour: {red: 0.6, green: 0.2, blue: 0.2}}")
    np.testing.assert_allclose(inline.probabilities("colour"), [0.6, 0.2, 0.2])
    f = tmp_path / "skew.yaml"
    f.write_text("shape|size:\n  small: {circle: 1.0}\n", encoding="utf-8")
    from_file = parse_skew(str(f))
    np.testing.assert_allclose(from_file.probabilities("shape", "small"), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(from_file.probabilities("shape", "large"), [1 / 3] * 3)
    assert parse_skew(from_file.to_spec()).to_spec() == from_file.to_spec()
    ds = Shapes(500, size=8, seed=1, skew=str(f))
    small = ds.label("size") == ATTRIBUTES["size"].index("small")
    assert torch.all(ds.label("shape")[small] == 0)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"color": {"red": 1.0}}, "Did you mean 'colour'"),
        ({"colour": {"purple": 1.0}}, "unknown colour value 'purple'"),
        ({"colour": {"red": 0.5, "green": 0.2}}, "sum to 0.7"),
        ({"colour": {"red": -0.5, "green": 1.5}}, "≥ 0"),
        ({"colour": {"red": "lots", "green": 1}}, "must be a number"),
        ({"colour|shape": {"hexagon": {"red": 1.0}}}, "unknown shape value 'hexagon'"),
        ({"colour|shape": {"circle": {"red": 1.0}}, "shape|colour": {"red": {"circle": 1.0}}}, "cycle"),
        ({"colour|colour": {"red": {"red": 1.0}}}, "on itself"),
        ("not-a-preset", "neither a preset"),
        ("missing.yaml", "does not exist"),
        ("{colour: [1, 2", "could not parse"),
    ],
)
def test_bad_skew_is_a_clear_config_error(spec, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        Shapes(10, skew=spec)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"n": -1}, "non-negative"), ({"size": 4}, "at least 8"), ({"noise": float("nan")}, "noise")],
)
def test_bad_parameters(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        Shapes(**kwargs)
    assert needle in str(err.value)
