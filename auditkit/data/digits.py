"""``Digits``: scikit-learn's shipped 8×8 handwritten digits, upsampled to a chosen size.

The 1 797 images ship inside scikit-learn, so this real (not synthetic) data set works offline. Pixel
values 0…16 are scaled to ``[0, 1]``; upsampling is bilinear with half-pixel centres
(``align_corners=False``), the convention of ``skimage.transform.resize(order=1)`` and PIL, so the
digits keep their shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from auditkit.data.imageset import ImageSet
from auditkit.errors import ConfigError

_MAX_VALUE = 16.0  # sklearn's digits are counts of set pixels in 4×4 blocks: 0…16


class Digits(ImageSet):
    """scikit-learn's digits as an ``ImageSet`` with one attribute, ``digit`` (values ``"0"``…``"9"``).

    Parameters
    ----------
    size
        Side of the output images (8 keeps the originals).
    channels
        1 (grayscale) or 3 (gray replicated, for extractors that want RGB).
    invert
        Dark strokes on a light background instead of light on dark.
    """

    def __init__(self, *, size: int = 32, channels: int = 1, invert: bool = False) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ConfigError(f"Digits size must be an integer of at least 8 pixels; got {size!r}.")
        if channels not in (1, 3):
            raise ConfigError(f"Digits channels must be 1 or 3; got {channels!r}.")
        raw = load_digits()
        images = torch.from_numpy(raw.images).float().div_(_MAX_VALUE).unsqueeze(1)
        if size != 8:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            images.clamp_(0.0, 1.0)
        if invert:
            images = 1.0 - images
        if channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        labels = torch.from_numpy(raw.target).long().unsqueeze(1)
        info = {"source": "digits", "size": size, "channels": channels, "invert": invert}
        super().__init__(
            images,
            labels,
            {"digit": [str(d) for d in range(10)]},
            [f"digits-{i:04d}" for i in range(len(labels))],
            info,
        )
