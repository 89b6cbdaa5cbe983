"""Digits against scikit-learn's own arrays and scikit-image's bilinear resize."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import resize
from sklearn.datasets import load_digits

from auditkit import ConfigError, Digits


def test_native_size_equals_sklearn_arrays() -> None:
    raw = load_digits()
    ds = Digits(size=8)
    assert ds.images.shape == (1797, 1, 8, 8)
    np.testing.assert_allclose(ds.images[:, 0].numpy(), raw.images / 16.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.label("digit").numpy(), raw.target)
    assert ds.label_names("digit")[:5] == [str(t) for t in raw.target[:5]]


@pytest.mark.parametrize("size", [32, 28, 64])
def test_upsampling_matches_skimage_bilinear(size: int) -> None:
    raw = load_digits()
    ds = Digits(size=size)
    # skimage's order-1 resize uses the same half-pixel centres; tolerance covers float32 vs float64.
    ref = np.stack(
        [
            resize(im / 16.0, (size, size), order=1, mode="edge", anti_aliasing=False)
            for im in raw.images[:200]
        ]
    )
    np.testing.assert_allclose(ds.images[:200, 0].numpy(), ref, rtol=0, atol=1e-6)


def test_rgb_and_invert() -> None:
    gray = Digits(size=16)
    rgb = Digits(size=16, channels=3, invert=True)
    assert rgb.images.shape == (1797, 3, 16, 16)
    for c in range(3):
        np.testing.assert_allclose(rgb.images[:, c].numpy(), 1.0 - gray.images[:, 0].numpy(), atol=1e-7)
    assert gray.shares("digit") == pytest.approx(
        {str(d): float((load_digits().target == d).mean()) for d in range(10)}
    )


@pytest.mark.parametrize(("kwargs", "needle"), [({"size": 4}, "at least 8"), ({"channels": 2}, "1 or 3")])
def test_bad_parameters(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Digits(**kwargs)
