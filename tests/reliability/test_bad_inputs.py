"""Reliability: a corpus of bad inputs, each of which must fail clearly and leave the store as it was.

Every case plants one bad input (a broken image, a config with a typo, weights with the wrong hash, a
generator that returns NaN, a policy with an unknown metric, a damaged store ...) in a private copy of a
small baseline store, then drives auditkit's public Python API or its CLI (``auditkit.cli.main``, in
process, as a user would). It must raise an ``AuditKitError`` subclass (Python) or print one line starting
``error:`` with no traceback and exit with status 2 (CLI); the message must name the offending input.
Afterwards ``RunStore.check()`` may report only the damage the case planted, and every file and index row
written before the case must still be there unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from auditkit import dashboard
from auditkit.audit import audit, training_data
from auditkit.cli import main
from auditkit.data import ImageSet, Shapes
from auditkit.errors import (
    AuditKitError,
    ConfigError,
    DataError,
    GeneratorError,
    StoreError,
    WeightsError,
)
from auditkit.generators import ModuleGenerator
from auditkit.store import RunStore
from auditkit.training import train

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the shared helpers live there, not in a package
sys.path.insert(0, str(HERE))
from _bad_images import (  # noqa: E402
    corrupt_bytes,
    float_tiff,
    int32_tiff,
    rgb_png,
    scrambled_png,
    truncated_png,
    zero_byte,
)
from _corpus_support import (  # noqa: E402
    TINY_TRAIN,
    Baseline,
    Env,
    Probe,
    assert_consistent,
    assert_nothing_lost,
    copy_env,
    file_hashes,
    index_snapshot,
)
from _standins import ShapesStandIn  # noqa: E402

UNKNOWN_RUN = "run-20200101-000000-abcdef"
UNKNOWN_AUDIT = "audit-20200101-000000-abcdef"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, trained_judge) -> Baseline:
    root = tmp_path_factory.mktemp("baseline")
    store = RunStore(root / "home")
    run = train(TINY_TRAIN, store=store, progress=False)
    trained_judge.save(root / "judge")
    done = audit(
        run.run_id,
        training_data(run.run_id, store),
        trained_judge,
        n=60,
        stages=("bias",),
        attributes=["colour"],
        n_boot=10,
        store=store,
        progress=False,
    )
    assert store.check() == []
    return Baseline(root, run.run_id, done.audit_id)


# --------------------------------------------------------------------------- the corpus

CASES: dict[str, Callable[[Env], Probe]] = {}


def case(name: str) -> Callable[[Callable[[Env], Probe]], Callable[[Env], Probe]]:
    def register(fn: Callable[[Env], Probe]) -> Callable[[Env], Probe]:
        assert name not in CASES, name
        CASES[name] = fn
        return fn

    return register


class Tripwire:
    """Unpickling this object creates ``path``: proof that auditkit unpickled a file it should not have."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickle_bomb(path: Path, marker: Path) -> None:
    torch.save({"weight": Tripwire(marker)}, path)


def _not_unpickled(marker: Path) -> Callable[[], None]:
    def check() -> None:
        assert not marker.exists(), f"{marker} exists: a pickle was loaded"

    return check


def _image_folder(env: Env, bad_name: str, write_bad: Callable[[Path], None]) -> tuple[Path, Path]:
    """A folder with two good PNGs and one bad file, and a CSV labelling all three."""
    folder = env.tmp / "images"
    folder.mkdir()
    rgb_png(folder / "a.png", 8, 8, seed=1)
    rgb_png(folder / "b.png", 8, 8, seed=2)
    write_bad(folder / bad_name)
    csv = env.tmp / "attrs.csv"
    csv.write_text(f"filename,colour\na.png,red\nb.png,blue\n{bad_name},green\n")
    return folder, csv


def _describe(folder: Path, csv: Path | None) -> list[str]:
    argv = ["data", "describe", str(folder)]
    return argv + (["--attributes-file", str(csv)] if csv is not None else [])


# -- data ---------------------------------------------------------------------------------------------


@case("data/corrupt-bytes")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "bad.png", corrupt_bytes)
    return Probe(names=("bad.png", "not an image"), argv=_describe(folder, csv), error=DataError)


@case("data/truncated-png")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "cut.png", truncated_png)
    return Probe(names=("cut.png", "truncated"), argv=_describe(folder, csv), error=DataError)


@case("data/zero-byte")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "empty.png", zero_byte)
    return Probe(names=("empty.png", "0 bytes"), argv=_describe(folder, csv), error=DataError)


@case("data/scrambled-png")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "noise.png", scrambled_png)
    return Probe(names=("noise.png", "corrupt"), argv=_describe(folder, csv), error=DataError)


@case("data/float-tiff-outside-0-1")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "hot.tif", lambda p: float_tiff(p, np.linspace(0, 5, 64).reshape(8, 8)))
    return Probe(names=("hot.tif", "floats from 0 to 5"), argv=_describe(folder, csv), error=DataError)


@case("data/float-tiff-with-nan")
def _(env: Env) -> Probe:
    values = np.full((8, 8), 0.5)
    values[3, 3] = np.nan
    folder, csv = _image_folder(env, "nan.tif", lambda p: float_tiff(p, values))
    return Probe(names=("nan.tif", "floats"), argv=_describe(folder, csv), error=DataError)


@case("data/int32-tiff-beyond-16-bit")
def _(env: Env) -> Probe:
    values = np.arange(64).reshape(8, 8) * 2000  # up to 126 000
    folder, csv = _image_folder(env, "deep.tif", lambda p: int32_tiff(p, values))
    return Probe(names=("deep.tif", "32-bit integers"), argv=_describe(folder, csv), error=DataError)


@case("data/csv-names-a-missing-image")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "c.png", lambda p: rgb_png(p, 8, 8))
    csv.write_text("filename,colour\na.png,red\nb.png,blue\nc.png,green\nghost.png,red\n")
    return Probe(names=("ghost.png", "line 5"), argv=_describe(folder, csv), error=DataError)


@case("data/csv-row-with-too-few-values")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "c.png", lambda p: rgb_png(p, 8, 8))
    csv.write_text("filename,colour,shape\na.png,red,circle\nb.png,blue\nc.png,green,square\n")
    return Probe(names=("b.png", "1 value on line 3"), argv=_describe(folder, csv), error=DataError)


@case("data/csv-header-only-one-column")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "c.png", lambda p: rgb_png(p, 8, 8))
    csv.write_text("filename;colour\na.png;red\n")
    return Probe(names=(str(csv), "header"), argv=_describe(folder, csv), error=DataError)


@case("data/csv-empty")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "c.png", lambda p: rgb_png(p, 8, 8))
    csv.write_text("")
    return Probe(names=(str(csv), "is empty"), argv=_describe(folder, csv), error=DataError)


@case("data/several-unlabelled-images")
def _(env: Env) -> Probe:
    folder, csv = _image_folder(env, "c.png", lambda p: rgb_png(p, 8, 8))
    csv.write_text("filename,colour\na.png,red\n")  # b.png and c.png have no row: listed on two lines
    return Probe(names=("2 images", "b.png", "c.png"), argv=_describe(folder, csv), error=DataError)


@case("data/csv-missing")
def _(env: Env) -> Probe:
    folder, _ = _image_folder(env, "c.png", lambda p: rgb_png(p, 8, 8))
    missing = env.tmp / "nowhere.csv"
    return Probe(names=(str(missing), "does not exist"), argv=_describe(folder, missing), error=DataError)


@case("data/empty-folder")
def _(env: Env) -> Probe:
    folder = env.tmp / "nothing"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    return Probe(names=(str(folder), "no image files"), argv=_describe(folder, None), error=DataError)


@case("data/nan-pixels")
def _(env: Env) -> Probe:
    images = torch.rand(5, 3, 8, 8)
    images[3, 1, 2, 2] = float("nan")
    labels = torch.zeros(5, 1, dtype=torch.int64)
    return Probe(
        names=("NaN", "image 3"),
        call=lambda: ImageSet(images, labels, {"colour": ["red"]}),
        error=DataError,
    )


@case("data/wrong-shape")
def _(env: Env) -> Probe:
    images = torch.rand(5, 8, 8)  # N×H×W: no channel axis
    return Probe(
        names=("N×C×H×W", "(5, 8, 8)"),
        call=lambda: ImageSet(images, torch.zeros(5, 1, dtype=torch.int64), {"colour": ["red"]}),
        error=DataError,
    )


@case("data/wrong-range-0-255")
def _(env: Env) -> Probe:
    images = torch.rand(5, 3, 8, 8)
    images[2] *= 255
    return Probe(
        names=("[0, 1]", "image 2"),
        call=lambda: ImageSet(images, torch.zeros(5, 1, dtype=torch.int64), {"colour": ["red"]}),
        error=DataError,
    )


@case("data/label-outside-vocabulary")
def _(env: Env) -> Probe:
    labels = torch.tensor([[0], [1], [2], [5]])
    return Probe(
        names=("'colour'", "5"),
        call=lambda: ImageSet(torch.rand(4, 3, 8, 8), labels, {"colour": ["red", "green", "blue"]}),
        error=DataError,
    )


@case("data/judge-gets-wrong-image-size")
def _(env: Env) -> Probe:
    from auditkit.bias import Judge

    judge = Judge.load(env.judge_dir)
    return Probe(names=("(4, 3, 16, 16)", "3×32×32"), call=lambda: judge.predict(torch.rand(4, 3, 16, 16)))


@case("data/skew-with-unknown-value")
def _(env: Env) -> Probe:
    argv = ["data", "preview", "shapes", "--n", "20", "--skew", "{colour: {purple: 1.0}}"]
    argv += ["--out", str(env.tmp / "grid.png")]
    return Probe(names=("'purple'", "colour"), argv=argv, error=ConfigError)


# -- configs ------------------------------------------------------------------------------------------


def _train_yaml(env: Env, text: str | None = None, **changes) -> list[str]:
    import yaml

    path = env.tmp / "train.yaml"
    if text is None:
        config = json.loads(json.dumps({**TINY_TRAIN, "steps": 2}))
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        text = yaml.safe_dump(config)
    path.write_text(text)
    return ["train", str(path), "--quiet"]


@case("config/unknown-family")
def _(env: Env) -> Probe:
    return Probe(names=("'gann'", "dcgan"), argv=_train_yaml(env, family="gann"), error=ConfigError)


@case("config/image-size-the-family-cannot-make")
def _(env: Env) -> Probe:
    argv = _train_yaml(env, data={"size": 24})
    return Probe(names=("power-of-two", "24"), argv=argv, error=ConfigError)


@case("config/wrong-type")
def _(env: Env) -> Probe:
    return Probe(names=("steps", "'many'"), argv=_train_yaml(env, steps="many"), error=ConfigError)


@case("config/unknown-key")
def _(env: Env) -> Probe:
    return Probe(names=("unknown key 'stepz'",), argv=_train_yaml(env, stepz=3), error=ConfigError)


@case("config/unknown-model-key")
def _(env: Env) -> Probe:
    argv = _train_yaml(env, model={"widht": 8})
    return Probe(names=("unknown key 'widht'", "dcgan"), argv=argv, error=ConfigError)


@case("config/bad-yaml")
def _(env: Env) -> Probe:
    argv = _train_yaml(env, text="family: dcgan\nsteps: [unclosed\n")
    return Probe(names=(str(env.tmp / "train.yaml"), "cannot read"), argv=argv, error=ConfigError)


@case("config/yaml-list-not-mapping")
def _(env: Env) -> Probe:
    argv = _train_yaml(env, text="- family: dcgan\n- steps: 3\n")
    return Probe(names=(str(env.tmp / "train.yaml"), "mapping"), argv=argv, error=ConfigError)


@case("config/missing-file")
def _(env: Env) -> Probe:
    missing = env.tmp / "missing.yaml"
    return Probe(names=(str(missing),), argv=["train", str(missing)], error=ConfigError)


@case("config/condition-not-an-attribute")
def _(env: Env) -> Probe:
    argv = _train_yaml(env, data={"condition": "hue"})
    return Probe(names=("'hue'", "condition"), argv=argv, error=ConfigError)


@case("config/batch-larger-than-data")
def _(env: Env) -> Probe:
    argv = _train_yaml(env, batch_size=500)
    return Probe(names=("batch_size 500", "96"), argv=argv, error=ConfigError)


@case("config/bf16-on-cpu")
def _(env: Env) -> Probe:
    return Probe(names=("bf16",), argv=_train_yaml(env, precision="bf16"), error=ConfigError)


@case("config/resume-with-a-changed-setting")
def _(env: Env) -> Probe:
    argv = ["train", "--resume", env.run_id, "--lr", "0.1"]
    return Probe(names=("--resume", "lr"), argv=argv, error=ConfigError)


@case("config/audit-unknown-stage")
def _(env: Env) -> Probe:
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--stage", "fairness", "--quiet"]
    return Probe(names=("'fairness'", "bias"), argv=argv, error=ConfigError)


@case("config/audit-one-attribute-intersection")
def _(env: Env) -> Probe:
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--intersection", "shape", "--quiet"]
    return Probe(names=("intersection", "'shape'"), argv=argv, error=ConfigError)


# -- weights ------------------------------------------------------------------------------------------


@case("weights/generator-missing")
def _(env: Env) -> Probe:
    folder = env.tmp / "empty-run"
    folder.mkdir()
    argv = ["sample", str(folder), "--out", str(env.tmp / "s.png")]
    return Probe(names=(str(folder / "generator.safetensors"),), argv=argv, error=WeightsError)


@case("weights/generator-wrong-keys")
def _(env: Env) -> Probe:
    from safetensors import safe_open

    source = env.run_dir / "generator.safetensors"
    with safe_open(str(source), framework="pt") as f:
        meta = f.metadata()
        tensors = {f"renamed.{k}": f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    wrong = env.tmp / "wrong" / "generator.safetensors"
    wrong.parent.mkdir()
    save_file(tensors, str(wrong), metadata=meta)
    argv = ["sample", str(wrong.parent), "--out", str(env.tmp / "s.png")]
    return Probe(names=(str(wrong), "do not fit"), argv=argv, error=WeightsError)


@case("weights/generator-is-a-pickle")
def _(env: Env) -> Probe:
    marker = env.tmp / "unpickled"
    bomb = env.tmp / "bomb" / "generator.safetensors"
    bomb.parent.mkdir()
    _pickle_bomb(bomb, marker)
    argv = ["sample", str(bomb.parent), "--out", str(env.tmp / "s.png")]
    return Probe(names=(str(bomb),), argv=argv, error=WeightsError, after=_not_unpickled(marker))


@case("weights/generator-without-auditkit-metadata")
def _(env: Env) -> Probe:
    plain = env.tmp / "plain" / "generator.safetensors"
    plain.parent.mkdir()
    save_file({"w": torch.zeros(3)}, str(plain))
    argv = ["sample", str(plain.parent), "--out", str(env.tmp / "s.png")]
    return Probe(names=(str(plain), "not an auditkit generator"), argv=argv, error=WeightsError)


@case("weights/judge-wrong-hash")
def _(env: Env) -> Probe:
    weights = env.judge_dir / "judge.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--n", "20", "--quiet"]
    return Probe(names=(str(weights), "SHA-256"), argv=argv, error=WeightsError)


@case("weights/judge-description-missing")
def _(env: Env) -> Probe:
    (env.judge_dir / "judge.json").unlink()
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--n", "20", "--quiet"]
    return Probe(names=(str(env.judge_dir / "judge.json"), "missing"), argv=argv, error=WeightsError)


@case("weights/inception-wrong-hash")
def _(env: Env) -> Probe:
    fake = env.tmp / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"w": torch.zeros(2)}, fake)
    argv = ["metrics", "fid", "shapes", "shapes", "--features", "inception"]
    argv += ["--inception-weights", str(fake), "--n", "10", "--no-cache"]
    return Probe(names=(str(fake), "SHA-256"), argv=argv, error=WeightsError)


@case("weights/inception-is-a-pickle")
def _(env: Env) -> Probe:
    from auditkit.metrics.features import inception_extractor

    marker = env.tmp / "unpickled"
    bomb = env.tmp / "weights.pth"
    _pickle_bomb(bomb, marker)
    digest = hashlib.sha256(bomb.read_bytes()).hexdigest()  # the right hash: only the loader stands guard
    return Probe(
        names=(str(bomb), "never pickled objects"),
        call=lambda: inception_extractor(bomb, sha256=digest, device="cpu"),
        error=WeightsError,
        after=_not_unpickled(marker),
    )


def _last_checkpoint(env: Env) -> Path:
    return sorted((env.run_dir / "checkpoints").glob("step-*.safetensors"))[-1]


@case("weights/checkpoint-truncated")
def _(env: Env) -> Probe:
    checkpoint = _last_checkpoint(env)
    checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    return Probe(
        names=(str(checkpoint), "damaged", "remove_artifact"),
        argv=["train", "--resume", env.run_id, "--steps", "6", "--quiet"],
        error=WeightsError,
        planted=(f"'checkpoints/{checkpoint.name}' of {env.run_id} changed since it was indexed",),
        touched=(checkpoint,),
    )


@case("weights/checkpoint-is-a-pickle")
def _(env: Env) -> Probe:
    checkpoint = _last_checkpoint(env)
    marker = env.tmp / "unpickled"
    _pickle_bomb(checkpoint, marker)
    return Probe(
        names=(str(checkpoint),),
        argv=["train", "--resume", env.run_id, "--steps", "6", "--quiet"],
        error=WeightsError,
        planted=(f"'checkpoints/{checkpoint.name}' of {env.run_id} changed since it was indexed",),
        touched=(checkpoint,),
        after=_not_unpickled(marker),
    )


# -- generators ---------------------------------------------------------------------------------------


class Broken(torch.nn.Module):
    """A generator network whose batch ``bad_batch`` (counting from 0) goes wrong in a chosen way."""

    def __init__(self, how: str, bad_batch: int = 2) -> None:
        super().__init__()
        self.how, self.bad_batch, self.calls = how, bad_batch, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        images = torch.sigmoid(z[:, :1, None, None].expand(-1, 3, 8, 8)).clone()
        bad = self.calls == self.bad_batch
        self.calls += 1
        if bad and self.how == "nan":
            images[1, 0, 0, 0] = float("nan")
        elif bad and self.how == "inf":
            images[0, 2, 3, 3] = float("inf")
        elif bad and self.how == "shape":
            images = images[:, :, :4, :4]
        elif bad and self.how == "range":
            images = images * 2 - 1
        elif bad and self.how == "numpy":
            return images.numpy()
        return images


def _broken(how: str) -> ModuleGenerator:
    return ModuleGenerator(Broken(how), latent_shape=(4,), image_shape=(3, 8, 8), name=f"broken-{how}")


@case("generator/nan-in-a-batch")
def _(env: Env) -> Probe:
    gen = _broken("nan")
    return Probe(
        names=("broken-nan", "batch 2", "NaN", "image 9"),
        call=lambda: gen.sample(16, seed=0, batch_size=4),
        error=GeneratorError,
    )


@case("generator/infinity-in-a-batch")
def _(env: Env) -> Probe:
    gen = _broken("inf")
    return Probe(
        names=("broken-inf", "batch 2", "infinite", "image 8"),
        call=lambda: gen.sample(16, seed=0, batch_size=4),
        error=GeneratorError,
    )


@case("generator/wrong-shape")
def _(env: Env) -> Probe:
    gen = _broken("shape")
    return Probe(
        names=("broken-shape", "batch 2", "(4, 3, 4, 4)", "(4, 3, 8, 8)"),
        call=lambda: gen.sample(16, seed=0, batch_size=4),
        error=GeneratorError,
    )


@case("generator/wrong-range")
def _(env: Env) -> Probe:
    gen = _broken("range")
    return Probe(
        names=("broken-range", "batch 2", "outside [0, 1]", "output_range"),
        call=lambda: gen.sample(16, seed=0, batch_size=4),
        error=GeneratorError,
    )


@case("generator/returns-numpy")
def _(env: Env) -> Probe:
    gen = _broken("numpy")
    return Probe(
        names=("broken-numpy", "ndarray"),
        call=lambda: gen.sample(16, seed=0, batch_size=4),
        error=GeneratorError,
    )


@case("generator/unknown-label-name")
def _(env: Env) -> Probe:
    argv = ["sample", env.run_id, "--n", "4", "--labels", "hexagon", "--out", str(env.tmp / "s.png")]
    return Probe(names=("'hexagon'", "circle"), argv=argv, error=ConfigError)


@case("generator/label-index-out-of-range")
def _(env: Env) -> Probe:
    from auditkit.generators import load_generator

    gen = load_generator(env.run_dir)
    return Probe(names=("class index 7", "circle"), call=lambda: gen.sample(4, labels=7, seed=0))


@case("generator/labels-for-an-unconditional-generator")
def _(env: Env) -> Probe:
    gen = _broken("none")
    return Probe(names=("broken-none", "unconditional"), call=lambda: gen.sample(4, labels=1, seed=0))


@case("generator/nan-during-an-audit")
def _(env: Env) -> Probe:
    from auditkit.bias import Judge

    store, judge = env.store(), Judge.load(env.judge_dir)

    def run() -> None:
        audit(ShapesStandIn(nan_batch=1), Shapes(100, seed=4), judge, n=600, stages=("bias",), store=store,
              progress=False)  # fmt: skip

    def after() -> None:
        failed = store.list_audits()[0]
        assert failed.status == "failed" and not (failed.path / "audit.json").exists()

    return Probe(names=("shapes-stand-in", "batch 1", "NaN"), call=run, error=GeneratorError, after=after)


# -- policies -----------------------------------------------------------------------------------------


def _audit_with_policy(env: Env, text: str) -> list[str]:
    policy = env.tmp / "policy.yaml"
    policy.write_text(text)
    return [
        "audit",
        env.run_id,
        "--judge",
        str(env.judge_dir),
        "--policy",
        str(policy),
        "--n",
        "20",
        "--quiet",
    ]


@case("policy/unknown-metric")
def _(env: Env) -> Probe:
    argv = _audit_with_policy(env, "policy: 1\nname: p\nrules:\n  bias.fairness: {warn: 0.1}\n")
    return Probe(names=("bias.fairness", str(env.tmp / "policy.yaml")), argv=argv, error=ConfigError)


@case("policy/threshold-not-a-number")
def _(env: Env) -> Probe:
    argv = _audit_with_policy(env, "policy: 1\nname: p\nrules:\n  bias.tvd: {warn: high}\n")
    return Probe(names=("rules.bias.tvd.warn", "'high'"), argv=argv, error=ConfigError)


@case("policy/thresholds-in-the-wrong-order")
def _(env: Env) -> Probe:
    argv = _audit_with_policy(env, "policy: 1\nname: p\nrules:\n  quality.recall: {warn: 0.2, fail: 0.5}\n")
    return Probe(names=("quality.recall", "0.2", "0.5"), argv=argv, error=ConfigError)


@case("policy/nan-threshold")
def _(env: Env) -> Probe:
    argv = _audit_with_policy(env, "policy: 1\nname: p\nrules:\n  bias.tvd: {fail: .nan}\n")
    return Probe(names=("bias.tvd", "finite"), argv=argv, error=ConfigError)


@case("policy/bad-yaml")
def _(env: Env) -> Probe:
    argv = _audit_with_policy(env, "policy: 1\nrules: {bias.tvd: [\n")
    return Probe(names=(str(env.tmp / "policy.yaml"), "cannot read"), argv=argv, error=ConfigError)


@case("policy/unknown-key")
def _(env: Env) -> Probe:
    argv = _audit_with_policy(env, "policy: 1\nname: p\nrulez: {}\n")
    return Probe(names=("unknown key 'rulez'",), argv=argv, error=ConfigError)


@case("policy/missing-file")
def _(env: Env) -> Probe:
    missing = env.tmp / "no-policy.yaml"
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--policy", str(missing), "--quiet"]
    return Probe(names=(str(missing), "does not exist"), argv=argv, error=ConfigError)


# -- stores -------------------------------------------------------------------------------------------


@case("store/unknown-run-id")
def _(env: Env) -> Probe:
    return Probe(
        names=(UNKNOWN_RUN, "auditkit runs list"), argv=["runs", "show", UNKNOWN_RUN], error=StoreError
    )


@case("store/malformed-run-id")
def _(env: Env) -> Probe:
    return Probe(names=("'run-42'", "ids look like"), argv=["runs", "show", "run-42"], error=StoreError)


@case("store/unknown-audit-to-resume")
def _(env: Env) -> Probe:
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--resume", UNKNOWN_AUDIT, "--quiet"]
    argv += ["--n", "60", "--stage", "bias", "--attribute", "colour", "--bootstrap", "10"]
    return Probe(names=(UNKNOWN_AUDIT,), argv=argv, error=StoreError)


@case("store/resume-a-completed-audit")
def _(env: Env) -> Probe:
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--resume", env.audit_id, "--quiet"]
    argv += ["--n", "60", "--stage", "bias", "--attribute", "colour", "--bootstrap", "10", "--seed", "0"]
    return Probe(names=(env.audit_id, "already completed"), argv=argv, error=StoreError)


@case("store/report-of-an-unknown-audit")
def _(env: Env) -> Probe:
    return Probe(names=(UNKNOWN_AUDIT,), argv=["report", UNKNOWN_AUDIT, "--format", "md"], error=StoreError)


@case("store/index-is-garbage")
def _(env: Env) -> Probe:
    index = env.home / "index.sqlite"
    index.write_bytes(b"not a database at all " * 200)
    return Probe(
        names=(str(index), "move it aside"),
        argv=["runs", "list"],
        error=StoreError,
        index_damaged=True,
        after=lambda: _assert_bytes(index, b"not a database at all " * 200),
    )


@case("store/index-truncated")
def _(env: Env) -> Probe:
    index = env.home / "index.sqlite"
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])
    return Probe(names=(str(index),), argv=["runs", "list"], error=StoreError, index_damaged=True)


@case("store/index-from-a-newer-auditkit")
def _(env: Env) -> Probe:
    index = env.home / "index.sqlite"
    with sqlite3.connect(index) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    return Probe(
        names=(str(index), "version 99"), argv=["runs", "list"], error=StoreError, index_damaged=True
    )


def _delete_run_folder(env: Env) -> tuple[str, ...]:
    shutil.rmtree(env.run_dir)
    return (f"{env.run_id} is indexed but its folder", f"of {env.run_id} is indexed but its file")


@case("store/run-folder-deleted-then-resume")
def _(env: Env) -> Probe:
    planted = _delete_run_folder(env)
    argv = ["train", "--resume", env.run_id, "--steps", "6", "--quiet"]
    return Probe(
        names=(str(env.run_dir), "missing"),
        argv=argv,
        error=StoreError,
        planted=planted,
        touched=(env.run_dir,),
    )


@case("store/run-folder-deleted-then-audit")
def _(env: Env) -> Probe:
    planted = _delete_run_folder(env)
    argv = ["audit", env.run_id, "--judge", str(env.judge_dir), "--n", "20", "--quiet"]
    return Probe(
        names=(str(env.run_dir), "missing"),
        argv=argv,
        error=StoreError,
        planted=planted,
        touched=(env.run_dir,),
    )


@case("store/run-folder-deleted-then-sample")
def _(env: Env) -> Probe:
    planted = _delete_run_folder(env)
    argv = ["sample", env.run_id, "--out", str(env.tmp / "s.png")]
    return Probe(
        names=(str(env.run_dir), "missing"),
        argv=argv,
        error=StoreError,
        planted=planted,
        touched=(env.run_dir,),
    )


@case("store/half-written-generator")
def _(env: Env) -> Probe:
    weights = env.run_dir / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return Probe(
        names=(str(weights), "damaged"),
        argv=["sample", env.run_id, "--out", str(env.tmp / "s.png")],
        error=WeightsError,
        planted=(f"'generator.safetensors' of {env.run_id} changed since it was indexed",),
        touched=(weights,),
    )


@case("store/half-written-audit-json-report")
def _(env: Env) -> Probe:
    result = env.audit_dir / "audit.json"
    result.write_bytes(result.read_bytes()[:200])
    return Probe(
        names=(str(result),),
        argv=["report", env.audit_id, "--format", "md", "--out", str(env.tmp / "report")],
        error=ConfigError,
        planted=(f"'audit.json' of {env.audit_id} changed since it was indexed",),
        touched=(result,),
    )


@case("store/half-written-audit-json-dashboard")
def _(env: Env) -> Probe:
    result = env.audit_dir / "audit.json"
    result.write_bytes(result.read_bytes()[:200])
    store = env.store()
    return Probe(
        names=(str(result),),
        call=lambda: dashboard.load_audit(store, env.audit_id),
        error=ConfigError,
        planted=(f"'audit.json' of {env.audit_id} changed since it was indexed",),
        touched=(result,),
    )


@case("store/home-is-a-file")
def _(env: Env) -> Probe:
    not_a_folder = env.tmp / "home-file"
    not_a_folder.write_text("I am a file")
    return Probe(
        names=(str(not_a_folder), "AUDITKIT_HOME"), call=lambda: RunStore(not_a_folder), error=StoreError
    )


@case("store/artifact-path-leaves-the-run")
def _(env: Env) -> Probe:
    store = env.store()
    call = lambda: store.write_artifact(env.run_id, "../escape.bin", b"x")  # noqa: E731
    return Probe(names=("'../escape.bin'", "leaves its folder"), call=call, error=ConfigError)


@case("store/non-finite-metric")
def _(env: Env) -> Probe:
    store = env.store()
    call = lambda: store.log_metrics(env.run_id, {"fid": 1.0, "loss": float("nan")}, step=9)  # noqa: E731
    return Probe(names=("'loss'", env.run_id, "nan"), call=call, error=ConfigError)


def _assert_bytes(path: Path, expected: bytes) -> None:
    assert path.read_bytes() == expected, f"{path} was modified"


# --------------------------------------------------------------------------- the test


def _cli(capsys, monkeypatch, argv: list[str]) -> tuple[int, str, BaseException | None]:
    """Run the CLI in process as a user would: (exit status, stderr, the exception ``main`` turned into
    that status)."""
    from auditkit import cli as cli_module

    raised: list[BaseException] = []
    group_main = cli_module.cli.main

    def recording(*args, **kwargs):
        try:
            return group_main(*args, **kwargs)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(cli_module.cli, "main", recording)
    with pytest.raises(SystemExit) as done:
        main(argv)
    _, err = capsys.readouterr()
    return int(done.value.code or 0), err, raised[0] if raised else None


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_clearly_and_spares_the_store(
    name: str, baseline: Baseline, tmp_path: Path, capsys, monkeypatch
) -> None:
    env = copy_env(baseline, tmp_path)
    monkeypatch.setenv("AUDITKIT_HOME", str(env.home))
    monkeypatch.chdir(env.tmp)
    before_files, before_index = file_hashes(env.home), index_snapshot(env.store())
    probe = CASES[name](env)
    if probe.argv is not None:
        code, err, exc = _cli(capsys, monkeypatch, probe.argv)
        assert code == 2, err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
        assert isinstance(exc, probe.error), (type(exc), err)
        message = err
    else:
        assert probe.call is not None
        with pytest.raises(AuditKitError) as raised:
            probe.call()
        message = str(raised.value)
        assert isinstance(raised.value, probe.error), (type(raised.value), message)
    for needle in probe.names:
        assert needle in message, f"{needle!r} not named in: {message}"
    if probe.after is not None:
        probe.after()
    assert_nothing_lost(before_files, before_index, env, probe)
    assert_consistent(env, probe)


def test_the_corpus_is_large_and_spans_every_area() -> None:
    areas = {name.split("/")[0] for name in CASES}
    assert len(CASES) >= 40 and areas == {"data", "config", "weights", "generator", "policy", "store"}


# --------------------------------------------------------------------------- damage that is repaired


def test_a_log_line_torn_by_a_crash_does_not_stop_the_resume(
    baseline: Baseline, tmp_path: Path, capsys, monkeypatch
) -> None:
    env = copy_env(baseline, tmp_path)
    monkeypatch.setenv("AUDITKIT_HOME", str(env.home))
    env.store().set_run_status(env.run_id, "interrupted")
    log = env.run_dir / "metrics.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 5, "loss_d": 0.6')  # a crash in the middle of appending step 5
    code, err, exc = _cli(capsys, monkeypatch, ["train", "--resume", env.run_id, "--steps", "6", "--quiet"])
    assert code == 0 and exc is None, err
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5, 6]
    indexed = sorted({m.step for m in env.store().metrics(env.run_id)})
    assert indexed == [1, 2, 3, 4, 5, 6] and env.store().check() == []


def test_a_damaged_stage_cache_is_recomputed_to_the_same_result(
    baseline: Baseline, tmp_path: Path, trained_judge, monkeypatch
) -> None:
    import auditkit.audit as audit_module
    from auditkit.audit import AuditResult

    env = copy_env(baseline, tmp_path)
    store = env.store()
    options = dict(n=60, stages=("bias",), attributes=["colour"], n_boot=10, store=store, progress=False)
    data = training_data(env.run_id, store)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_module, "_bias", interrupted)
    with pytest.raises(KeyboardInterrupt):
        audit(env.run_id, data, trained_judge, **options)
    monkeypatch.undo()
    stopped = store.list_audits()[0]
    cache = stopped.path / "stages"
    (cache / "samples.json").write_text('{"key": "')  # cut short
    (cache / "samples.safetensors").write_bytes(b"\x00" * 10)
    resumed = audit(env.run_id, data, trained_judge, resume=stopped.id, **options)
    expected = AuditResult.load(env.audit_dir)  # the baseline's audit: the same settings, never interrupted
    assert resumed.to_json(runtime=False) == expected.to_json(runtime=False)
    assert store.check() == []  # the rewritten cache files are indexed with their new hashes


# --------------------------------------------------------------------------- through a real process


def _python_m_auditkit(*args: str, env: dict[str, str], **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        **options,
    )


def test_a_real_process_exits_2_with_one_line(baseline: Baseline, tmp_path: Path) -> None:
    env = copy_env(baseline, tmp_path)
    index = env.home / "index.sqlite"
    index.write_bytes(b"garbage" * 500)
    done = _python_m_auditkit("runs", "list", env={**os.environ, "AUDITKIT_HOME": str(env.home)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert str(index) in done.stderr and "Traceback" not in done.stderr


def _read_only_command(home: Path, args: list[str]) -> list[str] | None:
    """``args`` run with ``home`` read-only, or ``None`` where this machine cannot arrange that.

    Root ignores permission bits, so as root the home is bind-mounted read-only in a private mount
    namespace of the child (nothing outside the child sees the mount); otherwise it is chmod-ed.
    """
    if os.geteuid() != 0:
        home.chmod(0o555)
        return args
    if shutil.which("unshare") is None:
        return None
    folder = shlex.quote(str(home))
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder}"
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", mount], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return None
    return ["unshare", "--mount", "sh", "-c", f"{mount} && exec {shlex.join(args)}"]


def test_a_read_only_home_is_refused_and_left_alone(baseline: Baseline, tmp_path: Path) -> None:
    env = copy_env(baseline, tmp_path)
    before = file_hashes(env.home)
    args = [sys.executable, "-m", "auditkit", "runs", "show", env.run_id]
    command = _read_only_command(env.home, args)
    if command is None:
        pytest.skip("cannot make a folder read-only for root here (no unshare, or no mount permission)")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "AUDITKIT_HOME": str(env.home)},
        )
    finally:
        env.home.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert str(env.home) in done.stderr and "not writable" in done.stderr
    assert file_hashes(env.home) == before and env.store().check() == []
