"""Diffs of audits: real audits of a stand-in generator whose planted skew is known.

Audit ``fair`` draws Shapes uniformly; audit ``skewed`` plants shape shares 0.5/0.3/0.2 against a uniform
reference (a TVD of 1/6 and a representation ratio of 0.4). So the shape gaps must be listed as
regressions with non-overlapping intervals, the TVD finding must go pass → fail, and the reverse diff
must list the same changes as improvements.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

from auditkit import ConfigError, RunStore
from auditkit.audit import AuditResult, audit
from auditkit.data import Shapes
from auditkit.policy import Policy
from auditkit.report.diff import FindingChange, MetricChange, VerdictChange, diff_audits

sys.path.insert(0, str(Path(__file__).parent))
from _standins import ShapesStandIn  # noqa: E402 - next to this file, not in a package

SHAPE_SKEW = {"shape": {"circle": 0.5, "square": 0.3, "triangle": 0.2}}
POLICY = {
    "policy": 1,
    "name": "diff test",
    "rules": {
        "bias.tvd": {"warn": 0.05, "fail": 0.10},
        "bias.representation_ratio": {"warn": 0.7, "fail": 0.6},
        "quality.precision": {"warn": 0.6, "fail": 0.4},
    },
}


@pytest.fixture(scope="module")
def audits(trained_judge, tmp_path_factory) -> dict[str, AuditResult]:
    store = RunStore(tmp_path_factory.mktemp("home"))
    data = Shapes(300, seed=3)

    def run(skew) -> AuditResult:
        return audit(
            ShapesStandIn(skew),
            data,
            trained_judge,
            Policy.load(POLICY),
            n=500,
            n_boot=50,
            quality_bootstrap=10,
            stages=("bias", "quality"),
            attributes=["shape", "colour"],
            reference_shares="uniform",
            store=store,
            progress=False,
        )

    return {"fair": run(None), "skewed": run(SHAPE_SKEW), "fair_again": run(None)}


def _metric(diff, metric: str, scope: str) -> MetricChange:
    (found,) = [m for m in diff.metrics if (m.metric, m.scope) == (metric, scope)]
    return found


def test_planted_skew_is_a_regression_with_separated_intervals(audits) -> None:
    fair, skewed = audits["fair"], audits["skewed"]
    diff = diff_audits(fair, skewed)
    assert diff.a["verdict"] == fair.verdict == "pass" and diff.b["verdict"] == skewed.verdict == "fail"
    assert diff.context == []  # same judge, policy, reference, n and seed: only the generator differs

    tvd = _metric(diff, "bias.tvd", "shape")
    assert tvd.old < 0.05 and 0.08 < tvd.new < 0.25  # the planted TVD is 1/6, measured on 500 images
    assert tvd.old_interval[1] < tvd.new_interval[0] and tvd.overlap is False
    assert tvd.delta == pytest.approx(tvd.new - tvd.old) and tvd.worse and tvd.regression
    ratio = _metric(diff, "bias.representation_ratio", "shape")  # low is bad: it fell from ~1 to ~0.4
    assert ratio.direction == "min" and ratio.old > 0.75 and ratio.new < 0.6
    assert ratio.worse and ratio.overlap is False and ratio.regression
    # the values are the ones the audits' findings were judged on
    for result, side in ((fair, "old"), (skewed, "new")):
        for finding in result.findings:
            row = _metric(diff, finding["metric"], finding["scope"])
            assert getattr(row, side) == finding["value"]
            assert list(getattr(row, f"{side}_interval") or []) == (finding["interval"] or [])

    (change,) = [f for f in diff.findings if (f.metric, f.scope) == ("bias.tvd", "shape")]
    assert (change.old_severity, change.new_severity, change.kind) == ("pass", "fail", "worse")
    assert change.regression and change in diff.new_findings and change in diff.changed_severity
    assert change.new_value == tvd.new and "fail threshold" in change.message
    regressions = {(r.metric, r.scope, type(r).__name__) for r in diff.regressions}
    assert {
        ("bias.tvd", "shape", "MetricChange"),
        ("bias.tvd", "shape", "FindingChange"),
        ("bias.representation_ratio", "shape", "MetricChange"),
    } <= regressions
    # every regression is a real one: worse with separated intervals, or a more severe finding
    for r in diff.regressions:
        if isinstance(r, MetricChange):
            assert r.worse and r.old_interval and r.new_interval
            assert r.old_interval[1] < r.new_interval[0] or r.new_interval[1] < r.old_interval[0]
        else:
            assert r.new_severity in ("warn", "fail")

    # quality metrics are compared too, with their bootstrap intervals, overall and per judged group
    fid = _metric(diff, "quality.fid", "overall")
    assert fid.old == fair.data["quality"]["fid"] and fid.new == skewed.data["quality"]["fid"]
    assert fid.new_interval == (
        skewed.data["quality"]["ci"]["fid"]["low"],
        skewed.data["quality"]["ci"]["fid"]["high"],
    )
    for key in ("kid", "precision", "recall", "density", "coverage"):
        assert _metric(diff, f"quality.{key}", "overall").old == fair.data["quality"][key]
    group = fair.data["quality"]["groups"]["judge:shape"]["circle"]["fid"]
    assert _metric(diff, "quality.fid", "shape=circle").old == group

    as_dict = json.loads(json.dumps(diff.to_dict(), allow_nan=False))
    assert {(r["metric"], r["scope"]) for r in as_dict["regressions"]} >= {("bias.tvd", "shape")}
    text = diff.to_text()
    assert "verdict pass → fail" in text and "bias.tvd [shape]" in text and "intervals do not overlap" in text

    # the other way round, the same changes are improvements
    back = diff_audits(skewed.path, fair.path / "audit.json")
    assert not any((r.metric, r.scope) == ("bias.tvd", "shape") for r in back.regressions)
    (undo,) = [f for f in back.findings if (f.metric, f.scope) == ("bias.tvd", "shape")]
    assert undo.kind == "better" and undo in back.resolved_findings and not undo.regression
    assert _metric(back, "bias.tvd", "shape").worse is False


def test_identical_audits_have_no_changes(audits) -> None:
    fair, again = audits["fair"], audits["fair_again"]
    assert fair.audit_id != again.audit_id
    diff = diff_audits(fair, again)
    assert diff.metrics and diff.changes == [] and diff.regressions == []
    assert diff.findings == [] and diff.explanations == [] and diff.context == []
    assert all(m.overlap in (True, None) and m.delta in (0.0, None) for m in diff.metrics)
    assert "regressions: none" in diff.to_text() and "other metric changes: none" in diff.to_text()


def test_findings_verdicts_and_context_from_edited_results(audits) -> None:
    """Cases real stand-ins do not produce cheaply: dropped findings, explanation verdicts, a new policy."""
    fair = audits["fair"]
    before = AuditResult(copy.deepcopy(fair.data))
    after = AuditResult(copy.deepcopy(fair.data))
    verdict = {"reasons": [], "checks": {}, "record": {}}
    before.data["explain"] = {
        "methods": ["saliency", "grad_cam"],
        "attributes": {"shape": {"n": 6, "panel": "explain/shape.png", "verdicts": {
            "saliency": {**verdict, "status": "trustworthy"},
            "grad_cam": {**verdict, "status": "questionable"}}}},
        "latent": {},
    }  # fmt: skip
    after.data["explain"] = copy.deepcopy(before.data["explain"])
    after.data["explain"]["attributes"]["shape"]["verdicts"]["saliency"]["status"] = "failed"
    dropped = after.data["findings"]["findings"].pop()
    after.data["findings"]["findings"].append({**dropped, "metric": "quality.recall", "scope": "overall",
                                               "severity": "warn", "value": 0.5})  # fmt: skip
    after.data["manifest"]["inputs"]["policy_sha256"] = "0" * 64
    after.data["scope"]["n"] = 1000

    diff = diff_audits(before, after)
    assert diff.explanations == [VerdictChange("shape", "saliency", "trustworthy", "failed")]
    assert diff.explanations[0].worse
    quality = _metric(diff, "explain.quality", "shape")  # best verdict: trustworthy (2) → questionable (1)
    assert (quality.old, quality.new, quality.worse) == (2.0, 1.0, True)
    assert not quality.regression  # no interval: left to the policy's findings
    kinds = {(f.metric, f.scope): f.kind for f in diff.findings}
    assert kinds == {(dropped["metric"], dropped["scope"]): "dropped", ("quality.recall", "overall"): "new"}
    new = [f for f in diff.findings if f.kind == "new"]
    assert new == diff.new_findings and all(f.regression for f in new)
    assert [r for r in diff.regressions if isinstance(r, FindingChange)] == new
    assert any("policies" in c for c in diff.context) and any(
        c.startswith("n 500 → 1000") for c in diff.context
    )


def test_metric_change_semantics() -> None:
    up = MetricChange("quality.fid", "overall", 10.0, 14.0, (9.0, 11.0), (13.0, 15.0))
    assert up.worse and up.overlap is False and up.regression and up.delta == 4.0
    touching = MetricChange("quality.fid", "overall", 10.0, 14.0, (9.0, 12.0), (12.0, 15.0))
    assert touching.overlap is True and not touching.regression
    better = MetricChange("quality.precision", "overall", 0.5, 0.8, (0.4, 0.6), (0.7, 0.9))
    assert better.worse is False and not better.regression
    lower = MetricChange("quality.precision", "overall", 0.8, 0.5, (0.7, 0.9), (0.4, 0.6))
    assert lower.worse and lower.regression
    unknown = MetricChange("memorization.near_copy_rate", "overall", 0.01, 0.2)
    assert unknown.worse and unknown.overlap is None and not unknown.regression
    gone = MetricChange("quality.fid", "overall", 10.0, None)
    assert gone.changed and gone.delta is None and gone.worse is None and not gone.regression
    with pytest.raises(ConfigError, match="not an auditkit audit result|cannot read"):
        diff_audits("/nonexistent/audit", "/nonexistent/audit")
