"""The audit policy: loading and validation of YAML files, and the findings and verdict it produces."""

from __future__ import annotations

import hashlib
import math

import pytest
import yaml

from auditkit import ConfigError
from auditkit.policy import DEFAULT_POLICY, METRICS, Observation, Policy, evaluate, exceeds


def test_default_policy_loads_and_names_only_known_metrics() -> None:
    policy = Policy.default()
    assert policy.name == "auditkit default" and policy.source == str(DEFAULT_POLICY)
    assert policy.sha256 == hashlib.sha256(DEFAULT_POLICY.read_bytes()).hexdigest()
    assert set(policy.rules) <= set(METRICS)
    assert policy.rules["bias.representation_ratio"].fail == 0.8  # the four-fifths rule
    for metric, rule in policy.rules.items():
        assert rule.description, f"{metric} has no description in the shipped policy"
    assert policy.to_dict()["rules"]["bias.tvd"]["direction"] == "max"


def _file(rules: dict, **extra) -> dict:
    return {"policy": 1, "name": "x", "rules": rules, **extra}


def _policy(rules: dict) -> Policy:
    return Policy.load({"policy": 1, "name": "test", "rules": rules})


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (
            _file({"bias.tvdd": {"fail": 0.1}}),
            r"unknown metric\(s\) \['bias.tvdd'\]",
        ),
        (
            _file({"bias.tvd": {"fial": 0.1}}),
            "unknown key 'rules.bias.tvd.fial'",
        ),
        (_file({}, extra=1), "unknown key 'extra'"),
        (_file({}, policy=2), "policy"),
        (_file({"bias.tvd": {}}), "needs warn, fail or both"),
        (_file({"bias.tvd": {"warn": 0.2, "fail": 0.1}}), "must not lie above"),
        (
            _file({"quality.recall": {"warn": 0.3, "fail": 0.5}}),
            "must not lie below",
        ),
        (_file({"bias.tvd": {"fail": float("nan")}}), "finite"),
        (
            _file({"bias.tvd": {"fail": 0.1, "decide_on": "median"}}),
            "decide_on",
        ),
    ],
)
def test_bad_policies_are_config_errors(values, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Policy.load(values)


def test_bad_files_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Policy.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: 1\nrules: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read policy file"):
        Policy.load(broken)
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"policy": 1, "name": "t", "rules": {"bias.tv": {"fail": 0.1}}}))
    with pytest.raises(ConfigError, match=f"policy file {typo}"):
        Policy.load(typo)


def test_max_and_min_metrics_meet_their_thresholds() -> None:
    policy = _policy({"bias.tvd": {"warn": 0.05, "fail": 0.10}, "quality.recall": {"warn": 0.6, "fail": 0.4}})
    cases = [
        ("bias.tvd", 0.02, "pass"), ("bias.tvd", 0.05, "pass"), ("bias.tvd", 0.07, "warn"),
        ("bias.tvd", 0.10, "warn"), ("bias.tvd", 0.25, "fail"),
        ("quality.recall", 0.9, "pass"), ("quality.recall", 0.6, "pass"), ("quality.recall", 0.5, "warn"),
        ("quality.recall", 0.1, "fail"),
    ]  # fmt: skip
    for metric, value, expected in cases:
        (finding,) = evaluate(policy, [Observation(metric, "colour", value)]).findings
        assert finding.severity == expected, (metric, value, finding.message)
    result = evaluate(policy, [Observation("bias.tvd", "colour", 0.25)])
    assert (
        result.findings[0].threshold == 0.10 and "above the fail threshold 0.1" in result.findings[0].message
    )


def test_decide_on_uses_the_named_interval_end() -> None:
    obs = Observation("bias.tvd", "shape", 0.08, interval=(0.03, 0.13))
    severities = {
        mode: evaluate(_policy({"bias.tvd": {"warn": 0.05, "fail": 0.10, "decide_on": mode}}), [obs])
        .findings[0]
        .severity
        for mode in ("estimate", "worst", "best")
    }
    assert severities == {"estimate": "warn", "worst": "fail", "best": "pass"}
    (finding,) = evaluate(_policy({"bias.tvd": {"fail": 0.10}}), [obs]).findings
    assert finding.interval_straddles and "more samples" in finding.message
    low = Observation("bias.representation_ratio", "shape", 0.85, interval=(0.75, 0.95))
    worst = evaluate(_policy({"bias.representation_ratio": {"fail": 0.8, "decide_on": "worst"}}), [low])
    assert worst.findings[0].severity == "fail"  # for a min metric the worse end is the lower one


def test_values_that_could_not_be_computed_warn() -> None:
    obs = Observation("quality.fid", "shape=triangle", math.nan, evidence={"reason": "empty group"})
    (finding,) = evaluate(_policy({"quality.fid": {"fail": 50}}), [obs]).findings
    assert finding.severity == "warn" and "empty group" in finding.message and finding.value is None


def test_verdict_order_and_gate() -> None:
    policy = Policy.default()
    obs = [
        Observation("bias.tvd", "colour", 0.01),
        Observation("bias.tvd", "shape", 0.2),
        Observation("quality.recall", "overall", 0.55),
        Observation("quality.fid", "overall", 1e6),  # no FID rule in the default policy: not a finding
    ]
    result = evaluate(policy, obs)
    assert result.verdict == "fail" and result.counts == {"pass": 1, "warn": 1, "fail": 1}
    assert [f.severity for f in result.findings] == ["fail", "warn", "pass"]
    assert [f.scope for f in result.at_least("warn")] == ["shape", "overall"]
    assert exceeds("fail", "warn") and exceeds("warn", "warn") and not exceeds("warn", "fail")
    assert evaluate(policy, []).verdict == "pass"
    with pytest.raises(ConfigError, match="fail_on"):
        exceeds("warn", "pass")
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(policy, [Observation("bias.tvdd", "x", 0.1)])
    assert result.to_dict()["findings"][0]["metric"] == "bias.tvd"
