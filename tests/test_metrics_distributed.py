"""Sharded sampling and feature extraction: two gloo processes give one process's features and metrics.

Run as a script (``python tests/test_metrics_distributed.py OUT_DIR`` with torchrun's variables set) this
file is also the child of the two-process test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from auditkit.data.shapes import Shapes
from auditkit.generators import create_generator
from auditkit.metrics.cache import FeatureCache
from auditkit.metrics.compute import compute_metrics, source_features
from auditkit.metrics.distributed import SAMPLE_BLOCK, Shard, block_seed, current_shard, sample_blocks
from auditkit.metrics.features import module_extractor

N = 600  # three sample blocks (256, 256, 88): the two ranks get unequal shares (512 and 88 images)


class _Pool(nn.Module):
    """A fixed random projection of 4×4-pooled pixels: cheap, deterministic features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * 16, 24)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


def _setup():
    generator = create_generator(
        "dcgan",
        image_shape=(3, 16, 16),
        class_names=("circle", "square", "triangle"),
        condition="shape",
        seed=0,
        latent_dim=8,
        width=8,
        embed_dim=4,
    )
    generator.network.eval()
    return Shapes(N, size=16, seed=1), generator, module_extractor(_Pool(), name="pool16", batch_size=64)


def _run(out: Path, tag: str) -> None:
    """Features of both sources and the metrics, as every rank (or the one process) sees them."""
    real, generator, extractor = _setup()
    fr = source_features(real, extractor, n=N, seed=0, cache=FeatureCache(out / f"cache-{tag}"))
    ff = source_features(generator, extractor, n=N, seed=1)
    save_file(
        {"real": fr.features, "fake": ff.features, "shape": ff.labels["shape"]},
        str(out / f"features-{tag}.safetensors"),
    )
    result = compute_metrics(
        real,
        generator,
        features=extractor,
        metrics=["fid", "kid", "prdc"],
        n=N,
        by=["shape"],
        bootstrap=10,
        cache=False,
    )
    (out / f"result-{tag}.json").write_text(json.dumps(result))


def test_two_gloo_processes_equal_one_process(tmp_path):
    # torchrun as a user runs it (its agent holds the rendezvous store; the ranks join from its variables)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo, even on a GPU machine
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.Popen(
        [*command, __file__, str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    _run(tmp_path, "single")  # meanwhile, the same in this one process
    out = proc.communicate(timeout=300)[0].decode()
    # gloo sometimes aborts a rank at interpreter exit, after its work is written ("terminate called without
    # an active exception", about 1 run in 10 on 2 busy cores): a teardown flake, tracked as follow-up work.
    # Every result file must still exist and is checked below, so the equality claim is tested either way.
    written = all((tmp_path / f"result-rank{r}.json").is_file() for r in range(2))
    teardown_abort = "terminate called without an active exception" in out and written
    if proc.returncode != 0 and teardown_abort:
        warnings.warn("a gloo rank aborted at exit after writing its results", stacklevel=1)
    assert proc.returncode == 0 or teardown_abort, out[-5000:]

    one = load_file(str(tmp_path / "features-single.safetensors"))
    expected = json.loads((tmp_path / "result-single.json").read_text())
    for rank in range(2):
        got = load_file(str(tmp_path / f"features-rank{rank}.safetensors"))
        for key in ("real", "fake"):
            assert got[key].shape == one[key].shape == (N, 24)
            torch.testing.assert_close(got[key], one[key], rtol=0, atol=1e-6, msg=key)
        assert torch.equal(got["shape"], one["shape"])
        result = json.loads((tmp_path / f"result-rank{rank}.json").read_text())
        for key in ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage"):
            assert result[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-12), key
        for metric, interval in expected["ci"].items():
            for bound in ("low", "high", "estimate"):
                assert result["ci"][metric][bound] == pytest.approx(interval[bound], rel=1e-6, abs=1e-12)
        for value, entry in expected["groups"]["shape"].items():
            assert result["groups"]["shape"][value] == pytest.approx(entry, rel=1e-6, abs=1e-12), value
        assert result["sources"]["fake"]["processes"] == 2
    assert expected["sources"]["fake"]["processes"] == 1
    # Only rank 0 writes the feature cache.
    assert len(list((tmp_path / "cache-rank0").glob("*.safetensors"))) == 1
    assert not (tmp_path / "cache-rank1").exists()


def test_a_generator_sample_is_its_seeded_blocks():
    # The documented scheme, checked against the generator's own sampling: block b of the sample is
    # gen.sample(count_b, seed=block_seed(seed, b)), block 0 with the seed itself.
    _, generator, extractor = _setup()
    streamed = source_features(generator, extractor, n=N, seed=5, shard=Shard())
    blocks = sample_blocks(N, 5)
    assert [c for c, _ in blocks] == [SAMPLE_BLOCK, SAMPLE_BLOCK, N - 2 * SAMPLE_BLOCK]
    assert blocks[0][1] == 5 and len({s for _, s in blocks}) == 3
    images = torch.cat([generator.sample(count, seed=seed) for count, seed in blocks])
    torch.testing.assert_close(streamed.features, extractor.extract(images), rtol=1e-5, atol=1e-6)
    assert block_seed(5, 1) == blocks[1][1] and 0 <= block_seed(2**62, 7) < 2**62


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_shares_partition_the_work_in_order(world):
    for units in (0, 1, 2, 5, 600):
        spans = [Shard(rank, world).span(units) for rank in range(world)]
        assert [i for s in spans for i in s] == list(range(units))
        assert max(map(len, spans)) - min(map(len, spans)) <= 1
        assert units == 0 or 0 in spans[0]  # rank 0 holds the first unit (the fast-mode probe)


def test_no_process_group_means_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    shard = current_shard()
    assert (shard.rank, shard.world, shard.active, shard.is_main) == (0, 1, False, True)


if __name__ == "__main__":
    _shard = current_shard()  # joins the group torchrun's variables describe
    _run(Path(sys.argv[1]), f"rank{_shard.rank}")
