"""Reliability: training and audits killed at random points resume to exactly the uninterrupted result.

Each case runs ``python -m auditkit train`` (or ``audit``) in a child process and kills it at one point,
then checks the store (``RunStore.check``: only leftovers of the interrupted write, which ``repair``
clears), resumes with ``--resume`` in a fresh process and compares with an uninterrupted run of the same
command on the CPU: bit-identical generator weights, final checkpoint, metrics log and metrics index for
training; an identical ``audit.json`` (its ``runtime`` section aside) for audits.

Kill points come in two kinds, drawn from a seeded RNG so the list is the same on every run:

* at a random moment (``time@0.42``): a fraction of the uninterrupted run's measured duration after the
  run (or audit) appeared in the store. A barrier at the very end of the work (``_crash_child.py``) stops
  the child if it gets there first, so every case really is interrupted, whatever the machine's speed.
* at a chosen point (``ckpt-after-rename#3``): the child stops itself at the 3rd time it reaches that point
  of the code -- the narrow windows of a checkpoint or artifact write that random timing rarely hits.

The default run has 3 kill points of each kind of work; the ``reliability`` marker runs 12 for training
and 10 for audits (``pytest tests/reliability -m reliability``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from auditkit.audit import AuditResult
from auditkit.store import RunStore

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_crash_child.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # equal sums in every process
WAIT_S = 240  # for anything a child must do; far more than it needs, even on a loaded machine

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

TRAIN_CONFIG = {
    "family": "dcgan",
    "data": {"source": "shapes", "n": 96, "size": 32, "seed": 0},
    "model": {"latent_dim": 8, "width": 8, "embed_dim": 4},
    "steps": 40,
    "batch_size": 16,
    "log_every": 1,
    "sample_every": 20,
    "checkpoint_every": 5,
    "keep_checkpoints": 2,
    "device": "cpu",
    "seed": 1,
}
CHECKPOINTS = 8  # at steps 5, 10, ..., 40 (the last one written when the run finishes)
PRUNES = CHECKPOINTS - 2  # keep_checkpoints 2: from the third checkpoint on, each removes one

AUDIT_OPTIONS = [
    "--n", "200", "--seed", "3", "--bootstrap", "10", "--quality-bootstrap", "10", "--method", "saliency",
    "--attribute", "shape", "--attribute", "colour", "--intersection", "shape,colour", "--quiet",
]  # fmt: skip


@dataclass(frozen=True)
class Kill:
    """Where to interrupt: a child point (its ``n``-th arrival) or ``time`` (a fraction of the run)."""

    point: str
    n: int = 1
    fraction: float = 0.0
    signal: int = signal.SIGKILL

    def __str__(self) -> str:
        if self.point == "time" or self.point.startswith("artifact-"):
            where = f"{self.point}@{self.fraction:.2f}"
        else:
            where = f"{self.point}#{self.n}"
        return where if self.signal == signal.SIGKILL else f"{where}-{signal.Signals(self.signal).name}"


def _training_kills() -> list[Kill]:
    rng = random.Random(20261205)
    kills = [Kill("time", fraction=round(rng.uniform(0.05, 0.95), 2)) for _ in range(4)]
    kills.append(Kill("time", fraction=round(rng.uniform(0.05, 0.95), 2), signal=signal.SIGTERM))
    kills += [
        Kill("log-torn", n=rng.randint(1, 39)),
        Kill("ckpt-temp-written", n=rng.randint(1, CHECKPOINTS)),
        Kill("ckpt-before-rename", n=rng.randint(1, CHECKPOINTS)),
        Kill("ckpt-after-rename", n=rng.randint(1, CHECKPOINTS)),
        Kill("before-flush", n=rng.randint(1, CHECKPOINTS)),
        Kill("before-prune", n=rng.randint(1, PRUNES)),
        Kill("generator-temp-written"),
    ]
    return kills


def _audit_kills() -> list[Kill]:
    rng = random.Random(20261206)
    kills = [Kill("time", fraction=round(rng.uniform(0.05, 0.95), 2)) for _ in range(4)]
    kills.append(Kill("time", fraction=round(rng.uniform(0.05, 0.95), 2), signal=signal.SIGINT))
    kills.append(Kill("time", fraction=round(rng.uniform(0.05, 0.95), 2), signal=signal.SIGTERM))
    # n of the artifact points is a share of the audit's writes, resolved once their number is known
    kills += [
        Kill("stage-arrays-written"),
        Kill("artifact-before-rename", fraction=round(rng.random(), 2)),
        Kill("artifact-after-rename", fraction=round(rng.random(), 2)),
        Kill("completed"),
    ]
    return kills


TRAINING_KILLS, AUDIT_KILLS = _training_kills(), _audit_kills()
# the default run: a random moment, a narrow window of a write, and one more of each work's own kind
QUICK_TRAINING = [TRAINING_KILLS[0], TRAINING_KILLS[9], TRAINING_KILLS[4]]  # time, before-flush, SIGTERM
QUICK_AUDIT = [AUDIT_KILLS[0], AUDIT_KILLS[8], AUDIT_KILLS[9]]  # time, artifact-after-rename, completed


def _params(quick: list[Kill], full: list[Kill]) -> list:
    return [pytest.param(k, id=f"quick-{k}") for k in quick] + [
        pytest.param(k, id=str(k), marks=pytest.mark.reliability) for k in full
    ]


# --------------------------------------------------------------------------- running children


def _auditkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *args], capture_output=True, text=True, env=ENV, timeout=WAIT_S
    )


def _timed_run(args: list[str], started: Any) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python -m auditkit ARGS`` to the end; also return how long it took from the moment
    ``started()`` first returned true (the run or audit appeared in the store) to its exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    t0 = None
    deadline = time.monotonic() + WAIT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if t0 is None and started():
            t0 = time.monotonic()
        time.sleep(0.01)
    out, err = proc.communicate(timeout=WAIT_S)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done.returncode == 0 and t0 is not None, err[-3000:]
    return done, time.monotonic() - t0


def _interrupt(args: list[str], kill: Kill, barrier: str, started: Any, duration: float, tmp: Path) -> int:
    """Run ``python -m auditkit ARGS`` under ``_crash_child.py`` and interrupt it at ``kill``; returns the
    child's exit status."""
    marker = tmp / "stopped-at"
    point = "none" if kill.point == "time" else kill.point
    command = [
        sys.executable,
        str(CHILD),
        point,
        str(kill.n),
        str(marker),
        barrier if point == "none" else "none",
    ]
    log = open(tmp / "child.log", "w")  # noqa: SIM115 (closed below, after the child is gone)
    proc = subprocess.Popen([*command, "--", *args], stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        deadline = time.monotonic() + WAIT_S
        due = None
        while time.monotonic() < deadline and proc.poll() is None and not marker.exists():
            if kill.point == "time" and due is None and started():
                due = time.monotonic() + kill.fraction * duration
            if due is not None and time.monotonic() >= due:
                break
            time.sleep(0.005)
        running = proc.poll() is None
        if running:
            proc.send_signal(kill.signal)
        status = proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp / "child.log").read_text()[-3000:]
    assert running, f"the child ended before it was interrupted ({kill}): {output}"
    if kill.point != "time":
        assert marker.exists(), f"the child never reached {kill}: {output}"
    return status


def _check_after_crash(home: Path) -> None:
    """A crash may leave only a stray temp file or an unfinished artifact row, which repair clears."""
    store = RunStore(home)
    leftovers = ("removed the stray temp file", "finished an interrupted write")
    problems = store.check(repair=True)
    assert all(any(s in p for s in leftovers) for p in problems), problems
    assert store.check() == []


# --------------------------------------------------------------------------- training


@dataclass
class TrainingRecord:
    home: Path
    run_id: str
    duration: float
    generator: dict[str, torch.Tensor]
    checkpoint: dict[str, torch.Tensor]
    log: list[dict[str, Any]]
    index: dict[tuple[int | None, str], list[float]]
    artifacts: set[str]


def _record_training(home: Path, run_id: str, duration: float = 0.0) -> TrainingRecord:
    store = RunStore(home)
    run = store.get_run(run_id)
    assert run.status == "completed"
    final = run.path / "checkpoints" / f"step-{TRAIN_CONFIG['steps']:07d}.safetensors"
    index: dict[tuple[int | None, str], list[float]] = {}
    for m in store.metrics(run_id):
        if m.name != "img_per_s":  # a speed: the one logged value that is not a function of the seed
            index.setdefault((m.step, m.name), []).append(m.value)
    log = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    return TrainingRecord(
        home=home,
        run_id=run_id,
        duration=duration,
        generator=load_file(str(run.path / "generator.safetensors")),
        checkpoint={k: v for k, v in load_file(str(final)).items() if not k.startswith("rng/")},
        log=[{k: v for k, v in row.items() if k != "img_per_s"} for row in log],
        index=index,
        artifacts={a.relpath for a in store.artifacts(run_id)},
    )


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


@pytest.fixture(scope="module")
def training(tmp_path_factory) -> TrainingRecord:
    """The uninterrupted reference run, timed from its appearance in the store to its end."""
    import yaml

    root = tmp_path_factory.mktemp("train-reference")
    (root / "config.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG))
    home = root / "home"
    store = RunStore(home)
    _, duration = _timed_run(
        ["train", str(root / "config.yaml"), "--home", str(home), "--quiet"], lambda: bool(store.list_runs())
    )
    return _record_training(home, store.list_runs()[0].id, duration)


@pytest.mark.parametrize("kill", _params(QUICK_TRAINING, TRAINING_KILLS))
def test_killed_training_resumes_bit_for_bit(kill: Kill, training: TrainingRecord, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = RunStore(home)
    config = training.home.parent / "config.yaml"
    status = _interrupt(
        ["train", str(config), "--home", str(home), "--quiet"],
        kill,
        "finish",
        lambda: bool(store.list_runs()),
        training.duration,
        tmp_path,
    )
    if kill.signal == signal.SIGTERM:
        # inside the loop SIGTERM finishes the step, checkpoints and exits 130; elsewhere it simply kills
        assert status in (130, -signal.SIGTERM), status
    else:
        assert status == -kill.signal, status
    (run,) = store.list_runs()
    assert run.status in ("running", "interrupted")
    _check_after_crash(home)

    resumed = _auditkit("train", "--resume", run.id, "--home", str(home), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = _record_training(home, run.id)
    _assert_same_tensors(got.generator, training.generator, "generator.safetensors")
    _assert_same_tensors(got.checkpoint, training.checkpoint, "final checkpoint")
    assert got.log == training.log  # metrics.jsonl: every step once, with the same losses
    assert got.index == training.index  # the index: the same, each value once
    assert got.artifacts == training.artifacts
    assert store.check() == []


# --------------------------------------------------------------------------- audits


@dataclass
class AuditRecord:
    base: Path  # a home with the trained run, copied for every case
    judge: Path
    run_id: str
    duration: float
    writes: int  # artifacts an audit writes (each once)
    json: bytes
    verdict: str


def _audit_args(record_run: str, judge: Path, home: Path) -> list[str]:
    return ["audit", record_run, "--judge", str(judge), *AUDIT_OPTIONS, "--home", str(home)]


@pytest.fixture(scope="module")
def auditing(training: TrainingRecord, trained_judge, tmp_path_factory) -> AuditRecord:
    """The uninterrupted reference audit of the reference training run, timed like the training."""
    root = tmp_path_factory.mktemp("audit-reference")
    trained_judge.save(root / "judge")
    base = root / "base"
    shutil.copytree(training.home, base)
    home = root / "home"
    shutil.copytree(base, home)
    store = RunStore(home)
    _, duration = _timed_run(
        _audit_args(training.run_id, root / "judge", home), lambda: bool(store.list_audits())
    )
    (info,) = store.list_audits()
    assert info.status == "completed"
    return AuditRecord(
        base=base,
        judge=root / "judge",
        run_id=training.run_id,
        duration=duration,
        writes=len(store.artifacts(info.id)),
        json=AuditResult.load(info.path).to_json(runtime=False),
        verdict=str(info.verdict),
    )


@pytest.mark.parametrize("kill", _params(QUICK_AUDIT, AUDIT_KILLS))
def test_killed_audit_resumes_to_the_same_result(kill: Kill, auditing: AuditRecord, tmp_path: Path) -> None:
    if kill.point.startswith("artifact-"):  # the n-th of the audit's writes, n drawn as a share of them
        kill = Kill(kill.point, n=1 + int(kill.fraction * (auditing.writes - 1)), signal=kill.signal)
    home = tmp_path / "home"
    shutil.copytree(auditing.base, home)
    store = RunStore(home)
    args = _audit_args(auditing.run_id, auditing.judge, home)
    status = _interrupt(
        args, kill, "completed", lambda: bool(store.list_audits()), auditing.duration, tmp_path
    )
    assert status == (130 if kill.signal == signal.SIGINT else -kill.signal), status
    (info,) = store.list_audits()
    # Ctrl-C marks the audit interrupted (unless it came before the audit's own handler was in place)
    assert info.status in (("interrupted", "running") if kill.signal == signal.SIGINT else ("running",))
    _check_after_crash(home)

    resumed = _auditkit(*args, "--resume", info.id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    info = store.get_audit(info.id)
    assert info.status == "completed" and info.verdict == auditing.verdict
    assert AuditResult.load(info.path).to_json(runtime=False) == auditing.json
    assert store.check() == []
