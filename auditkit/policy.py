"""Audit policy: thresholds per metric with a severity, turned into findings and an overall verdict.

A policy is a YAML file (``auditkit/policies/default.yaml`` ships, documented rule by rule)::

    policy: 1                      # schema version
    name: my team's policy
    rules:
      bias.tvd: {warn: 0.05, fail: 0.10}
      bias.representation_ratio: {warn: 0.9, fail: 0.8, decide_on: worst}

Metric names come from :data:`METRICS`, which also says whether high (``max``) or low (``min``) values are
bad; unknown names, unknown keys and thresholds in the wrong order are a ``ConfigError`` so a typo never
passes an audit silently. The audit turns each measured value into an :class:`Observation` (metric, scope
such as ``"colour"`` or ``"colour×shape"``, value, confidence interval, evidence); :func:`evaluate`
compares every observation with its rule and returns :class:`Finding`s and the verdict (the worst
severity). An observation that could not be computed (NaN, an empty group) becomes a ``warn`` finding that
says so, never a silent pass.

``decide_on`` says which number meets the threshold: ``estimate`` (default), ``worst`` (the interval end
that looks worse: flags what is plausibly bad) or ``best`` (the end that looks better: flags only what is
bad beyond the sampling uncertainty). Every finding records whether the interval straddles the threshold.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from auditkit._config import describe_parse_error, validate
from auditkit.errors import ConfigError

Severity = Literal["pass", "warn", "fail"]
SEVERITIES: tuple[Severity, ...] = ("pass", "warn", "fail")

# name -> (direction, what it measures). "max": values above the threshold are bad; "min": below.
METRICS: dict[str, tuple[Literal["max", "min"], str]] = {
    "bias.tvd": ("max", "total variation distance, generated vs reference shares"),
    "bias.js_divergence": ("max", "Jensen-Shannon divergence (base 2), generated vs reference shares"),
    "bias.kl_divergence": ("max", "KL divergence of generated from reference shares (nats)"),
    "bias.representation_ratio": ("min", "min/max ratio of generated-to-reference shares (four-fifths rule)"),
    "bias.mean_abs_deviation": ("max", "mean absolute deviation of generated from reference shares"),
    "bias.amplification": ("max", "generator's departure from the reference beyond the training data's"),
    "bias.power": ("min", "power of the goodness-of-fit test to detect the policy's smallest TVD"),
    "quality.fid": ("max", "Fréchet distance between real and generated features"),
    "quality.kid": ("max", "kernel inception distance (unbiased MMD², cubic kernel)"),
    "quality.precision": ("min", "share of generated images inside the real manifold"),
    "quality.recall": ("min", "share of real images inside the generated manifold"),
    "quality.density": ("min", "k-NN density of generated images in the real manifold"),
    "quality.coverage": ("min", "share of real images with a generated image nearby"),
    "quality.group_fid_ratio": ("max", "worst group's FID over the best group's FID"),
    "memorization.near_copy_rate": (
        "max",
        "share of generated images that nearly copy a training image",
    ),
    "explain.quality": ("min", "best explanation verdict of an attribute (2 trustworthy, 0 failed)"),
}

DEFAULT_POLICY = Path(__file__).resolve().parent / "policies" / "default.yaml"


class Rule(BaseModel):
    """Thresholds of one metric. At least one of ``warn`` and ``fail``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warn: float | None = None
    fail: float | None = None
    decide_on: Literal["estimate", "worst", "best"] = "estimate"
    description: str = ""

    @model_validator(mode="after")
    def _some_threshold(self) -> Rule:
        if self.warn is None and self.fail is None:
            raise ValueError("a rule needs warn, fail or both")
        for name in ("warn", "fail"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number")
        return self


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Literal[1] = Field(description="Schema version of the policy file.")
    name: str
    description: str = ""
    rules: dict[str, Rule]


@dataclass(frozen=True)
class Policy:
    """A validated policy: rules by metric name, plus where it came from.

    Build with :meth:`load` (a YAML file or a mapping) or :meth:`default`.
    """

    name: str
    rules: dict[str, Rule]
    description: str = ""
    source: str = "(in memory)"
    sha256: str | None = None

    @classmethod
    def default(cls) -> Policy:
        """The policy shipped with auditkit (``auditkit/policies/default.yaml``)."""
        return cls.load(DEFAULT_POLICY)

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> Policy:
        """A policy from a YAML file path or a mapping of the same shape.

        Raises
        ------
        ConfigError
            A missing or unreadable file, unknown keys or metric names, thresholds in the wrong order.
        """
        digest = None
        if isinstance(source, Mapping):
            values, where = dict(source), "policy"
        else:
            path = Path(source)
            if not path.is_file():
                raise ConfigError(
                    f"policy file {path} does not exist; pass a YAML file (start from {DEFAULT_POLICY})."
                )
            try:
                raw = path.read_bytes()
                values = yaml.safe_load(raw.decode("utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read policy file {path}: {describe_parse_error(exc)}") from None
            digest = hashlib.sha256(raw).hexdigest()
            where = f"policy file {path}"
            source = str(path)
        parsed: _PolicyFile = validate(_PolicyFile, values, where)
        unknown = sorted(set(parsed.rules) - set(METRICS))
        if unknown:
            raise ConfigError(f"bad {where}: unknown metric(s) {unknown}; known metrics: {sorted(METRICS)}.")
        for metric, rule in parsed.rules.items():
            _check_order(metric, rule, where)
        return cls(
            name=parsed.name,
            rules=dict(parsed.rules),
            description=parsed.description,
            source=str(source) if not isinstance(source, Mapping) else "(in memory)",
            sha256=digest,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (what an AuditResult records)."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "sha256": self.sha256,
            "rules": {
                metric: {"direction": METRICS[metric][0], **rule.model_dump()}
                for metric, rule in sorted(self.rules.items())
            },
        }


@dataclass(frozen=True)
class Observation:
    """One measured value the policy may judge.

    Attributes
    ----------
    metric
        A name from :data:`METRICS`.
    scope
        What it was measured on: ``"overall"``, an attribute (``"colour"``), an intersection
        (``"colour×shape"``), a condition (``"shape=circle"``) or a group.
    value
        The estimate; NaN when it could not be computed (say why in ``evidence["reason"]``).
    interval
        ``(low, high)`` confidence interval, or ``None``.
    evidence
        JSON-safe details a reviewer needs to check the number (shares, n, p-values, artifact names).
    """

    metric: str
    scope: str
    value: float
    interval: tuple[float, float] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """A policy decision about one observation."""

    metric: str
    scope: str
    severity: Severity
    value: float | None
    interval: tuple[float, float] | None
    threshold: float | None
    direction: str
    decided_on: str
    interval_straddles: bool
    message: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "scope": self.scope,
            "severity": self.severity,
            "value": self.value,
            "interval": list(self.interval) if self.interval is not None else None,
            "threshold": self.threshold,
            "direction": self.direction,
            "decided_on": self.decided_on,
            "interval_straddles": self.interval_straddles,
            "message": self.message,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class PolicyResult:
    """All findings of an audit and the overall verdict (the worst severity; ``pass`` when none)."""

    findings: tuple[Finding, ...]
    verdict: Severity
    policy: Policy

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def at_least(self, severity: Severity) -> list[Finding]:
        """The findings of ``severity`` or worse."""
        level = _rank(severity)
        return [f for f in self.findings if _rank(f.severity) >= level]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "counts": self.counts,
            "policy": self.policy.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }


def evaluate(policy: Policy, observations: Iterable[Observation]) -> PolicyResult:
    """Judge every observation that has a rule; observations without one are not findings.

    Findings are ordered worst first, then by metric and scope, so reports read the same every run.
    """
    findings: list[Finding] = []
    for obs in observations:
        if obs.metric not in METRICS:
            raise ConfigError(f"observation of unknown metric {obs.metric!r}; known: {sorted(METRICS)}.")
        rule = policy.rules.get(obs.metric)
        if rule is not None:
            findings.append(_judge(obs, rule))
    findings.sort(key=lambda f: (-_rank(f.severity), f.metric, f.scope))
    verdict = max((f.severity for f in findings), key=_rank, default="pass")
    return PolicyResult(findings=tuple(findings), verdict=verdict, policy=policy)


def exceeds(verdict: Severity, fail_on: Severity) -> bool:
    """Whether ``verdict`` is at or above ``fail_on`` (for CI gates: ``--fail-on warn|fail``)."""
    if fail_on not in ("warn", "fail"):
        raise ConfigError(f"fail_on must be 'warn' or 'fail'; got {fail_on!r}.")
    return _rank(verdict) >= _rank(fail_on)


# --------------------------------------------------------------------------- internals


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)  # type: ignore[arg-type]


def _check_order(metric: str, rule: Rule, where: str) -> None:
    if rule.warn is None or rule.fail is None:
        return
    direction = METRICS[metric][0]
    if (direction == "max" and rule.warn > rule.fail) or (direction == "min" and rule.warn < rule.fail):
        word = "above" if direction == "max" else "below"
        raise ConfigError(
            f"bad {where}: {metric} is bad when {'high' if direction == 'max' else 'low'}, so its warn "
            f"threshold ({rule.warn}) must not lie {word} its fail threshold ({rule.fail})."
        )


def _judge(obs: Observation, rule: Rule) -> Finding:
    direction = METRICS[obs.metric][0]
    value = float(obs.value)
    interval = tuple(float(v) for v in obs.interval) if obs.interval is not None else None
    common = {
        "metric": obs.metric,
        "scope": obs.scope,
        "direction": direction,
        "evidence": dict(obs.evidence),
    }
    if not math.isfinite(value):
        reason = obs.evidence.get("reason", "no finite value")
        return Finding(
            **common, severity="warn", value=None, interval=interval, threshold=None,
            decided_on=rule.decide_on, interval_straddles=False,
            message=f"{obs.metric} for {obs.scope} could not be computed ({reason}); the policy cannot "
            "judge it.",
        )  # fmt: skip
    compared = value
    if rule.decide_on != "estimate" and interval is not None:
        worse_end = interval[1] if direction == "max" else interval[0]
        better_end = interval[0] if direction == "max" else interval[1]
        compared = worse_end if rule.decide_on == "worst" else better_end

    def breaks(threshold: float | None) -> bool:
        if threshold is None:
            return False
        return compared > threshold if direction == "max" else compared < threshold

    if breaks(rule.fail):
        severity: Severity = "fail"
        threshold = rule.fail
    elif breaks(rule.warn):
        severity, threshold = "warn", rule.warn
    else:
        severity = "pass"
        threshold = rule.warn if rule.warn is not None else rule.fail
    assert threshold is not None  # a Rule has at least one threshold
    straddles = interval is not None and min(interval) <= threshold <= max(interval)
    relation = {"max": ("above", "at or below"), "min": ("below", "at or above")}[direction]
    shown = f"{value:.4g}" + (f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval is not None else "")
    if severity == "pass":
        message = f"{obs.metric} = {shown} for {obs.scope}: {relation[1]} the {threshold:.4g} threshold."
    else:
        message = (
            f"{obs.metric} = {shown} for {obs.scope}: {relation[0]} the {severity} threshold {threshold:.4g}."
        )
    if compared != value:
        message += f" Decided on the interval's {rule.decide_on} end, {compared:.4g}."
    if straddles:
        message += " The confidence interval straddles the threshold: more samples would settle it."
    return Finding(
        **common, severity=severity, value=value, interval=interval, threshold=threshold,
        decided_on=rule.decide_on, interval_straddles=straddles, message=message,
    )  # fmt: skip


__all__ = [
    "DEFAULT_POLICY",
    "METRICS",
    "SEVERITIES",
    "Finding",
    "Observation",
    "Policy",
    "PolicyResult",
    "Rule",
    "evaluate",
    "exceeds",
]
