"""Feature cache: content-keyed, verified on load, never a partial entry."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from auditkit import ConfigError, DataError
from auditkit.metrics.cache import FeatureCache, cache_key, default_cache_dir, tensor_fingerprint


def test_fingerprint_is_sha256_of_dtype_shape_and_bytes() -> None:
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    expected = hashlib.sha256(
        b"torch.float32|(3, 4)|" + np.arange(12, dtype=np.float32).tobytes()
    ).hexdigest()
    assert tensor_fingerprint(x) == expected
    # Layout does not matter, values, dtype and shape do.
    assert tensor_fingerprint(x.t().contiguous().t()) == expected
    assert tensor_fingerprint(x.reshape(4, 3)) != expected
    assert tensor_fingerprint(x.double()) != expected
    y = x.clone()
    y[2, 3] = 11.000001
    assert tensor_fingerprint(y) != expected


def test_fingerprint_of_a_tensor_larger_than_one_hashing_step(monkeypatch) -> None:
    import auditkit.metrics.cache as cache_module

    x = torch.rand(1000)
    whole = tensor_fingerprint(x)
    monkeypatch.setattr(cache_module, "_HASH_CHUNK", 7)
    assert tensor_fingerprint(x) == whole


def test_key_changes_with_every_ingredient() -> None:
    base = {"data": "a" * 64, "extractor": {"name": "inception", "sha256": "b" * 64}, "mode": "exact"}
    key = cache_key(**base)
    assert key == cache_key(**dict(reversed(list(base.items()))))
    assert key != cache_key(**{**base, "mode": "fast"})
    assert key != cache_key(**{**base, "extractor": {"name": "inception", "sha256": "c" * 64}})
    with pytest.raises(ConfigError, match="JSON"):
        cache_key(data=object())


def test_roundtrip_hit_and_miss(tmp_path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    key = cache_key(data="x")
    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"mu": torch.randn(5, dtype=torch.float64), "sigma": torch.eye(5, dtype=torch.float64)}

    first, hit1 = cache.get_or_compute(key, compute, meta={"n": 10})
    second, hit2 = cache.get_or_compute(key, compute)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    for name in first:
        assert torch.equal(first[name], second[name]) and second[name].dtype == torch.float64


def test_damaged_entry_is_discarded_and_recomputed(tmp_path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(data="y")
    path = cache.save(key, {"f": torch.ones(100)})
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="damaged cache entry"):
        assert cache.load(key) is None
    assert not path.exists()
    value, hit = cache.get_or_compute(key, lambda: {"f": torch.zeros(3)})
    assert not hit and torch.equal(value["f"], torch.zeros(3))


def test_failed_compute_leaves_no_entry(tmp_path) -> None:
    cache = FeatureCache(tmp_path)
    key = cache_key(data="z")

    def boom() -> dict[str, torch.Tensor]:
        raise RuntimeError("extractor crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute(key, boom)
    assert not list(tmp_path.iterdir())


def test_bad_inputs(tmp_path, monkeypatch) -> None:
    cache = FeatureCache(tmp_path)
    with pytest.raises(ConfigError, match="SHA-256"):
        cache.load("../../etc/passwd")
    with pytest.raises(DataError, match="empty"):
        cache.save(cache_key(data=1), {})
    with pytest.raises(DataError, match="torch.Tensor"):
        cache.save(cache_key(data=1), {"a": np.zeros(3)})
    monkeypatch.setenv("AUDITKIT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("AUDITKIT_CACHE")
    monkeypatch.setenv("AUDITKIT_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "cache" / "features"
