"""Metrics between sources: streaming a generator, the feature cache, per-group metrics, the CLI, and
FID on two folders against torch-fidelity's own ``calculate_metrics``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from auditkit.data.shapes import Shapes
from auditkit.errors import ConfigError
from auditkit.generators import create_generator
from auditkit.metrics.cache import FeatureCache
from auditkit.metrics.compute import compare, compute_metrics, source_features
from auditkit.metrics.features import module_extractor


class _Pool(nn.Module):
    """A fixed random projection of 4×4-pooled pixels: cheap, deterministic features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 16, 24)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's sqrtm, in float64 (an independent reference)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.fixture(scope="module")
def extractor():
    return module_extractor(_Pool(), name="pool16", batch_size=64)


@pytest.fixture(scope="module")
def generator():
    return create_generator(
        "dcgan",
        image_shape=(3, 16, 16),
        class_names=("circle", "square", "triangle"),
        condition="shape",
        seed=0,
        latent_dim=8,
        width=8,
        embed_dim=4,
    )


def test_generator_features_are_streamed_exactly(extractor, generator):
    generator.network.eval()
    streamed = source_features(generator, extractor, n=150, seed=3, batch_size=32)
    direct = extractor.extract(generator.sample(150, seed=3, batch_size=150))
    torch.testing.assert_close(streamed.features, direct, rtol=1e-5, atol=1e-6)
    assert streamed.kind == "generator" and streamed.vocab["shape"] == ("circle", "square", "triangle")
    assert streamed.labels["shape"].shape == (150,)


def test_metrics_equal_independent_references(extractor, tmp_path):
    prdc = pytest.importorskip("prdc")
    real, fake = Shapes(300, size=16, seed=1), Shapes(300, size=16, seed=2, skew="demo")
    result = compute_metrics(
        real, fake, features=extractor, metrics=["fid", "prdc"], cache=FeatureCache(tmp_path)
    )
    fa, fb = extractor.extract(real.images).double().numpy(), extractor.extract(fake.images).double().numpy()
    assert result["fid"] == pytest.approx(_scipy_fid(fa, fb), rel=1e-6)
    expected = prdc.compute_prdc(fa.astype(np.float32), fb.astype(np.float32), nearest_k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert result[key] == pytest.approx(float(expected[key]), abs=1e-12), key
    assert result["n_real"] == result["n_fake"] == 300
    assert result["sources"]["real"]["cache_hit"] is False
    again = compute_metrics(
        real, fake, features=extractor, metrics=["fid", "prdc"], cache=FeatureCache(tmp_path)
    )
    assert again["sources"]["real"]["cache_hit"] is True and again["fid"] == result["fid"]


def test_per_group_metrics_equal_metrics_on_the_groups(extractor):
    real, fake = Shapes(600, size=16, seed=1), Shapes(600, size=16, seed=2, skew="demo")
    fr = source_features(real, extractor, cache=False)
    ff = source_features(fake, extractor, cache=False)
    result = compare(fr, ff, metrics=["fid", "prdc"], by=["shape"], min_group=50)
    for index, value in enumerate(("circle", "square", "triangle")):
        r = fr.features[real.label("shape") == index].double().numpy()
        f = ff.features[fake.label("shape") == index].double().numpy()
        entry = result["groups"]["shape"][value]
        assert (entry["n_real"], entry["n_fake"]) == (len(r), len(f))
        assert entry["fid"] == pytest.approx(_scipy_fid(r, f), rel=1e-6)
    thin = compare(fr, ff, metrics=["fid"], by=["shape"], min_group=1000)
    assert "skipped" in thin["groups"]["shape"]["circle"] and "fid" not in thin["groups"]["shape"]["circle"]
    with pytest.raises(ConfigError, match="cannot split by 'hue'"):
        compare(fr, ff, metrics=["fid"], by=["hue"])
    with pytest.raises(ConfigError, match="unknown metric"):
        compare(fr, ff, metrics=["fud"])
    with pytest.raises(ConfigError, match="needs class logits"):
        compare(fr, ff, metrics=["is"])


def test_fid_on_two_folders_equals_torch_fidelity_calculate_metrics(tmp_path):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    from PIL import Image
    from test_features import _random_inception_state, _save

    from auditkit.metrics.features import inception_extractor

    path, digest = _save(_random_inception_state(), tmp_path / "random-inception.pth")
    folders = []
    for name, seed in (("a", 1), ("b", 2)):
        folder = tmp_path / name
        folder.mkdir()
        data = Shapes(12, size=32, seed=seed, noise=0.1)
        for i, image in enumerate(data.images):
            array = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(array).save(folder / f"{i:03d}.png")
        folders.append(folder)
    ours = compute_metrics(
        str(folders[0]),
        str(folders[1]),
        features=inception_extractor(path, sha256=digest, device="cpu"),
        metrics=["fid"],
        cache=False,
    )
    theirs = torch_fidelity.calculate_metrics(
        input1=str(folders[0]),
        input2=str(folders[1]),
        fid=True,
        feature_extractor_weights_path=str(path),
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    # Same uint8 images, same graph and weights. 12 samples in 2048-d make both covariances rank 11: scipy's
    # sqrtm of their 2048×2048 product (torch-fidelity's route) keeps about five digits there, while the
    # well-conditioned cases in test_frechet agree to 1e-6.
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)


# -- command line ---------------------------------------------------------------------------------


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AUDITKIT_HOME": str(home),
        "OMP_NUM_THREADS": "1",
        "AUDITKIT_CACHE": str(home / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_metrics_with_judge_features(tmp_path):
    from auditkit.bias import train_judge
    from auditkit.store import RunStore
    from auditkit.training import train

    store = RunStore(tmp_path)
    train_judge(Shapes(240, size=16, seed=5), epochs=1, progress=False, store=store)
    config = {
        "family": "dcgan",
        "data": {"source": "shapes", "n": 64, "size": 16},
        "model": {"latent_dim": 8, "width": 8, "embed_dim": 4},
        "steps": 2,
        "batch_size": 16,
        "device": "cpu",
    }
    run = train(config, store=store, progress=False)
    done = _cli(
        "metrics",
        "all",
        "shapes",
        run.run_id,
        "--n",
        "120",
        "--size",
        "16",
        "--by",
        "shape",
        "--json",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"fid", "kid", "precision", "recall", "density", "coverage", "memorization"} <= result.keys()
    assert 0.0 <= result["memorization"]["near_copy_rate"] <= 1.0
    assert result["n_real"] == result["n_fake"] == 120
    assert result["features"]["name"] == "judge"
    assert set(result["groups"]["shape"]) == {"circle", "square", "triangle"}
    text = _cli("metrics", "fid", "shapes", run.run_id, "--n", "60", "--size", "16", home=tmp_path)
    assert text.returncode == 0 and "fid" in text.stdout
    missing = _cli("metrics", "fid", "shapes", "shapes", home=tmp_path / "empty")
    assert missing.returncode == 2 and "auditkit judge train" in missing.stderr


def test_judge_labels_split_both_kinds_of_source(extractor, generator):
    from auditkit.bias import train_judge

    judge = train_judge(Shapes(240, size=16, seed=5), epochs=1, progress=False)
    data = Shapes(90, size=16, seed=6)
    real = source_features(data, extractor, cache=False, judge=judge)
    generator.network.eval()
    fake = source_features(generator, extractor, n=60, seed=2, batch_size=16, judge=judge)
    expected_real = judge.predict(data.images)
    expected_fake = judge.predict(generator.sample(60, seed=2, batch_size=16))
    for j, attribute in enumerate(judge.attributes):
        assert torch.equal(real.labels[f"judge:{attribute}"], expected_real[:, j])
        assert torch.equal(fake.labels[f"judge:{attribute}"], expected_fake[:, j])
        assert fake.vocab[f"judge:{attribute}"] == judge.attributes[attribute]
    result = compare(real, fake, metrics=["fid"], by=["judge:colour"], min_group=1)
    counts = torch.bincount(expected_fake[:, list(judge.attributes).index("colour")], minlength=3).tolist()
    assert [result["groups"]["judge:colour"][v]["n_fake"] for v in ("red", "green", "blue")] == counts
