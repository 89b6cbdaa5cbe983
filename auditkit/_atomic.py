"""Atomic file writes: a temp file beside the target, fsync, rename over the target, fsync the folder.

A crash at any moment leaves either the old file or the new one at the target path, never a mix. What a
crash can leave behind is a temp file named ``.<stem>.tmp-<random><suffix>`` in the target's folder;
``is_temp_name`` recognises those so that ``RunStore.check`` can report and remove them.

The temp file lives in the same folder as the target because ``os.replace`` is atomic only within one
file system. It keeps the target's suffix because libraries that write to a path themselves (matplotlib's
``savefig``, ``numpy.save``) choose the format, or append an extension, from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

TEMP_MARKER = ".tmp-"
_CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough to keep memory flat


def temp_path_for(path: str | os.PathLike[str]) -> Path:
    """Return a fresh temp path in ``path``'s folder, recognisable by ``is_temp_name``."""
    path = Path(path)
    return path.with_name(f".{path.stem}{TEMP_MARKER}{secrets.token_hex(6)}{path.suffix}")


def is_temp_name(name: str) -> bool:
    """Whether a file name looks like a temp file left by this module."""
    return name.startswith(".") and TEMP_MARKER in name


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is synced)."""
    if os.name == "nt":  # Windows cannot open a folder as a file; NTFS journals renames itself
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's contents to disk."""
    # Opened for writing because Windows refuses fsync on a read-only handle.
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_temp(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> tuple[Path, str, int]:
    """Write ``data`` to a fresh temp file beside ``path`` and fsync it, without replacing ``path``.

    Returns
    -------
    tuple
        ``(temp_path, sha256_hex, size)``. The caller renames the temp file with ``replace_durably`` or
        deletes it. On any exception (including one raised by the iterable) the temp file is removed.
    """
    tmp = temp_path_for(path)
    chunks: Iterable[bytes] = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "xb") as fh:  # "x": never clobber a file that happens to have the same name
            for chunk in chunks:
                digest.update(chunk)
                size += fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest(), size


def replace_durably(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename a synced temp file over ``path`` and sync the folder so the rename survives a crash."""
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | Iterable[bytes]) -> str:
    """Write ``data`` (bytes, or an iterable of byte chunks) to ``path`` atomically.

    Parameters
    ----------
    path
        Destination; its folder must exist.
    data
        The content, whole or as chunks (streamed, so a large file need not sit in memory).

    Returns
    -------
    str
        SHA-256 hex digest of what was written, computed while writing.

    On any exception the temp file is removed and the file previously at ``path`` is untouched.
    """
    tmp, sha256, _ = write_temp(path, data)
    try:
        replace_durably(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return sha256


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to ``path`` atomically; returns the SHA-256 hex of the encoded bytes."""
    return atomic_write_bytes(path, text.encode(encoding))


def json_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` the way auditkit writes JSON files: stable, readable, strict.

    ``indent=2, sort_keys=True`` so that equal objects give equal bytes (and equal hashes);
    ``ensure_ascii=False`` keeps names readable; ``allow_nan=False`` because NaN is not JSON and other
    readers would reject the file (a ``ValueError`` here says which kind of value to convert).
    """
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> str:
    """Write ``obj`` as JSON (see ``json_bytes``) to ``path`` atomically; returns the SHA-256 hex."""
    return atomic_write_bytes(path, json_bytes(obj))


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path to write to; on normal exit it replaces ``path`` atomically.

    For libraries that insist on writing to a path themselves::

        with atomic_path(out / "grid.png") as tmp:
            fig.savefig(tmp)

    On an exception inside the block the temp file is deleted and ``path`` is untouched. The temp path
    keeps ``path``'s suffix so that format detection by extension still works.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to the temp path {tmp} meant to become {path}")
        fsync_file(tmp)
        replace_durably(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
