"""``ImageSet``: the one in-memory form every data source produces.

Images cross module boundaries as ``torch.float32`` in ``[0, 1]``, shape ``N×C×H×W``. Labels are one
integer column per attribute (``N×A``, ``int64``) indexing that attribute's vocabulary, so
``attributes["colour"][labels[i, j]]`` is the name of image ``i``'s colour.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from auditkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class SkippedFile:
    """A file that ``skip_bad=True`` left out, and why."""

    path: str
    reason: str


class ImageSet(Dataset):
    """Images, their attribute labels and the attribute vocabulary.

    Parameters
    ----------
    images
        ``float32`` tensor in ``[0, 1]``, shape ``N×C×H×W``.
    labels
        ``int64`` tensor, shape ``N×A``: one column per attribute, each entry an index into that
        attribute's vocabulary.
    attributes
        Ordered mapping from attribute name to its value names; its order is the column order of
        ``labels``.
    ids
        One identifier per image (a file name, or an index for generated data).
    info
        Provenance: the parameters that built the set (seed, skew, source folder...).
    skipped
        Files left out by ``skip_bad=True``.

    Indexing (``ds[i]``) returns ``(image, labels_row)`` so the set plugs into a ``DataLoader``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        attributes: Mapping[str, Sequence[str]],
        ids: Sequence[str] | None = None,
        info: Mapping[str, Any] | None = None,
        skipped: Sequence[SkippedFile] = (),
    ) -> None:
        attributes = {str(k): tuple(str(v) for v in vals) for k, vals in attributes.items()}
        _check_images(images)
        n = images.shape[0]
        if labels.dtype != torch.int64 or labels.ndim != 2 or labels.shape != (n, len(attributes)):
            raise DataError(
                f"labels must be an int64 tensor of shape ({n}, {len(attributes)}) for {n} images and "
                f"attributes {list(attributes)}; got dtype {labels.dtype}, shape {tuple(labels.shape)}."
            )
        for j, (name, vocab) in enumerate(attributes.items()):
            col = labels[:, j]
            if n and (int(col.min()) < 0 or int(col.max()) >= len(vocab)):
                raise DataError(
                    f"labels of attribute {name!r} must index its {len(vocab)} values {list(vocab)}; "
                    f"found indices from {int(col.min())} to {int(col.max())}."
                )
        ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]
        if len(ids) != n:
            raise DataError(f"got {len(ids)} ids for {n} images; give exactly one id per image.")
        self.images = images
        self.labels = labels
        self.attributes: dict[str, tuple[str, ...]] = attributes
        self.ids: list[str] = ids
        self.info: dict[str, Any] = dict(info or {})
        self.skipped: list[SkippedFile] = list(skipped)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        attrs = ", ".join(f"{k}[{len(v)}]" for k, v in self.attributes.items())
        return f"{type(self).__name__}(n={n}, shape={c}×{h}×{w}, attributes=[{attrs}])"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def label(self, attribute: str) -> torch.Tensor:
        """The label column (value indices) of one attribute."""
        return self.labels[:, self._column(attribute)]

    def label_names(self, attribute: str) -> list[str]:
        """The value name of one attribute for every image."""
        vocab = self._vocab(attribute)
        return [vocab[i] for i in self.label(attribute).tolist()]

    def attribute_table(self) -> list[dict[str, str]]:
        """One row per image: ``{"id": ..., attribute: value name, ...}`` (the ground truth)."""
        names = {a: self.label_names(a) for a in self.attributes}
        return [{"id": self.ids[i], **{a: names[a][i] for a in names}} for i in range(len(self))]

    def shares(self, attribute: str) -> dict[str, float]:
        """Observed share of every value of ``attribute`` (values that never occur get 0.0)."""
        vocab = self._vocab(attribute)
        counts = Counter(self.label(attribute).tolist())
        n = max(len(self), 1)
        return {v: counts.get(i, 0) / n for i, v in enumerate(vocab)}

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageSet:
        """A new ``ImageSet`` with the chosen images (same vocabulary and info)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            self.images[idx],
            self.labels[idx],
            self.attributes,
            [self.ids[i] for i in idx.tolist()],
            self.info,
        )

    def _vocab(self, attribute: str) -> tuple[str, ...]:
        if attribute not in self.attributes:
            raise ConfigError(
                f"unknown attribute {attribute!r}; this data set has {list(self.attributes) or 'none'}."
            )
        return self.attributes[attribute]

    def _column(self, attribute: str) -> int:
        self._vocab(attribute)
        return list(self.attributes).index(attribute)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.float32 or images.ndim != 4:
        got = (
            f"{images.dtype}, shape {tuple(images.shape)}"
            if isinstance(images, torch.Tensor)
            else type(images)
        )
        raise DataError(f"images must be a float32 tensor of shape N×C×H×W in [0, 1]; got {got}.")
    if images.shape[1] not in (1, 3):
        raise DataError(f"images must have 1 or 3 channels (N×C×H×W); got C={images.shape[1]}.")
    if not images.numel():
        return
    lo, hi = (float(v) for v in torch.aminmax(images))  # min/max propagate NaN: one pass checks both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        first = _first_image(~torch.isfinite(images))
        raise DataError(
            f"images contain NaN or infinite values (first at image {first}); fix the source or the "
            "generator."
        )
    if lo < 0.0 or hi > 1.0:
        first = _first_image((images < 0.0) | (images > 1.0))
        raise DataError(
            f"images must lie in [0, 1]; found values from {lo:.4g} to {hi:.4g} (first outside at image "
            f"{first}). "
            "Rescale (e.g. (x + 1) / 2 for [-1, 1] data) before building the set."
        )


def _first_image(bad: torch.Tensor) -> int:
    """Index of the first image with a ``True`` in the N×... mask (only computed once a check failed)."""
    return int(bad.flatten(1).any(1).nonzero()[0])
