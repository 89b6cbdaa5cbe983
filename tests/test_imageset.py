"""ImageSet: the image/label contract every data source and generator output is held to."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from auditkit import ConfigError, DataError, ImageSet

VOCAB = {"colour": ["red", "green"], "size": ["small", "medium", "large"]}


def make(n: int = 6) -> ImageSet:
    images = torch.rand(n, 3, 8, 8)
    labels = torch.stack([torch.arange(n) % 2, torch.arange(n) % 3], dim=1)
    return ImageSet(images, labels, VOCAB, info={"source": "test"})


def test_views_agree_with_labels() -> None:
    ds = make()
    assert ds.label_names("size") == ["small", "medium", "large"] * 2
    assert ds.shares("colour") == {"red": 0.5, "green": 0.5}
    assert ds.attribute_table()[1] == {"id": "1", "colour": "green", "size": "medium"}
    sub = ds.subset([0, 3])
    assert sub.ids == ["0", "3"] and torch.equal(sub.images, ds.images[[0, 3]])
    assert sub.label_names("colour") == ["red", "green"]
    assert ds.image_shape == (3, 8, 8)


def test_dataloader_batches() -> None:
    ds = make(10)
    images, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert torch.equal(images, ds.images[:4]) and torch.equal(labels, ds.labels[:4])


@pytest.mark.parametrize(
    ("images", "needle"),
    [
        (torch.full((2, 3, 4, 4), float("nan")), "NaN"),
        (torch.full((2, 3, 4, 4), 1.5), "[0, 1]"),
        (torch.zeros((2, 3, 4, 4)) - 1, "(x + 1) / 2"),
        (torch.zeros((2, 4, 4)), "N×C×H×W"),
        (torch.zeros((2, 3, 4, 4), dtype=torch.float64), "float32"),
        (torch.zeros((2, 2, 4, 4)), "1 or 3 channels"),
    ],
)
def test_bad_images_are_rejected(images: torch.Tensor, needle: str) -> None:
    with pytest.raises(DataError) as err:
        ImageSet(images, torch.zeros((images.shape[0], 0), dtype=torch.long), {})
    assert needle in str(err.value)


def test_bad_labels_are_rejected() -> None:
    images = torch.rand(2, 3, 4, 4)
    with pytest.raises(DataError, match="shape"):
        ImageSet(images, torch.zeros((2, 1), dtype=torch.long), VOCAB)
    with pytest.raises(DataError, match="'size' must index its 3 values"):
        ImageSet(images, torch.tensor([[0, 0], [1, 3]]), VOCAB)
    with pytest.raises(DataError, match="one id per image"):
        ImageSet(images, torch.tensor([[0, 0], [1, 2]]), VOCAB, ids=["a"])
    with pytest.raises(ConfigError, match="unknown attribute 'shape'"):
        make().shares("shape")
