"""The audit orchestrator end to end on stand-ins whose truth is known.

The stand-in generator draws real Shapes images with a planted skew, so the true shares of what it makes
are the skew's. A weakened judge (the trained judge with its shape readings scrambled through a known
confusion matrix) shows that raw shares are biased while the corrected intervals still cover the truth.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from auditkit import ConfigError, GeneratorError, RunStore, StoreError
from auditkit.audit import AuditResult, audit
from auditkit.bias import Judge, JudgeReport
from auditkit.bias.assess import assess_bias
from auditkit.bias.representation import Reference
from auditkit.data import Shapes
from auditkit.data.shapes import ATTRIBUTES
from auditkit.policy import Policy, evaluate

sys.path.insert(0, str(Path(__file__).parent))
from _standins import SHAPE_SKEW, SMALL_AUDIT, ShapesStandIn  # noqa: E402 - next to this file, not in a package

BIAS_POLICY = {"policy": 1, "name": "bias only", "rules": {"bias.tvd": {"warn": 0.05, "fail": 0.10}}}


class ScrambledJudge(Judge):
    """The trained judge, with its shape reading passed through a known confusion matrix ``C``."""

    C = np.array([[0.80, 0.15, 0.05], [0.10, 0.80, 0.10], [0.05, 0.15, 0.80]])

    @classmethod
    def from_judge(cls, judge: Judge, holdout: Shapes) -> ScrambledJudge:
        weak = cls(judge.network, judge.attributes, judge.report, width=judge.width)
        predicted = weak.predict(holdout.images)
        confusion = dict(judge.report.confusion)
        truth = holdout.label("shape").numpy()
        counts = np.zeros((3, 3), dtype=int)
        np.add.at(counts, (truth, predicted[:, 0].numpy()), 1)
        confusion["shape"] = counts.tolist()
        weak.report = JudgeReport.from_dict({**judge.report.to_dict(), "confusion": confusion})
        return weak

    def predict(self, images, batch_size: int = 256) -> torch.Tensor:
        out = super().predict(images, batch_size)
        seed = int(hashlib.sha256(images.numpy().tobytes()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        u = rng.random(out.shape[0])
        cdf = np.cumsum(self.C[out[:, 0].numpy()], axis=1)
        out[:, 0] = torch.from_numpy((u[:, None] > cdf).sum(axis=1))
        return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> RunStore:
    return RunStore(tmp_path_factory.mktemp("home"))


def _bias_audit(gen, judge, data, store, seed, **options):
    options.setdefault("n_boot", 300)
    return audit(
        gen,
        data,
        judge,
        Policy.load(BIAS_POLICY),
        n=options.pop("n", 1000),
        seed=seed,
        stages=("bias",),
        store=store,
        progress=False,
        attributes=["shape"],
        reference_shares="uniform",
        **options,
    )


def test_corrected_intervals_cover_the_planted_shares_and_raw_ones_do_not(trained_judge, store) -> None:
    weak = ScrambledJudge.from_judge(trained_judge, Shapes(1500, seed=7))
    assert weak.report.accuracy["shape"] > 0.9  # the scrambling is not in the report's accuracy ...
    rates = (
        np.array(weak.report.confusion["shape"]) / np.array(weak.report.confusion["shape"]).sum(1)[:, None]
    )
    assert np.abs(rates - ScrambledJudge.C).max() < 0.06  # ... but in its measured confusion
    truth = np.array([0.5, 0.3, 0.2])
    data = Shapes(300, seed=3)
    gen = ShapesStandIn(SHAPE_SKEW)
    covered_corrected = covered_raw = 0
    raw_error = []
    for seed in range(20):
        shares = _bias_audit(gen, weak, data, store, seed).data["bias"]["scopes"]["shape"]["shares"]
        lo, hi = np.array(shares["corrected_low"]), np.array(shares["corrected_high"])
        covered_corrected += int(((lo <= truth) & (truth <= hi)).sum())
        rlo, rhi = np.array(shares["raw_low"]), np.array(shares["raw_high"])
        covered_raw += int(((rlo <= truth) & (truth <= rhi)).sum())
        raw_error.append(np.array(shares["raw"]) - truth)
    assert covered_corrected / 60 >= 0.9, covered_corrected
    assert covered_raw / 60 < 0.5, covered_raw
    expected_bias = ScrambledJudge.C.T @ truth - truth  # what a judge with confusion C does to the shares
    np.testing.assert_allclose(np.mean(raw_error, axis=0), expected_bias, atol=0.02)


def test_planted_skew_fails_the_policy_and_an_unskewed_stand_in_passes(trained_judge, store) -> None:
    data = Shapes(300, seed=3)
    skewed = _bias_audit(ShapesStandIn(SHAPE_SKEW), trained_judge, data, store, 0, n=2000)
    fair = _bias_audit(ShapesStandIn(None), trained_judge, data, store, 0, n=2000)
    assert skewed.verdict == "fail" and fair.verdict == "pass"
    (finding,) = [f for f in skewed.findings if f["scope"] == "shape"]
    assert finding["metric"] == "bias.tvd" and abs(finding["value"] - 1 / 6) < 0.03  # the planted TVD is 1/6
    assert finding["evidence"]["reference_source"].startswith("uniform")
    info = store.get_audit(skewed.audit_id)
    assert info.status == "completed" and info.verdict == "fail"


def test_full_audit_is_deterministic_and_resumable(trained_judge, store, monkeypatch) -> None:
    import auditkit.audit as audit_module

    data = Shapes(400, seed=4)
    options = dict(store=store, **SMALL_AUDIT)
    first = audit(ShapesStandIn(SHAPE_SKEW), data, trained_judge, **options)
    second = audit(ShapesStandIn(SHAPE_SKEW), data, trained_judge, **options)
    assert first.audit_id != second.audit_id
    assert first.to_json(runtime=False) == second.to_json(runtime=False)

    record = first.data
    assert record["schema"] == AuditResult.SCHEMA and record["verdict"] == first.verdict
    assert set(record) >= {"bias", "quality", "memorization", "explain", "findings", "manifest", "judge"}
    assert "shape×colour" in record["bias"]["scopes"] and record["quality"]["n_fake"] == 300
    # the explanation sample is stratified: explain_per_value (1) image per judged value
    explained = record["explain"]["attributes"]
    assert explained["shape"]["n"] == 3 and explained["size"]["n"] == 2
    latent = record["explain"]["latent"]["attributes"]["shape"]  # the stand-in has no gradients: occlusion
    assert latent["method"] == "occlusion" and latent["figure"] == "explain/latent-shape.png"
    # every artifact listed with its hash, and the hashes are those of the files
    for artifact in record["manifest"]["artifacts"]:
        path = first.path / artifact["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact["sha256"]
    assert {"explain/shape.png", "samples/colour.png"} <= {a["path"] for a in record["manifest"]["artifacts"]}
    assert AuditResult.load(first.path).to_json() == first.to_json()
    first.validate()  # the published JSON Schema describes what the audit writes
    broken = AuditResult(json.loads(first.to_json()))
    broken.data["findings"]["findings"][0]["severity"] = "maybe"
    with pytest.raises(ConfigError, match="findings/findings/0/severity"):
        broken.validate()

    # interrupt at the memorization stage, then resume: finished stages load, the result is the same
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_module, "_memorization", interrupted)
    with pytest.raises(KeyboardInterrupt):
        audit(ShapesStandIn(SHAPE_SKEW), data, trained_judge, **options)
    stopped = store.list_audits()[0]
    assert stopped.status == "interrupted" and not (stopped.path / "audit.json").exists()
    monkeypatch.undo()
    resumed = audit(ShapesStandIn(SHAPE_SKEW), data, trained_judge, resume=stopped.id, **options)
    assert resumed.data["runtime"]["timings"]["bias"] == 0.0  # loaded, not recomputed
    assert resumed.to_json(runtime=False) == first.to_json(runtime=False)
    with pytest.raises(ConfigError, match="different inputs"):
        audit(ShapesStandIn(SHAPE_SKEW), data, trained_judge, resume=stopped.id, **{**options, "n": 301})
    with pytest.raises(StoreError, match="already completed"):
        audit(ShapesStandIn(SHAPE_SKEW), data, trained_judge, resume=stopped.id, **options)


def test_bad_inputs_are_clear_errors_and_leave_nothing_half_written(trained_judge, store, tmp_path) -> None:
    data = Shapes(200, seed=4)
    before = len(store.list_audits())
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("policy: 1\nname: x\nrules:\n  bias.tvd: {fail: 0.1, severity: high}\n")
    with pytest.raises(ConfigError, match="unknown key 'rules.bias.tvd.severity'"):
        audit(ShapesStandIn(), data, trained_judge, bad_policy, n=100, store=store, progress=False)
    with pytest.raises(ConfigError, match="cannot audit"):
        audit(
            ShapesStandIn(), data, trained_judge, n=100, store=store, attributes=["texture"], progress=False
        )
    with pytest.raises(ConfigError, match="add 'shape'"):
        audit(
            ShapesStandIn(),
            data,
            trained_judge,
            n=100,
            store=store,
            progress=False,
            reference_shares={"colour": {"red": 1, "green": 0, "blue": 0}},
            reference_source="x",
        )
    assert len(store.list_audits()) == before  # configuration errors are raised before anything is written
    with pytest.raises(GeneratorError, match="NaN"):
        audit(
            ShapesStandIn(nan_batch=1),
            data,
            trained_judge,
            n=600,
            store=store,
            progress=False,
            stages=("bias",),
        )
    failed = store.list_audits()[0]
    assert failed.status == "failed" and not (failed.path / "audit.json").exists()


def test_judge_and_reference_values_must_match() -> None:
    vocab = {"colour": ATTRIBUTES["colour"]}
    labels = {"colour": np.zeros(10, dtype=int)}
    conf = {"colour": np.eye(3, dtype=int).tolist()}
    wrong = {"colour": Reference.uniform(("red", "green", "purple"))}
    with pytest.raises(ConfigError, match="spell the reference's values as the judge does"):
        assess_bias(labels, vocab, conf, wrong)
    with pytest.raises(ConfigError, match="no reference"):
        assess_bias(labels, vocab, conf, {})


def test_an_empty_condition_group_becomes_a_warning() -> None:
    rng = np.random.default_rng(0)
    vocab = {"colour": ATTRIBUTES["colour"]}
    labels = {"colour": rng.integers(0, 3, 300)}
    conf = {"colour": (np.eye(3, dtype=int) * 50).tolist()}
    refs = {"colour": Reference.uniform(vocab["colour"])}
    cond = rng.integers(0, 2, 300)  # class 2 ("triangle") never generated
    result = assess_bias(labels, vocab, conf, refs, condition=("shape", ATTRIBUTES["shape"], cond), n_boot=50)
    assert result.scopes["colour | shape=triangle"]["empty"]
    findings = evaluate(Policy.load(BIAS_POLICY), result.observations)
    (empty,) = [f for f in findings.findings if f.scope == "colour | shape=triangle"]
    assert empty.severity == "warn" and "empty group" in empty.message


def test_cli_audit_gate_and_json(trained_judge, tmp_path) -> None:
    folder = tmp_path / "judge"
    trained_judge.save(folder)
    # the CLI audits generators saved on disk: an untrained class-conditional DCGAN
    from auditkit.generators.registry import create_generator, family_config, generator_spec, save_generator

    shapes = ATTRIBUTES["shape"]
    gen = create_generator("dcgan", image_shape=(3, 32, 32), class_names=shapes, condition="shape", seed=0)
    spec = generator_spec("dcgan", family_config("dcgan", {}), (3, 32, 32), shapes, "shape")
    (tmp_path / "gen").mkdir()
    save_generator(gen.model, spec, tmp_path / "gen" / "generator.safetensors")
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(BIAS_POLICY))
    args = [
        sys.executable,
        "-m",
        "auditkit",
        "audit",
        str(tmp_path / "gen"),
        "--judge",
        str(folder),
        "--reference",
        "shapes",
        "--reference-n",
        "300",
        "--n",
        "200",
        "--stage",
        "bias",
        "--bootstrap",
        "50",
        "--quality-bootstrap",
        "0",
        "--policy",
        str(policy),
        "--home",
        str(tmp_path / "home"),
        "--quiet",
    ]
    done = subprocess.run(args + ["--fail-on", "fail"], capture_output=True, text=True, timeout=600)
    # an untrained generator makes noise the judge reads as one or two values: a gross skew
    assert done.returncode == 1, done.stderr
    assert "verdict FAIL" in done.stdout and "[fail] bias.tvd" in done.stdout
    as_json = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=600)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["verdict"] == "fail"
    common = ["--judge", str(folder), "--home", str(tmp_path / "home")]
    no_data = subprocess.run(args[:5] + common, capture_output=True, text=True, timeout=600)
    # the default reference is the run's own training data, which a bare generator file does not record
    assert no_data.returncode == 2 and "records no training data config" in no_data.stderr
    bad = subprocess.run(
        args[:5] + common + ["--reference", "shapes", "--attribute", "texture"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode == 2 and "error: cannot audit" in bad.stderr


def test_training_data_is_rebuilt_from_the_run_config(tmp_path) -> None:
    from auditkit.audit import training_data

    run = tmp_path / "run"
    run.mkdir()
    skew = {"colour": {"red": 0.6, "green": 0.2, "blue": 0.2}}
    data_config = {"source": "shapes", "n": 50, "size": 32, "seed": 3, "skew": skew, "condition": "shape"}
    (run / "config.json").write_text(json.dumps({"train": {"data": data_config}, "family": "dcgan"}))
    rebuilt = training_data(run)
    assert torch.equal(rebuilt.images, Shapes(50, seed=3, skew=skew).images)
    with pytest.raises(ConfigError, match="records no training data config"):
        training_data(tmp_path)
