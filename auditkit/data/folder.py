"""``ImageFolder``: a folder of images plus an optional attribute file, validated file by file.

Why by hand: torchvision's ``ImageFolder`` only knows the class-per-subfolder layout. It cannot read
attribute files (CelebA's ``list_attr_celeba.txt``, a CSV), it does not validate (a truncated file or a
missing label surfaces as a bare Pillow exception, or not at all), and it has no mode that skips bad files
and says which. An audit must know exactly which images it looked at, so this loader checks every file
and every row, names the file and the fix in each error, and with ``skip_bad=True`` records what it left
out.

Rules
-----
* Image files: ``.png .jpg .jpeg .bmp .gif .tif .tiff .webp`` (any case), found recursively; files and
  folders whose names start with ``.`` are ignored, other files are ignored too. Images are sorted by
  relative POSIX path, which is also their id (``"cats/001.png"``) and the name the attribute file uses.
* Labels: from the attribute file when one is given (format detected from the content: a first line
  holding only a number means CelebA's format, anything else a CSV with a header); else one attribute
  ``"class"`` when every image sits in an immediate subfolder (torchvision's convention); else none.
  Vocabulary per attribute: the declared one, else the sorted values found (numerically when every value
  looks like a number, so ``"2"`` comes before ``"10"``; the same rule applies to class folder names).
* Pixels: Pillow decodes (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set, so truncation is an error),
  the first frame only, as stored (no EXIF rotation, no ICC colour management). Modes: ``1 L P RGB
  CMYK YCbCr`` and their alpha forms; 8-bit values are divided by 255; ``I;16*`` (16-bit gray) by 65535;
  ``I`` (32-bit int) is read as 16-bit data (values outside 0…65535 are rejected); ``F`` (32-bit float)
  must already lie in [0, 1]. Alpha is composited over ``background``; ``channels=1`` uses ITU-R 601 luma
  (0.299 R + 0.587 G + 0.114 B) computed in float, ``channels=3`` replicates gray.
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm.auto import tqdm

from auditkit.data.imageset import ImageSet, SkippedFile
from auditkit.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
ATTRIBUTE_FORMATS = ("celeba", "csv")
SIZE_MISMATCH_POLICIES = ("resize", "error")
EXTRA_ROWS_POLICIES = ("error", "ignore")
CLASS_ATTRIBUTE = "class"

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601
_PROGRESS_MIN_FILES = 200  # below this a bar is noise
_MAX_LISTED = 10  # problems spelled out in one error message
_WARN_LISTED = 5  # file names spelled out in the skip_bad warning
_SKIP_HINT = "or pass skip_bad=True to leave it out"


class ImageFolder(ImageSet):
    """Every image under ``root`` with its labels, loaded eagerly and validated.

    Parameters
    ----------
    root
        Folder holding the images (searched recursively).
    attributes_file
        Optional attribute file: CelebA's ``list_attr_celeba.txt`` format (line 1: number of images;
        line 2: attribute names; then ``file v1 v2 ...``) or a CSV ``filename,attr1,attr2,...`` with a
        header. File names are paths relative to ``root`` with ``/`` separators.
    size
        ``(H, W)`` (or one int for square) every image must have. ``None``: all images must share the
        first image's size.
    on_size_mismatch
        With ``size`` set, what to do with an image of another size: ``"resize"`` (bilinear,
        antialiased) or ``"error"``.
    channels
        1 (gray, ITU-R 601 luma) or 3 (RGB, gray replicated).
    attributes
        Declared vocabularies, ``{"Smiling": ["-1", "1"], ...}``: these attributes, in this order, become
        the label columns, and a value outside its list is an error. ``None`` as a list means "infer the
        vocabulary" for that attribute. Without an attribute file only ``{"class": [...]}`` is allowed.
    skip_bad
        Leave out images that cannot be used (corrupt, truncated, empty, unlabelled, unknown value, wrong
        size under ``"error"``) instead of raising; they are listed in ``skipped`` and one warning says
        how many. Problems with the attribute file as a whole still raise.
    background
        Colour that transparent pixels are composited over: one gray value or ``(r, g, b)`` in [0, 1].
    progress
        Show a tqdm bar (only for more than 200 files).
    format
        ``"celeba"`` or ``"csv"`` to skip detection of the attribute file's format.
    extra_rows
        Rows naming files that are not in the folder: ``"error"``, or ``"ignore"`` when the folder holds
        only part of a data set (their count goes into ``info["extra_rows_ignored"]``).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        attributes_file: str | os.PathLike[str] | None = None,
        *,
        size: int | tuple[int, int] | None = None,
        on_size_mismatch: str = "resize",
        channels: int = 3,
        attributes: Mapping[str, Sequence[str] | None] | None = None,
        skip_bad: bool = False,
        background: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
        progress: bool = True,
        format: str | None = None,  # shadows the builtin: the name users expect
        extra_rows: str = "error",
    ) -> None:
        target = _parse_size(size)
        if on_size_mismatch not in SIZE_MISMATCH_POLICIES:
            raise ConfigError(
                f"on_size_mismatch must be one of {SIZE_MISMATCH_POLICIES}; got {on_size_mismatch!r}."
            )
        if channels not in (1, 3):
            raise ConfigError(f"ImageFolder channels must be 1 or 3; got {channels!r}.")
        if format is not None and format not in ATTRIBUTE_FORMATS:
            raise ConfigError(f"format must be one of {ATTRIBUTE_FORMATS} or None (detect); got {format!r}.")
        if extra_rows not in EXTRA_ROWS_POLICIES:
            raise ConfigError(f"extra_rows must be one of {EXTRA_ROWS_POLICIES}; got {extra_rows!r}.")
        declared = _parse_declared(attributes)
        bg = _parse_background(background, channels)

        root_path = Path(root)
        if not root_path.exists():
            raise DataError(f"image folder {str(root_path)!r} does not exist; check the path.")
        if not root_path.is_dir():
            raise DataError(
                f"image folder {str(root_path)!r} is not a directory; pass the folder that holds the images."
            )
        files, n_other = _list_images(root_path)
        if not files:
            other = f" ({_count(n_other, 'other file')} ignored)" if n_other else ""
            raise DataError(
                f"no image files ({' '.join(IMAGE_EXTENSIONS)}) found in {str(root_path)!r} or its subfolders"
                f"{other}; point root at the folder that holds the images."
            )

        # Labels first: they are cheap to check, so a bad row fails before minutes of decoding.
        if attributes_file is not None:
            attr_path = Path(attributes_file)
            table = _read_attribute_file(attr_path, format)
            names = _select_columns(table, declared, attr_path)
            raw, problems, n_extra = _match_rows(
                table, names, declared, files, root_path, attr_path, extra_rows
            )
            label_source = table.format
        else:
            attr_path = None
            n_extra = 0
            raw, problems, names, label_source = _folder_labels(files, declared)

        if problems and not skip_bad:
            _raise_problems(problems, root_path)
        skipped = [SkippedFile(p.path, p.reason) for p in problems]
        bad = {p.path for p in problems}
        todo = [f for f in files if f not in bad]

        images, kept, n_resized, decode_skipped = _decode_all(
            root_path, todo, target, on_size_mismatch, channels, bg, skip_bad, progress
        )
        skipped += decode_skipped
        if not kept:
            listed = "; ".join(f"{s.path} {s.reason}" for s in skipped[:_WARN_LISTED])
            raise DataError(
                f"all {len(files)} image files in {str(root_path)!r} were skipped, so nothing is left "
                f"to load (e.g. {listed}); fix the files or the attribute file."
            )
        if skipped:
            shown = ", ".join(s.path for s in skipped[:_WARN_LISTED])
            more = f" and {len(skipped) - _WARN_LISTED} more" if len(skipped) > _WARN_LISTED else ""
            warnings.warn(
                f"ImageFolder skipped {len(skipped)} bad files or rows under {str(root_path)!r} and loaded "
                f"{len(kept)} of {len(files)} image files; skipped: {shown}{more}. "
                "See .skipped for the reasons.",
                stacklevel=2,
            )

        vocab = {
            name: declared.get(name) or _sorted_values(raw[f][j] for f in kept)
            for j, name in enumerate(names)
        }
        index = {name: {v: i for i, v in enumerate(vals)} for name, vals in vocab.items()}
        labels = torch.tensor(
            [[index[name][raw[f][j]] for j, name in enumerate(names)] for f in kept], dtype=torch.int64
        ).reshape(len(kept), len(names))
        h, w = images.shape[2:]
        info: dict[str, Any] = {
            "source": "folder",
            "root": str(root_path),
            "attributes_file": str(attr_path) if attr_path is not None else None,
            "labels_from": label_source,
            "size": [int(h), int(w)],
            "on_size_mismatch": on_size_mismatch,
            "channels": channels,
            "files": len(files),
            "loaded": len(kept),
            "skipped": len(skipped),
            "resized": n_resized,
            "extra_rows_ignored": n_extra,
        }
        super().__init__(images, labels, vocab, kept, info, skipped)


def load_image(
    path: str | os.PathLike[str],
    *,
    channels: int = 3,
    background: float | tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Decode one image file with ``ImageFolder``'s rules.

    Returns
    -------
    torch.Tensor
        ``float32`` in ``[0, 1]``, shape ``C×H×W``.
    """
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3; got {channels!r}.")
    path = Path(path)
    try:
        return torch.from_numpy(_decode(path, channels, _parse_background(background, channels)))
    except _FileProblem as e:
        raise DataError(f"{str(path)!r} {e.reason}; {e.fix or 're-export it'}.") from None


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class _Problem:
    """One unusable image (or row): ``path`` relative to root, ``reason`` a predicate, ``fix`` advice."""

    path: str
    reason: str
    fix: str

    def message(self, root: Path) -> str:
        return f"{str(root / self.path)!r} {self.reason}; {self.fix}."


class _FileProblem(Exception):
    """Raised by the decoder; turned into a ``DataError`` or a ``SkippedFile`` by the caller."""

    def __init__(self, reason: str, fix: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def _raise_problems(problems: Sequence[_Problem], root: Path) -> None:
    if len(problems) == 1:
        raise DataError(problems[0].message(root))
    lines = [f"  - {p.message(root)}" for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        lines.append(f"  ... and {len(problems) - _MAX_LISTED} more")
    raise DataError(f"{len(problems)} images under {str(root)!r} cannot be labelled:\n" + "\n".join(lines))


# --------------------------------------------------------------------------- options


def _parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, Sequence) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ConfigError(
            f"size must be None, a positive int or a pair (H, W) of positive ints; got {size!r}."
        )
    return int(pair[0]), int(pair[1])


def _parse_declared(
    attributes: Mapping[str, Sequence[str] | None] | None,
) -> dict[str, tuple[str, ...] | None]:
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise ConfigError(
            f"attributes must be a mapping like {{'Smiling': ['-1', '1']}}; got {type(attributes).__name__}."
        )
    declared: dict[str, tuple[str, ...] | None] = {}
    for name, values in attributes.items():
        if values is None:
            declared[str(name)] = None
            continue
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ConfigError(
                f"attributes[{name!r}] must be a non-empty list of value names (or None to infer it); "
                f"got {values!r}."
            )
        vals = tuple(str(v) for v in values)
        if len(set(vals)) != len(vals):
            raise ConfigError(f"attributes[{name!r}] lists a value twice: {list(vals)}.")
        declared[str(name)] = vals
    return declared


def _parse_background(background: float | Sequence[float], channels: int) -> np.ndarray:
    vals = [background] if isinstance(background, int | float) else list(background)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in vals):
        raise ConfigError(
            f"background must be one gray value or (r, g, b), each in [0, 1]; got {background!r}."
        )
    rgb = np.asarray(vals, dtype=np.float32)
    return rgb if channels == 3 else np.array([float(rgb @ _LUMA)], dtype=np.float32)


# --------------------------------------------------------------------------- files and labels


def _list_images(root: Path) -> tuple[list[str], int]:
    """Relative POSIX paths of the image files under ``root`` (sorted), and how many other files there are."""

    def unreadable(err: OSError) -> None:
        raise DataError(f"cannot list folder {err.filename!r} ({err.strerror}); check its permissions.")

    found: list[str] = []
    n_other = 0
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append((rel / name).as_posix())
            else:
                n_other += 1
    return sorted(found), n_other


@dataclass
class _Table:
    """An attribute file, parsed but not yet matched to images."""

    format: str
    columns: list[str]
    rows: list[tuple[int, str, list[str]]]  # (line number, file name, values)


def _read_attribute_file(path: Path, fmt: str | None) -> _Table:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(
            f"attribute file {str(path)!r} {what}; check the path (or pass attributes_file=None)."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports often start with a BOM
    except UnicodeDecodeError as e:
        raise DataError(
            f"attribute file {str(path)!r} is not UTF-8 text ({e.reason}); re-save it as UTF-8."
        ) from None
    except OSError as e:
        raise DataError(f"cannot read attribute file {str(path)!r} ({e.strerror}).") from None
    if not text.strip():
        raise DataError(f"attribute file {str(path)!r} is empty; it needs a header and one row per image.")
    if fmt is None:
        first = text.lstrip().splitlines()[0].strip()
        fmt = "celeba" if re.fullmatch(r"\d+", first) else "csv"
    table = _parse_celeba(text, path) if fmt == "celeba" else _parse_csv(text, path)
    dupes = sorted({c for c in table.columns if table.columns.count(c) > 1})
    if dupes:
        raise DataError(
            f"attribute file {str(path)!r} names attribute(s) {dupes} twice in its header; rename them."
        )
    return table


def _parse_celeba(text: str, path: Path) -> _Table:
    lines = text.splitlines()
    head = lines[0].strip()
    if not re.fullmatch(r"\d+", head):
        raise DataError(
            f"line 1 of {str(path)!r} should hold the number of images (CelebA's list_attr_celeba.txt "
            f"format); found {head[:60]!r}. Fix the file, or pass format='csv' if it is a CSV."
        )
    if len(lines) < 2 or not lines[1].split():
        raise DataError(
            f"line 2 of {str(path)!r} should list the attribute names separated by spaces; it is empty."
        )
    columns = lines[1].split()
    rows = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if fields:
            rows.append((number, _normalise_name(fields[0]), fields[1:]))
    if len(rows) != int(head):
        raise DataError(
            f"line 1 of {str(path)!r} says {int(head)} images but the file has {len(rows)} rows; "
            "the file is incomplete or the count is wrong: regenerate it or correct line 1."
        )
    return _Table("celeba", columns, rows)


def _parse_csv(text: str, path: Path) -> _Table:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader)]
        rows = []
        for fields in reader:
            if not any(c.strip() for c in fields):
                continue
            name = _normalise_name(fields[0])
            if not name:
                raise DataError(
                    f"line {reader.line_num} of {str(path)!r} has an empty file name in its first column; "
                    "fill it in or delete the row."
                )
            rows.append((reader.line_num, name, [c.strip() for c in fields[1:]]))
    except csv.Error as e:
        raise DataError(
            f"attribute file {str(path)!r} is not valid CSV at line {reader.line_num} ({e})."
        ) from None
    if len(header) < 2:
        raise DataError(
            f"the header of {str(path)!r} has {len(header)} column(s): {header}; a CSV attribute file needs "
            "'filename,attr1,attr2,...' separated by commas (CelebA's format needs the image count on "
            "line 1)."
        )
    if os.path.splitext(header[0])[1].lower() in IMAGE_EXTENSIONS:
        raise DataError(
            f"line 1 of {str(path)!r} looks like a data row ({header[0]!r}), not a header; add a header line "
            "'filename,attr1,attr2,...'."
        )
    if not all(header[1:]):
        raise DataError(
            f"the header of {str(path)!r} has an empty attribute name: {header}; name every column."
        )
    return _Table("csv", header[1:], rows)


def _normalise_name(name: str) -> str:
    # Rows written on Windows or with a leading ./ must still match the ids (relative POSIX paths).
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _select_columns(table: _Table, declared: Mapping[str, Any], path: Path) -> list[str]:
    if not declared:
        return list(table.columns)
    unknown = [a for a in declared if a not in table.columns]
    if unknown:
        raise ConfigError(
            f"attributes {unknown} are not columns of {str(path)!r}; it has {table.columns}. "
            "Fix the names in attributes=."
        )
    return list(declared)


def _match_rows(
    table: _Table,
    names: list[str],
    declared: Mapping[str, tuple[str, ...] | None],
    files: list[str],
    root: Path,
    path: Path,
    extra_rows: str,
) -> tuple[dict[str, list[str]], list[_Problem], int]:
    """Raw label values per image (selected columns), the per-image problems, and the ignored extra rows."""
    fname = path.name
    on_disk = set(files)
    problems: list[_Problem] = []
    first_line: dict[str, int] = {}
    rows: dict[str, list[str]] = {}
    row_problem: dict[str, _Problem] = {}
    n_extra = 0
    col = [table.columns.index(a) for a in names]
    for line, name, values in table.rows:
        if name not in on_disk:
            if extra_rows == "ignore":
                n_extra += 1
            else:
                problems.append(
                    _Problem(
                        name,
                        f"is listed on line {line} of {fname} but is not an image file in the folder",
                        "fix the name (paths are relative to root, with '/'), delete the row, or pass "
                        "extra_rows='ignore' if the folder holds only part of the data set",
                    )
                )
            continue
        if name in first_line:
            row_problem.setdefault(
                name,
                _Problem(
                    name,
                    f"has two rows in {fname} (lines {first_line[name]} and {line})",
                    f"keep one of them, {_SKIP_HINT}",
                ),
            )
            continue
        first_line[name] = line
        if len(values) != len(table.columns):
            row_problem[name] = _Problem(
                name,
                f"has {_count(len(values), 'value')} on line {line} of {fname}, but the header names "
                f"{len(table.columns)} attributes",
                f"correct the row, {_SKIP_HINT}",
            )
            continue
        picked = [values[c] for c in col]
        for attr, value in zip(names, picked, strict=True):
            allowed = declared.get(attr)
            if value == "":
                row_problem[name] = _Problem(
                    name,
                    f"has an empty value for attribute {attr!r} on line {line} of {fname}",
                    f"fill it in, {_SKIP_HINT}",
                )
                break
            if allowed is not None and value not in allowed:
                row_problem[name] = _unknown_value(name, attr, value, allowed, f"line {line} of {fname}")
                break
        else:
            rows[name] = picked
    for f in files:
        if f in row_problem:
            problems.append(row_problem[f])
        elif f not in first_line:
            problems.append(
                _Problem(f, f"has no row in {fname}", f"add a row for it to {fname}, {_SKIP_HINT}")
            )
    return rows, problems, n_extra


def _folder_labels(
    files: list[str], declared: Mapping[str, tuple[str, ...] | None]
) -> tuple[dict[str, list[str]], list[_Problem], list[str], str]:
    """Labels without an attribute file: the immediate subfolder as ``"class"``, or none."""
    if not all(f.count("/") == 1 for f in files):
        if declared:
            raise ConfigError(
                f"attributes= was given ({list(declared)}) but there is no attributes_file and the images "
                "are not all in class subfolders; pass the attribute file or drop attributes=."
            )
        return {f: [] for f in files}, [], [], "none"
    if set(declared) - {CLASS_ATTRIBUTE}:
        raise ConfigError(
            f"without an attribute file the only attribute is {CLASS_ATTRIBUTE!r} (the subfolder); "
            f"attributes= names {list(declared)}."
        )
    allowed = declared.get(CLASS_ATTRIBUTE)
    problems = []
    for f in files:
        cls = f.split("/")[0]
        if allowed is not None and cls not in allowed:
            problems.append(_unknown_value(f, CLASS_ATTRIBUTE, cls, allowed, "its subfolder"))
    return {f: [f.split("/")[0]] for f in files}, problems, [CLASS_ATTRIBUTE], "subfolders"


def _unknown_value(name: str, attr: str, value: str, allowed: Sequence[str], where: str) -> _Problem:
    return _Problem(
        name,
        f"has {attr}={value!r} ({where}), which is not one of the declared values {list(allowed)}",
        f"correct the value or add it to attributes[{attr!r}], {_SKIP_HINT}",
    )


def _sorted_values(values: Any) -> tuple[str, ...]:
    unique = set(values)
    try:
        return tuple(sorted(unique, key=lambda v: (float(v), v)))
    except ValueError:
        return tuple(sorted(unique))


# --------------------------------------------------------------------------- pixels


def _decode_all(
    root: Path,
    todo: list[str],
    target: tuple[int, int] | None,
    on_size_mismatch: str,
    channels: int,
    bg: np.ndarray,
    skip_bad: bool,
    progress: bool,
) -> tuple[torch.Tensor, list[str], int, list[SkippedFile]]:
    """Decode ``todo`` one file at a time into one preallocated tensor."""
    buffer: torch.Tensor | None = None
    kept: list[str] = []
    skipped: list[SkippedFile] = []
    n_resized = 0
    bar = tqdm(
        todo,
        desc=f"Loading {root.name or root}",
        unit="img",
        disable=not (progress and len(todo) > _PROGRESS_MIN_FILES),
    )
    for rel in bar:
        try:
            image = torch.from_numpy(_decode(root / rel, channels, bg))
            hw = (image.shape[1], image.shape[2])
            if target is None and buffer is not None and hw != tuple(buffer.shape[2:]):
                first = tuple(buffer.shape[2:])
                # Not skippable: with no declared size, which size is "right" is the user's call.
                raise DataError(
                    f"{str(root / rel)!r} is {_hw(hw)} but {str(root / kept[0])!r} (the first image) is "
                    f"{_hw(first)}; pass size=(H, W) to resize every image to one size (add "
                    "on_size_mismatch='error', skip_bad=True to leave odd sizes out instead)."
                )
            if target is not None and hw != target:
                if on_size_mismatch == "error":
                    raise _FileProblem(
                        f"is {_hw(hw)}, not the declared size {_hw(target)}",
                        f"resize it, pass on_size_mismatch='resize', {_SKIP_HINT}",
                    )
                image = F.interpolate(
                    image[None], size=target, mode="bilinear", align_corners=False, antialias=True
                )[0].clamp_(0.0, 1.0)
                n_resized += 1
        except _FileProblem as e:
            fix = e.fix or f"re-export it, {_SKIP_HINT}"
            if not skip_bad:
                raise DataError(f"{str(root / rel)!r} {e.reason}; {fix}.") from None
            skipped.append(SkippedFile(rel, e.reason))
            continue
        if buffer is None:
            h, w = target or (image.shape[1], image.shape[2])
            buffer = torch.empty((len(todo), channels, h, w), dtype=torch.float32)
        buffer[len(kept)] = image
        kept.append(rel)
    if buffer is None:
        return torch.empty((0, channels, 1, 1)), kept, n_resized, skipped
    # A view of the first rows would pin the whole buffer; copy when files were dropped.
    images = buffer if len(kept) == len(todo) else buffer[: len(kept)].clone()
    return images, kept, n_resized, skipped


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _hw(hw: Sequence[int]) -> str:
    return f"{hw[0]}×{hw[1]} (H×W)"


def _decode(path: Path, channels: int, bg: np.ndarray) -> np.ndarray:
    """One file as ``float32`` ``C×H×W`` in [0, 1]; raises ``_FileProblem`` for anything unusable."""
    try:
        if path.stat().st_size == 0:
            raise _FileProblem("is empty (0 bytes)")
    except OSError as e:
        raise _FileProblem(f"cannot be read ({e.strerror})", "check that it exists and is readable") from None
    # WeasyPrint turns Pillow's LOAD_TRUNCATED_IMAGES on when it is imported (e.g. after a PDF report in the
    # same process), which would let a truncated file through as a half-grey image: force it off here.
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncation only shows when the pixel data is read
            color, alpha = _pixels(im)
    except _FileProblem:
        raise
    except Image.DecompressionBombError as e:
        raise _FileProblem(
            f"is too large to decode safely ({e})",
            "shrink it; if you trust it, raise PIL.Image.MAX_IMAGE_PIXELS, " + _SKIP_HINT,
        ) from None
    except UnidentifiedImageError:
        raise _FileProblem(
            "is not an image Pillow can read (corrupt, or not the format its name says)"
        ) from None
    except MemoryError:
        raise
    except Exception as e:  # Pillow's plugins raise OSError, SyntaxError, ValueError, zlib.error...
        kind = "is truncated" if "truncated" in str(e) else "is corrupt"
        raise _FileProblem(f"{kind} (Pillow: {e})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    if channels == 3 and color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    elif channels == 1 and color.shape[2] == 3:
        color = (color @ _LUMA)[..., None]
    if alpha is not None:
        a = alpha[..., None]
        color = color * a + bg * (1.0 - a)
    color = np.clip(color, 0.0, 1.0)  # luma weights sum to 1 only up to float rounding
    return np.ascontiguousarray(color.transpose(2, 0, 1), dtype=np.float32)


def _pixels(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour ``H×W×k`` (k = 1 or 3) and alpha ``H×W`` (or ``None``), float32 in [0, 1]."""
    mode = im.mode
    if "transparency" in im.info and mode in ("L", "RGB", "P"):
        im = im.convert({"L": "LA", "RGB": "RGBA", "P": "RGBA"}[mode])  # a tRNS colour key becomes alpha
    elif mode == "P":
        im = im.convert("RGB")
    elif mode in ("PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("RGBX", "CMYK", "YCbCr", "HSV"):
        im = im.convert("RGB")  # Pillow's plain conversion; ICC profiles are not applied
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float32)[..., None], None
    if mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
        if arr.ndim == 2:
            arr = arr[..., None]
        if mode in ("LA", "RGBA"):
            return arr[..., :-1], arr[..., -1]
        return arr, None
    if mode.startswith("I;16"):
        return (np.asarray(im).astype(np.float32) / np.float32(65535.0))[..., None], None
    if mode == "I":
        arr = np.asarray(im)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise _FileProblem(
                f"holds 32-bit integers from {lo} to {hi}; auditkit reads integer images as 16-bit (0…65535)",
                "save it as 8- or 16-bit, " + _SKIP_HINT,
            )
        return (arr.astype(np.float32) / np.float32(65535.0))[..., None], None
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise _FileProblem(
                f"holds floats from {np.nanmin(arr):.4g} to {np.nanmax(arr):.4g}; float images must already "
                "lie in [0, 1] (no scale can be inferred from them)",
                "rescale it to [0, 1] or save it as 8- or 16-bit, " + _SKIP_HINT,
            )
        return arr[..., None], None
    raise _FileProblem(
        f"has pixel mode {mode!r}, which auditkit does not read",
        "convert it to RGB or grayscale, " + _SKIP_HINT,
    )


__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_image"]
