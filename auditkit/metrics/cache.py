"""On-disk cache of features and reference statistics, so a re-audit does not run the network again.

An entry is keyed by what determines its content: a fingerprint of the images, the feature extractor's
identity (name, weights hash, precision mode, ...) and the cache format. It is two files under the cache
folder: ``<key>.safetensors`` (the tensors; safetensors never unpickles) and ``<key>.json`` (the key's
ingredients and the tensors file's SHA-256). Both are written atomically, the tensors first, so a crash
leaves no entry or a whole one; a tensors file that does not match its recorded hash is treated as a
miss, removed, and recomputed.

Why hand-written: torch-fidelity caches by a name the user chooses and torchmetrics keeps reference
statistics in memory only; neither keys on the images' content and the extractor's weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from auditkit._atomic import atomic_path, atomic_write_json, sha256_file
from auditkit.errors import ConfigError, DataError

CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 24  # elements per hashing step: bounds the temporary byte copy of a large tensor


def default_cache_dir() -> Path:
    """``$AUDITKIT_CACHE`` if set, else ``<store home>/cache/features``."""
    value = os.environ.get("AUDITKIT_CACHE", "").strip()
    if value:
        return Path(value).expanduser().absolute()
    from auditkit.store import default_home

    return default_home() / "cache" / "features"


def tensor_fingerprint(tensor: torch.Tensor) -> str:
    """SHA-256 over a tensor's dtype, shape and values (device and memory layout do not matter)."""
    digest = hashlib.sha256(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), _HASH_CHUNK):
        chunk = flat[start : start + _HASH_CHUNK].cpu().contiguous()
        digest.update(chunk.view(torch.uint8).numpy().tobytes() if chunk.numel() else b"")
    return digest.hexdigest()


def cache_key(**ingredients: Any) -> str:
    """A key from JSON-serialisable ingredients (e.g. ``data=``, ``extractor=``, ``mode=``)."""
    try:
        text = json.dumps({"format": CACHE_FORMAT, **ingredients}, sort_keys=True, separators=(",", ":"))
    except TypeError as exc:
        raise ConfigError(f"cache key ingredients must be JSON-serialisable: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


class FeatureCache:
    """A folder of cached tensor dictionaries.

    Parameters
    ----------
    root
        The cache folder (created on first write); ``None`` means :func:`default_cache_dir`.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser().absolute() if root is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors stored under ``key``, or ``None`` if absent or damaged (a damaged entry is removed)."""
        tensors_file, meta_file = self._files(key)
        if not (tensors_file.is_file() and meta_file.is_file()):
            return None
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            if meta.get("sha256") != sha256_file(tensors_file):
                raise ValueError("the tensors file does not match its recorded SHA-256")
            return load_file(tensors_file)
        except (OSError, ValueError, SafetensorError) as exc:
            warnings.warn(
                f"discarding damaged cache entry {tensors_file}: {exc}; it will be recomputed.", stacklevel=2
            )
            for path in (tensors_file, meta_file):
                path.unlink(missing_ok=True)
            return None

    def save(
        self, key: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None
    ) -> Path:
        """Store ``tensors`` under ``key`` with JSON-serialisable ``meta``; returns the tensors file."""
        if not tensors:
            raise DataError("nothing to cache: the tensor dictionary is empty.")
        for name, value in tensors.items():
            if not isinstance(value, torch.Tensor):
                raise DataError(f"cache entry {name!r} must be a torch.Tensor; got {type(value).__name__}.")
        self.root.mkdir(parents=True, exist_ok=True)
        tensors_file, meta_file = self._files(key)
        with atomic_path(tensors_file) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        atomic_write_json(
            meta_file, {"key": key, "sha256": sha256_file(tensors_file), "meta": dict(meta or {})}
        )
        return tensors_file

    def get_or_compute(
        self,
        key: str,
        compute: Callable[[], Mapping[str, torch.Tensor]],
        meta: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, torch.Tensor], bool]:
        """Cached tensors for ``key``, computing and storing them on a miss; returns ``(tensors, hit)``."""
        found = self.load(key)
        if found is not None:
            return found, True
        computed = dict(compute())
        self.save(key, computed, meta)
        return computed, False

    def _files(self, key: str) -> tuple[Path, Path]:
        if not (len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            raise ConfigError(f"cache key {key!r} is not a SHA-256 hex digest; build it with cache_key(...).")
        return self.root / f"{key}.safetensors", self.root / f"{key}.json"
