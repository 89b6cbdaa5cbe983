"""ImageFolder against pixels and labels written by the tests themselves, and a corpus of broken files.

References are independent of the loader: the integers handed to Pillow (exact up to float32 rounding for
8-bit, 1e-6 for 16-bit), alpha compositing and luma computed in float64 NumPy, Pillow's own decode for
lossy JPEG, torch's antialiased interpolate and scikit-image's resize for resizing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.transform import resize as sk_resize

from auditkit.data.folder import ImageFolder, load_image
from auditkit.data.imageset import ImageSet
from auditkit.errors import AuditKitError, ConfigError, DataError

sys.path.insert(0, str(Path(__file__).parent))
import _bad_images as bad  # noqa: E402 - the helper sits next to this file, not in a package

H, W = 6, 9  # not square, so a transposed H/W shows
WHITE = np.ones(3)
LUMA = np.array([0.299, 0.587, 0.114])


def composite(rgb: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Straight-alpha "over" in float64: rgb, alpha in [0, 1], H×W×3 and H×W."""
    a = alpha[..., None]
    return rgb * a + bg * (1.0 - a)


def chw(hwc: np.ndarray) -> np.ndarray:
    return np.moveaxis(hwc, -1, 0)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- good corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """One folder with every supported mode; returns it and the expected RGB (H×W×3 float64) per file."""
    root = tmp_path_factory.mktemp("good")
    expected: dict[str, np.ndarray] = {}
    expected["rgb.png"] = bad.rgb_png(root / "rgb.png") / 255.0
    gray = bad.gray_png(root / "gray.png") / 255.0
    expected["gray.png"] = np.repeat(gray[..., None], 3, axis=2)
    rgba = bad.rgba_png(root / "rgba.png") / 255.0
    expected["rgba.png"] = composite(rgba[..., :3], rgba[..., 3], WHITE)
    la = bad.la_png(root / "la.png") / 255.0
    expected["la.png"] = composite(np.repeat(la[..., :1], 3, axis=2), la[..., 1], WHITE)
    palette, index, _ = bad.palette_png(root / "palette.png")
    expected["palette.png"] = palette[index] / 255.0
    palette, index, alpha = bad.palette_png(root / "palette_trns.png", seed=14, transparent=True)
    assert alpha is not None
    expected["palette_trns.png"] = composite(palette[index] / 255.0, alpha[index] / 255.0, WHITE)
    g16 = bad.gray16_png(root / "gray16.png") / 65535.0
    expected["gray16.png"] = np.repeat(g16[..., None], 3, axis=2)
    bits = bad.bilevel_png(root / "bilevel.png").astype(np.float64)
    expected["bilevel.png"] = np.repeat(bits[..., None], 3, axis=2)
    bad.jpeg(root / "photo.jpg")
    expected["photo.jpg"] = np.asarray(Image.open(root / "photo.jpg").convert("RGB")) / 255.0
    bad.jpeg(root / "cmyk.jpg", mode="CMYK")
    with Image.open(root / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        expected["cmyk.jpg"] = np.asarray(im.convert("RGB")) / 255.0
    return root, expected


def test_every_mode_decodes_to_the_written_values(corpus: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, expected = corpus
    with Image.open(root / "gray16.png") as im:
        assert im.mode == "I;16"  # the case the test is about: 16-bit must be scaled by 65535, not 255
    with Image.open(root / "palette_trns.png") as im:
        assert im.mode == "P" and "transparency" in im.info
    ds = ImageFolder(root)
    assert isinstance(ds, ImageSet)
    assert ds.ids == sorted(expected)
    assert ds.images.dtype == torch.float32 and ds.images.shape == (len(expected), 3, H, W)
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.labels.shape == (len(expected), 0) and ds.attributes == {}
    for i, name in enumerate(ds.ids):
        # 8-bit: exact to float32 rounding of v/255; 16-bit and composites: float32 vs float64, 1e-6.
        atol = 1e-7 if name in ("rgb.png", "gray.png", "palette.png", "bilevel.png") else 1e-6
        np.testing.assert_allclose(ds.images[i].numpy(), chw(expected[name]), rtol=0, atol=atol, err_msg=name)


def test_alpha_composited_over_a_chosen_background(corpus: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = corpus
    bg = np.array([0.2, 0.4, 0.6])
    rgba = np.asarray(Image.open(root / "rgba.png")) / 255.0
    got = load_image(root / "rgba.png", background=tuple(bg))
    np.testing.assert_allclose(got.numpy(), chw(composite(rgba[..., :3], rgba[..., 3], bg)), atol=1e-6)
    assert got[:, 0, 0].tolist() == pytest.approx(bg.tolist())  # alpha 0: the background itself


def test_one_channel_uses_bt601_luma(corpus: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, expected = corpus
    ds = ImageFolder(root, channels=1)
    assert ds.images.shape == (len(expected), 1, H, W)
    for i, name in enumerate(ds.ids):
        ref = expected[name] @ LUMA  # gray sources have r = g = b, so luma gives the gray back
        np.testing.assert_allclose(ds.images[i, 0].numpy(), ref, rtol=0, atol=1e-6, err_msg=name)
    gray = np.asarray(Image.open(root / "gray.png")) / 255.0
    np.testing.assert_allclose(ds.images[ds.ids.index("gray.png"), 0].numpy(), gray, atol=1e-7)


def test_float_and_int32_tiffs_follow_the_documented_rule(tmp_path: Path) -> None:
    values = np.linspace(0.0, 1.0, H * W).reshape(H, W)
    bad.float_tiff(tmp_path / "f.tif", values)
    ints = np.linspace(0, 65535, H * W).round().reshape(H, W)
    bad.int32_tiff(tmp_path / "i.tif", ints)
    ds = ImageFolder(tmp_path, channels=1)
    assert ds.ids == ["f.tif", "i.tif"]
    np.testing.assert_allclose(ds.images[0, 0].numpy(), values, atol=1e-7)  # F: taken as is
    np.testing.assert_allclose(ds.images[1, 0].numpy(), ints / 65535.0, atol=1e-6)  # I: read as 16-bit


def test_file_discovery_order_and_what_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    bad.rgb_png(tmp_path / "b.png")
    bad.rgb_png(tmp_path / "UPPER.PNG")
    bad.rgb_png(tmp_path / "sub" / "a.png")
    bad.corrupt_bytes(tmp_path / ".hidden.png")  # would fail if it were read
    bad.corrupt_bytes(tmp_path / ".cache" / "x.png")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path)
    assert ds.ids == ["UPPER.PNG", "b.png", "sub/a.png"]  # sorted relative POSIX paths
    assert ds.attributes == {}  # mixed depths: no class convention
    assert ds.info["files"] == 3 and ds.info["skipped"] == 0


# --------------------------------------------------------------------------- labels


def test_celeba_attribute_file(tmp_path: Path) -> None:
    rows = {"a.png": (1, -1, 1), "b.png": (-1, -1, 1), "c.png": (1, 1, -1), "d.png": (-1, 1, -1)}
    for i, name in enumerate(rows):
        bad.rgb_png(tmp_path / name, seed=i)
    lines = ["4", "Smiling Male Young"] + [
        f"{n}  {'  '.join(f'{v:2d}' for v in vals)}" for n, vals in rows.items()
    ]
    attr = tmp_path / "list_attr_celeba.txt"
    attr.write_text("\r\n".join(lines) + "\r\n")

    ds = ImageFolder(tmp_path, attr)
    assert ds.attributes == {"Smiling": ("-1", "1"), "Male": ("-1", "1"), "Young": ("-1", "1")}
    for j, attribute in enumerate(["Smiling", "Male", "Young"]):
        assert ds.label_names(attribute) == [str(rows[n][j]) for n in ds.ids]
    assert ds.info["labels_from"] == "celeba" and ds.info["attributes_file"] == str(attr)

    # Declared vocabulary: selects and orders the columns, and its value order gives the indices.
    ds = ImageFolder(tmp_path, attr, attributes={"Male": ["1", "-1"], "Smiling": None})
    assert list(ds.attributes) == ["Male", "Smiling"]
    assert ds.attributes["Male"] == ("1", "-1")
    assert ds.label("Male").tolist() == [0 if rows[n][1] == 1 else 1 for n in ds.ids]
    assert ds.label_names("Smiling") == [str(rows[n][0]) for n in ds.ids]


def test_csv_attribute_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ["a.png", "b.png", "sub/c.png", "sub/d.png"]:
        bad.rgb_png(tmp_path / name)
    attr = write_csv(
        tmp_path / "labels.csv",
        "filename,colour,age\n"
        "./a.png,red,10\n"  # a leading ./ and
        "b.png, blue ,2\n"  # spaces around a value are tolerated
        "sub\\c.png,red,7\n"  # Windows separators too
        "sub/d.png,green,2\n",
    )
    ds = ImageFolder(tmp_path, attr)
    assert ds.ids == ["a.png", "b.png", "sub/c.png", "sub/d.png"]
    assert ds.attributes == {"colour": ("blue", "green", "red"), "age": ("2", "7", "10")}  # numeric order
    assert ds.label_names("colour") == ["red", "blue", "red", "green"]
    assert ds.label_names("age") == ["10", "2", "7", "2"]
    assert ds.info["labels_from"] == "csv"

    ds = ImageFolder(tmp_path, attr, attributes={"colour": ["red", "green", "blue", "purple"]})
    assert ds.attributes == {"colour": ("red", "green", "blue", "purple")}
    assert ds.label("colour").tolist() == [0, 2, 0, 1]
    assert ds.shares("colour")["purple"] == 0.0


def test_subfolders_become_the_class_attribute(tmp_path: Path) -> None:
    for cls, n in [("dogs", 2), ("cats", 1), ("birds", 2)]:
        (tmp_path / cls).mkdir()
        for i in range(n):
            bad.rgb_png(tmp_path / cls / f"{i}.png", seed=i)
    ds = ImageFolder(tmp_path)
    assert ds.ids == ["birds/0.png", "birds/1.png", "cats/0.png", "dogs/0.png", "dogs/1.png"]
    assert ds.attributes == {"class": ("birds", "cats", "dogs")}
    assert ds.label("class").tolist() == [0, 0, 1, 2, 2]
    ds = ImageFolder(tmp_path, attributes={"class": ["dogs", "cats", "birds"]})
    assert ds.label("class").tolist() == [2, 2, 1, 0, 0]


def test_extra_rows_can_be_ignored_for_a_partial_folder(tmp_path: Path) -> None:
    bad.rgb_png(tmp_path / "a.png")
    attr = write_csv(tmp_path / "labels.csv", "file,smiling\na.png,yes\nnot_here.png,no\n")
    ds = ImageFolder(tmp_path, attr, extra_rows="ignore")
    assert ds.ids == ["a.png"] and ds.info["extra_rows_ignored"] == 1


# --------------------------------------------------------------------------- bad cases

Case = Callable[[Path], dict[str, Any]]


def _three_good(root: Path) -> None:
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        bad.rgb_png(root / name, h=8, w=8, seed=i)


def _labelled(root: Path, csv_text: str, **kwargs: Any) -> dict[str, Any]:
    _three_good(root)
    return {"root": root, "attributes_file": write_csv(root / "attrs.csv", csv_text), **kwargs}


def _with(writer: Callable[[Path], Any], name: str) -> Case:
    def build(root: Path) -> dict[str, Any]:
        _three_good(root)
        writer(root / name)
        return {"root": root}

    return build


def _size_odd(**kwargs: Any) -> Case:
    def build(root: Path) -> dict[str, Any]:
        _three_good(root)
        bad.rgb_png(root / "odd.png", h=12, w=10)
        return {"root": root, **kwargs}

    return build


def _empty_folder(root: Path) -> dict[str, Any]:
    (root / "notes.txt").write_text("no images here")
    return {"root": root}


def _celeba_bad_count(root: Path) -> dict[str, Any]:
    _three_good(root)
    (root / "list_attr_celeba.txt").write_text("5\nSmiling\na.png 1\nb.png -1\nc.png 1\n")
    return {"root": root, "attributes_file": root / "list_attr_celeba.txt", "skip_bad": True}


def _bomb(root: Path) -> dict[str, Any]:
    _three_good(root)
    bad.rgb_png(root / "huge.png", h=64, w=64)
    return {"root": root}


def _tiff(writer: Callable[[Path, np.ndarray], None], values: np.ndarray) -> Case:
    def build(root: Path) -> dict[str, Any]:
        writer(root / "odd.tif", values)
        return {"root": root}

    return build


BAD_CASES: dict[str, tuple[Case, type[AuditKitError], list[str]]] = {
    "corrupt bytes": (
        _with(bad.corrupt_bytes, "noise.png"),
        DataError,
        ["noise.png", "not an image", "skip_bad"],
    ),
    "truncated png": (
        _with(bad.truncated_png, "cut.png"),
        DataError,
        ["cut.png", "is truncated", "skip_bad"],
    ),
    "scrambled png": (
        _with(bad.scrambled_png, "mangled.png"),
        DataError,
        ["mangled.png", "corrupt", "skip_bad"],
    ),
    "zero-byte file": (_with(bad.zero_byte, "empty.png"), DataError, ["empty.png", "0 bytes", "skip_bad"]),
    "missing label row": (
        lambda r: _labelled(r, "filename,smiling\na.png,yes\nb.png,no\n"),
        DataError,
        ["c.png", "has no row in attrs.csv", "add a row", "skip_bad"],
    ),
    "row for a missing file": (
        lambda r: _labelled(r, "filename,smiling\na.png,yes\nb.png,no\nc.png,no\nghost.png,yes\n"),
        DataError,
        ["ghost.png", "line 5", "not an image file", "extra_rows='ignore'"],
    ),
    "unknown attribute value": (
        lambda r: _labelled(
            r, "filename,smiling\na.png,yes\nb.png,no\nc.png,maybe\n", attributes={"smiling": ["no", "yes"]}
        ),
        DataError,
        ["c.png", "smiling='maybe'", "line 4", "['no', 'yes']", "skip_bad"],
    ),
    "empty cell": (
        lambda r: _labelled(r, "filename,smiling,age\na.png,yes,1\nb.png,no,2\nc.png,,3\n"),
        DataError,
        ["c.png", "empty value for attribute 'smiling'", "line 4", "skip_bad"],
    ),
    "wrong number of fields": (
        lambda r: _labelled(r, "filename,smiling,age\na.png,yes,1\nb.png,no\nc.png,no,3\n"),
        DataError,
        ["b.png", "has 1 value on line 3", "names 2 attributes", "skip_bad"],
    ),
    "duplicate row": (
        lambda r: _labelled(r, "filename,smiling\na.png,yes\nb.png,no\nc.png,no\na.png,no\n"),
        DataError,
        ["a.png", "two rows", "lines 2 and 5", "skip_bad"],
    ),
    "headerless csv": (
        lambda r: _labelled(r, "a.png,yes\nb.png,no\nc.png,no\n"),
        DataError,
        ["attrs.csv", "looks like a data row", "add a header"],
    ),
    "celeba count mismatch (raises even with skip_bad)": (
        _celeba_bad_count,
        DataError,
        ["list_attr_celeba.txt", "says 5 images", "has 3 rows"],
    ),
    "missing attribute file": (
        lambda r: (_three_good(r), {"root": r, "attributes_file": r / "nope.csv"})[1],
        DataError,
        ["nope.csv", "does not exist"],
    ),
    "empty folder": (_empty_folder, DataError, ["no image files", "1 other file ignored", "point root"]),
    "nonexistent root": (lambda r: {"root": r / "missing"}, DataError, ["missing", "does not exist"]),
    "root is a file": (
        lambda r: (bad.rgb_png(r / "a.png"), {"root": r / "a.png"})[1],
        DataError,
        ["a.png", "not a directory"],
    ),
    "size mismatch, on_size_mismatch='error'": (
        _size_odd(size=(8, 8), on_size_mismatch="error"),
        DataError,
        ["odd.png", "12×10", "8×8", "on_size_mismatch='resize'", "skip_bad"],
    ),
    "size mismatch, no declared size (raises even with skip_bad)": (
        _size_odd(skip_bad=True),
        DataError,
        ["odd.png", "12×10", "a.png", "8×8", "size=(H, W)"],
    ),
    "float tiff out of [0, 1]": (
        _tiff(bad.float_tiff, np.linspace(-1.0, 2.0, 12).reshape(3, 4)),
        DataError,
        ["odd.tif", "floats from -1 to 2", "[0, 1]", "skip_bad"],
    ),
    "int32 tiff beyond 16 bits": (
        _tiff(bad.int32_tiff, np.linspace(0, 70000, 12).reshape(3, 4)),
        DataError,
        ["odd.tif", "0 to 70000", "16-bit", "skip_bad"],
    ),
    "decompression bomb": (_bomb, DataError, ["huge.png", "too large", "MAX_IMAGE_PIXELS", "skip_bad"]),
    "unknown declared attribute": (
        lambda r: _labelled(
            r, "filename,smiling\na.png,yes\nb.png,no\nc.png,no\n", attributes={"Smiling": None}
        ),
        ConfigError,
        ["'Smiling'", "attrs.csv", "['smiling']"],
    ),
    "attributes without a source": (
        lambda r: (_three_good(r), {"root": r, "attributes": {"smiling": None}})[1],
        ConfigError,
        ["no attributes_file", "class subfolders"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_each_bad_case_has_its_own_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    build, error, needles = BAD_CASES[case]
    kwargs = build(tmp_path)
    if case == "decompression bomb":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64×64 > 2×1000 pixels: Pillow refuses
    root = kwargs.pop("root")
    attr = kwargs.pop("attributes_file", None)
    with pytest.raises(error) as info:
        ImageFolder(root, attr, **kwargs)
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"size": (0, 8)}, "size must be"),
        ({"size": (8, 8, 8)}, "size must be"),
        ({"on_size_mismatch": "crop"}, "on_size_mismatch"),
        ({"background": (2.0, 0.0, 0.0)}, "background"),
        ({"format": "json"}, "format"),
        ({"extra_rows": "drop"}, "extra_rows"),
        ({"attributes": {"class": "cats"}}, "non-empty list"),
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, kwargs: dict[str, Any], needle: str) -> None:
    bad.rgb_png(tmp_path / "a.png")
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        ImageFolder(tmp_path, **kwargs)


def test_several_label_problems_are_reported_together(tmp_path: Path) -> None:
    _three_good(tmp_path)
    attr = write_csv(tmp_path / "attrs.csv", "filename,smiling\na.png,\n")
    with pytest.raises(DataError, match="3 images") as info:
        ImageFolder(tmp_path, attr)
    assert all(name in str(info.value) for name in ["a.png", "b.png", "c.png"])


# --------------------------------------------------------------------------- skip_bad


def test_skip_bad_keeps_exactly_the_good_images(tmp_path: Path) -> None:
    good = {
        "a.png": bad.rgb_png(tmp_path / "a.png", h=8, w=8, seed=1),
        "b.png": bad.rgb_png(tmp_path / "b.png", 8, 8, 2),
    }
    bad.corrupt_bytes(tmp_path / "noise.png")
    bad.truncated_png(tmp_path / "cut.png", h=8, w=8)
    bad.zero_byte(tmp_path / "empty.png")
    bad.rgb_png(tmp_path / "unlabelled.png", h=8, w=8)
    bad.rgb_png(tmp_path / "maybe.png", h=8, w=8)
    bad.rgb_png(tmp_path / "big.png", h=12, w=12)
    rows = [
        "a.png,yes",
        "b.png,no",
        "noise.png,yes",
        "cut.png,no",
        "empty.png,no",
        "maybe.png,maybe",
        "big.png,no",
    ]
    attr = write_csv(
        tmp_path / "attrs.csv", "filename,smiling\n" + "\n".join([*rows, "ghost.png,yes"]) + "\n"
    )

    with pytest.warns(UserWarning, match=r"skipped 7 .* loaded 2 of 8 image files") as record:
        ds = ImageFolder(
            tmp_path,
            attr,
            size=(8, 8),
            on_size_mismatch="error",
            attributes={"smiling": ["no", "yes"]},
            skip_bad=True,
        )
    assert len(record) == 1 and record[0].filename == __file__  # stacklevel points at the caller
    assert ds.ids == ["a.png", "b.png"]
    for i, name in enumerate(ds.ids):
        np.testing.assert_allclose(ds.images[i].numpy(), chw(good[name] / 255.0), atol=1e-7)
    assert ds.label_names("smiling") == ["yes", "no"]
    reasons = {s.path: s.reason for s in ds.skipped}
    expected = {
        "noise.png": "not an image",
        "cut.png": "truncated",
        "empty.png": "0 bytes",
        "unlabelled.png": "no row",
        "maybe.png": "'maybe'",
        "big.png": "12×12",
        "ghost.png": "not an image file in the folder",
    }
    assert set(reasons) == set(expected)
    for name, needle in expected.items():
        assert needle in reasons[name], (name, reasons[name])
    assert ds.info["skipped"] == 7 and ds.info["loaded"] == 2 and ds.info["files"] == 8


def test_skip_bad_with_nothing_left_raises(tmp_path: Path) -> None:
    bad.corrupt_bytes(tmp_path / "noise.png")
    bad.zero_byte(tmp_path / "empty.png")
    with pytest.raises(DataError, match="all 2 image files .* were skipped"):
        ImageFolder(tmp_path, skip_bad=True)


# --------------------------------------------------------------------------- resize


def _smooth_rgb(h: int, w: int) -> np.ndarray:
    # Smooth content: two antialiasing filters (torch's triangle, skimage's Gaussian) agree on it, while
    # on white noise they differ by design.
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    rgb = np.stack([x, y, 0.5 + 0.4 * np.sin(2 * np.pi * (x + y))], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def test_resize_matches_torch_and_skimage(tmp_path: Path) -> None:
    Image.fromarray(_smooth_rgb(40, 40)).save(tmp_path / "big.png")
    small = _smooth_rgb(32, 32)
    Image.fromarray(small).save(tmp_path / "small.png")
    ds = ImageFolder(tmp_path, size=(32, 32))
    assert ds.images.shape == (2, 3, 32, 32) and ds.info["resized"] == 1

    decoded = np.asarray(Image.open(tmp_path / "big.png")).astype(np.float32) / 255.0
    ref = F.interpolate(
        torch.from_numpy(chw(decoded).copy())[None], size=(32, 32), mode="bilinear", antialias=True
    )[0]
    np.testing.assert_allclose(ds.images[0].numpy(), ref.numpy(), rtol=0, atol=1e-6)
    sk = sk_resize(decoded.astype(np.float64), (32, 32, 3), order=1, anti_aliasing=True)
    assert np.abs(ds.images[0].numpy() - chw(sk)).mean() < 0.02  # different filters, same picture
    np.testing.assert_allclose(ds.images[1].numpy(), chw(small / 255.0), atol=1e-7)  # right size: untouched


def test_info_records_the_load(tmp_path: Path) -> None:
    _three_good(tmp_path)
    ds = ImageFolder(tmp_path, size=8, channels=1, progress=False)
    assert ds.info == {
        "source": "folder",
        "root": str(tmp_path),
        "attributes_file": None,
        "labels_from": "none",
        "size": [8, 8],
        "on_size_mismatch": "resize",
        "channels": 1,
        "files": 3,
        "loaded": 3,
        "skipped": 0,
        "resized": 0,
        "extra_rows_ignored": 0,
    }


def test_truncated_images_are_refused_even_after_weasyprint_is_imported(tmp_path: Path) -> None:
    # WeasyPrint switches Pillow's LOAD_TRUNCATED_IMAGES on at import (a PDF report in the same process).
    import weasyprint  # noqa: F401
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated|corrupt"):
        ImageFolder(tmp_path, progress=False)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left as it was
