"""One function that builds any data source a user can name: ``shapes``, ``digits`` or a folder."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from auditkit.data.imageset import ImageSet
from auditkit.errors import ConfigError

SOURCES_HELP = "'shapes', 'digits', or a folder of images"


def load_source(
    source: str,
    *,
    n: int = 2000,
    size: int | None = None,
    seed: int = 0,
    skew: Any = None,
    noise: float = 0.0,
    attributes_file: str | None = None,
    skip_bad: bool = False,
    channels: int | None = None,
    progress: bool | None = None,
) -> ImageSet:
    """The data set called ``source``.

    ``n``, ``seed``, ``skew`` and ``noise`` apply to Shapes; ``channels`` to Digits; ``attributes_file`` and
    ``skip_bad`` to folders; ``size`` to all (default 32, or the folder's own size).
    """
    if source == "shapes":
        from auditkit.data.shapes import Shapes

        show = n > 20_000 if progress is None else progress
        return Shapes(n, size=size or 32, seed=seed, skew=skew, noise=noise, progress=show)
    if skew is not None or noise:
        raise ConfigError("skew and noise only apply to the 'shapes' source; drop them for other sources.")
    if source == "digits":
        from auditkit.data.digits import Digits

        return Digits(size=size or 32, channels=channels or 1)
    if channels is not None:
        raise ConfigError("channels only applies to the 'digits' source.")
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"unknown source {source!r}: give {SOURCES_HELP} (no such folder).")
    from auditkit.data.folder import ImageFolder

    with warnings.catch_warnings():
        # Callers print their own summary of skipped files; Python's warning line would repeat it.
        warnings.simplefilter("ignore", UserWarning)
        return ImageFolder(path, attributes_file, size=size, skip_bad=skip_bad)


__all__ = ["SOURCES_HELP", "load_source"]
