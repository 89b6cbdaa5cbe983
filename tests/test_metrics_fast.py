"""Fast precision mode: its deviation from exact is measured on a probe and stored with the result."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from auditkit.data.shapes import Shapes
from auditkit.metrics.compute import PROBE_N, compute_metrics
from auditkit.metrics.features import module_extractor


class _Net(nn.Module):
    """A small convolutional feature network (convolutions and a linear layer: what bf16 autocast changes)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.proj = nn.Linear(8 * 16, 16)
        for p in self.parameters():
            torch.nn.init.normal_(p, std=0.3, generator=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        return self.proj(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm, in float64 (an independent reference)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _by_hand(net: nn.Module, images: torch.Tensor, fast: bool, batch: int, device: str) -> np.ndarray:
    """Features computed directly with torch: fp32, or bf16 autocast on channels_last input, per batch."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start : start + batch].to(device)
            if fast:
                with torch.autocast(device_type=device, dtype=torch.bfloat16):
                    y = net(x.contiguous(memory_format=torch.channels_last))
            else:
                y = net(x)
            out.append(y.float().cpu())
    return torch.cat(out).double().numpy()


def _check_fast_result(device: str) -> None:
    net = _Net().to(device).eval()
    real, fake = Shapes(300, size=16, seed=1), Shapes(300, size=16, seed=2, skew="demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "fast on the CPU" advice
        extractor = module_extractor(net, name="net", mode="fast", device=device, batch_size=64)
    result = compute_metrics(real, fake, features=extractor, metrics=["fid"], cache=False)

    exact = {s.info["seed"]: _by_hand(net, s.images, False, 64, device) for s in (real, fake)}
    quick = {s.info["seed"]: _by_hand(net, s.images, True, 64, device) for s in (real, fake)}
    # The metrics use the fast features; the deviation compares them with exact on the first 256 images.
    assert result["mode"] == "fast" and result["features"]["mode"] == "fast"
    assert result["fid"] == pytest.approx(_scipy_fid(quick[1], quick[2]), rel=1e-6)
    dev = result["fast_deviation"]
    assert dev["probe_n"] == {"real": PROBE_N, "fake": PROBE_N} == {"real": 256, "fake": 256}
    diff = np.abs(np.concatenate([quick[s][:PROBE_N] - exact[s][:PROBE_N] for s in (1, 2)]))
    ref = np.concatenate([exact[s][:PROBE_N] for s in (1, 2)])
    stats = dev["outputs"]["features"]
    assert stats["max_abs"] == pytest.approx(diff.max(), rel=1e-6)
    assert stats["mean_abs"] == pytest.approx(diff.mean(), rel=1e-6)
    assert stats["relative"] == pytest.approx(np.linalg.norm(diff) / np.linalg.norm(ref), rel=1e-6)
    assert 1e-5 < stats["relative"] < 0.05  # bf16 really changed the features, and only a little
    fid_exact = _scipy_fid(exact[1][:PROBE_N], exact[2][:PROBE_N])
    fid_fast = _scipy_fid(quick[1][:PROBE_N], quick[2][:PROBE_N])
    assert dev["fid_exact"] == pytest.approx(fid_exact, rel=1e-6)
    assert dev["fid_fast"] == pytest.approx(fid_fast, rel=1e-6)
    assert dev["fid_abs_diff"] == pytest.approx(abs(fid_fast - fid_exact), rel=1e-4, abs=1e-9)
    assert dev["fid_rel_diff"] == pytest.approx(abs(fid_fast - fid_exact) / fid_exact, rel=1e-4, abs=1e-9)


def test_fast_mode_records_its_deviation_from_exact_on_the_cpu():
    _check_fast_result("cpu")


def test_exact_mode_records_its_mode_and_no_deviation():
    real, fake = Shapes(100, size=16, seed=1), Shapes(100, size=16, seed=2)
    result = compute_metrics(
        real, fake, features=module_extractor(_Net(), name="net"), metrics=["fid"], cache=False
    )
    assert result["mode"] == "exact" and "fast_deviation" not in result


def test_the_probe_is_the_first_images_of_a_short_source():
    real, fake = Shapes(120, size=16, seed=1), Shapes(90, size=16, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        extractor = module_extractor(_Net(), name="net", mode="fast")
    result = compute_metrics(real, fake, features=extractor, metrics=["fid"], cache=False)
    assert result["fast_deviation"]["probe_n"] == {"real": 120, "fake": 90}


@pytest.mark.gpu
def test_fast_mode_records_its_deviation_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _check_fast_result("cuda")
