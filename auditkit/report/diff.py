"""What changed between two audits: metrics with their intervals, findings, explanation verdicts.

:func:`diff_audits` reads the numbers the policy judges (the same ``(metric, scope)`` keys as the findings:
bias gaps per attribute, intersection and condition; FID, KID, precision/recall/density/coverage and the
group FID ratio; the near-copy rate; the explanation quality), plus per-group FID and each attribution
method's verdict. A change counts as a *regression* when a metric moved in its bad direction (from
:data:`auditkit.policy.METRICS`) and the two confidence intervals do not overlap, or when a finding became
more severe, or a new ``warn``/``fail`` finding appeared. Non-overlapping 95 % intervals are a
conservative test of a difference (it misses some real ones, but a flagged one is rarely noise); metrics
without intervals (the near-copy rate, verdicts) are listed but left to the policy's findings to judge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditkit.errors import ConfigError
from auditkit.policy import METRICS, SEVERITIES
from auditkit.result import AuditResult

_QUALITY = ("fid", "kid", "precision", "recall", "density", "coverage")
_VERDICT_LEVEL = {"trustworthy": 2, "questionable": 1, "failed": 0}

Interval = tuple[float, float]


@dataclass(frozen=True)
class MetricChange:
    """One metric of one scope in both audits (``None``: not measured, or not computable, there)."""

    metric: str
    scope: str
    old: float | None
    new: float | None
    old_interval: Interval | None = None
    new_interval: Interval | None = None

    @property
    def direction(self) -> str:
        """``max`` (high is bad) or ``min`` (low is bad)."""
        return METRICS[self.metric][0]

    @property
    def changed(self) -> bool:
        return self.old != self.new

    @property
    def delta(self) -> float | None:
        """``new - old`` when both are numbers."""
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def overlap(self) -> bool | None:
        """Whether the two intervals overlap; ``None`` when either audit has no interval."""
        if self.old_interval is None or self.new_interval is None:
            return None
        return max(self.old_interval[0], self.new_interval[0]) <= min(
            self.old_interval[1], self.new_interval[1]
        )

    @property
    def worse(self) -> bool | None:
        """Whether the value moved in its bad direction; ``None`` when either value is missing."""
        delta = self.delta
        if delta is None:
            return None
        return delta > 0 if self.direction == "max" else delta < 0

    @property
    def regression(self) -> bool:
        """Worse, with intervals that do not overlap."""
        return bool(self.worse) and self.overlap is False

    def describe(self) -> str:
        """One line: old → new, the change and what the intervals say."""
        text = f"{self.metric} [{self.scope}]: {_shown(self.old, self.old_interval)} → "
        text += _shown(self.new, self.new_interval)
        if self.delta is not None:
            text += f" ({self.delta:+.4g}, {'worse' if self.worse else 'better' if self.delta else 'same'})"
        if self.overlap is not None:
            text += "; intervals overlap" if self.overlap else "; intervals do not overlap"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "scope": self.scope,
            "direction": self.direction,
            "old": self.old,
            "new": self.new,
            "delta": self.delta,
            "old_interval": list(self.old_interval) if self.old_interval else None,
            "new_interval": list(self.new_interval) if self.new_interval else None,
            "overlap": self.overlap,
            "changed": self.changed,
            "worse": self.worse,
            "regression": self.regression,
        }


@dataclass(frozen=True)
class FindingChange:
    """A policy finding whose severity differs (``None``: the audit has no such finding)."""

    metric: str
    scope: str
    old_severity: str | None
    new_severity: str | None
    old_value: float | None = None
    new_value: float | None = None
    message: str = ""

    @property
    def kind(self) -> str:
        """``new`` (only in the second audit), ``dropped`` (only in the first), ``worse`` or ``better``."""
        if self.old_severity is None:
            return "new"
        if self.new_severity is None:
            return "dropped"
        return "worse" if _rank(self.new_severity) > _rank(self.old_severity) else "better"

    @property
    def regression(self) -> bool:
        """More severe than before, or a new ``warn``/``fail`` finding."""
        if self.kind == "new":
            return self.new_severity in ("warn", "fail")
        return self.kind == "worse"

    def describe(self) -> str:
        old, new = self.old_severity or "(none)", self.new_severity or "(none)"
        text = f"{self.kind} finding {self.metric} [{self.scope}]: {old} → {new}"
        return text + (f": {self.message}" if self.message else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "scope": self.scope,
            "kind": self.kind,
            "old_severity": self.old_severity,
            "new_severity": self.new_severity,
            "old_value": self.old_value,
            "new_value": self.new_value,
            "message": self.message,
            "regression": self.regression,
        }


@dataclass(frozen=True)
class VerdictChange:
    """An attribution method's quality verdict on one attribute, where it differs."""

    attribute: str
    method: str
    old: str | None
    new: str | None

    @property
    def worse(self) -> bool | None:
        if self.old is None or self.new is None:
            return None
        return _VERDICT_LEVEL[self.new] < _VERDICT_LEVEL[self.old]

    def describe(self) -> str:
        return (
            f"explanation {self.method} on {self.attribute}: {self.old or '(none)'} → {self.new or '(none)'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "method": self.method, "old": self.old, "new": self.new,
                "worse": self.worse}  # fmt: skip


@dataclass
class AuditDiff:
    """The differences between audit ``a`` (before) and audit ``b`` (after).

    Attributes
    ----------
    a, b
        Audit ids (or file names) and verdicts of the two audits.
    metrics
        Every metric measured in either audit, changed or not (see :attr:`changes`).
    findings
        Findings whose severity differs, or that exist in one audit only.
    explanations
        Attribution verdicts that differ.
    context
        Differences in what was audited and how (judge, policy, references, n, seed) that qualify a
        comparison; empty when only the generator's output differs.
    """

    a: dict[str, Any]
    b: dict[str, Any]
    metrics: list[MetricChange] = field(default_factory=list)
    findings: list[FindingChange] = field(default_factory=list)
    explanations: list[VerdictChange] = field(default_factory=list)
    context: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[MetricChange]:
        """The metrics whose value differs."""
        return [m for m in self.metrics if m.changed]

    @property
    def new_findings(self) -> list[FindingChange]:
        """Findings now ``warn``/``fail`` that were absent or ``pass`` before."""
        return [
            f
            for f in self.findings
            if f.new_severity in ("warn", "fail") and f.old_severity in (None, "pass")
        ]

    @property
    def resolved_findings(self) -> list[FindingChange]:
        """Findings that were ``warn``/``fail`` and now pass."""
        return [f for f in self.findings if f.old_severity in ("warn", "fail") and f.new_severity == "pass"]

    @property
    def changed_severity(self) -> list[FindingChange]:
        """Findings in both audits with a different severity."""
        return [f for f in self.findings if f.kind in ("worse", "better")]

    @property
    def regressions(self) -> list[MetricChange | FindingChange]:
        """Metrics that got worse beyond their intervals, and findings that got more severe or appeared."""
        return [m for m in self.metrics if m.regression] + [f for f in self.findings if f.regression]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (for ``auditkit diff --json``)."""
        return {
            "a": dict(self.a),
            "b": dict(self.b),
            "context": list(self.context),
            "metrics": [m.to_dict() for m in self.metrics],
            "findings": [f.to_dict() for f in self.findings],
            "explanations": [e.to_dict() for e in self.explanations],
            "regressions": [
                {"metric": r.metric, "scope": r.scope, "description": r.describe()} for r in self.regressions
            ],
        }

    def to_text(self) -> str:
        """A terminal summary: verdicts, context, regressions, then every change."""
        a, b = self.a, self.b
        lines = [f"{a['id']} → {b['id']}: verdict {a['verdict']} → {b['verdict']}"]
        if self.context:
            lines += ["context:", *(f"  {c}" for c in self.context)]
        regressions = self.regressions
        lines.append(f"regressions: {len(regressions) or 'none'}")
        lines += [f"  {r.describe()}" for r in regressions]
        # what is not a regression, so that nothing is printed twice
        findings = [f for f in self.findings if not f.regression]
        if findings:
            lines += ["other finding changes:", *(f"  {f.describe()}" for f in findings)]
        changes = [m for m in self.changes if not m.regression]
        shown = len(changes) or "none"
        lines.append(f"other metric changes: {shown} (of {len(self.metrics)} metrics compared)")
        lines += [f"  {m.describe()}" for m in changes]
        if self.explanations:
            lines += ["explanation verdicts:", *(f"  {e.describe()}" for e in self.explanations)]
        return "\n".join(lines)


def diff_audits(a: AuditResult | str | Path, b: AuditResult | str | Path) -> AuditDiff:
    """Compare audit ``a`` (before) with audit ``b`` (after).

    Parameters
    ----------
    a, b
        Audit results, or their folders / ``audit.json`` files.

    Returns
    -------
    AuditDiff
        Metric changes with intervals, finding changes, explanation verdict changes, and context.

    Raises
    ------
    ConfigError
        An input is not a readable audit result.
    """
    first, second = _result(a), _result(b)
    old, new = _metrics(first), _metrics(second)
    metrics = [
        MetricChange(
            metric,
            scope,
            old.get((metric, scope), (None, None))[0],
            new.get((metric, scope), (None, None))[0],
            old.get((metric, scope), (None, None))[1],
            new.get((metric, scope), (None, None))[1],
        )
        for metric, scope in sorted(old.keys() | new.keys())
    ]
    return AuditDiff(
        a=_identity(first),
        b=_identity(second),
        metrics=metrics,
        findings=_finding_changes(first, second),
        explanations=_verdict_changes(first, second),
        context=_context(first.data, second.data),
    )


# --------------------------------------------------------------------------- internals


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)  # type: ignore[arg-type]


def _result(value: AuditResult | str | Path) -> AuditResult:
    if isinstance(value, AuditResult):
        return value
    if isinstance(value, str | Path):
        return AuditResult.load(value)
    raise ConfigError(f"diff_audits compares audit results or their folders; got {type(value).__name__}.")


def _identity(result: AuditResult) -> dict[str, Any]:
    runtime = result.data.get("runtime", {})
    name = runtime.get("audit_id") or (result.path.name if result.path else "(in memory)")
    return {"id": name, "verdict": result.data.get("verdict"), "created_at": runtime.get("created_at")}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _interval(value: Any) -> Interval | None:
    if isinstance(value, dict):
        value = (value.get("low"), value.get("high"))
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    low, high = _number(value[0]), _number(value[1])
    return None if low is None or high is None else (min(low, high), max(low, high))


def _metrics(result: AuditResult) -> dict[tuple[str, str], tuple[float | None, Interval | None]]:
    """``(metric, scope) -> (value, interval)`` of everything comparable in one audit."""
    data = result.data
    out: dict[tuple[str, str], tuple[float | None, Interval | None]] = {}
    try:
        for metric, scope, value, interval in _rows(data):
            out[(metric, scope)] = (_number(value), _interval(interval))
    except (KeyError, TypeError, AttributeError) as exc:
        where = result.path or "(in memory)"
        raise ConfigError(
            f"the audit result {where} lacks {exc} where its schema requires it; validate it with "
            "AuditResult.validate() or re-run the audit."
        ) from None
    return out


def _rows(data: dict[str, Any]) -> Iterator[tuple[str, str, Any, Any]]:
    if "bias" in data:
        from auditkit.bias.assess import observations_from

        # the bias stage's own observations: the same keys, values and intervals the policy judged
        for obs in observations_from(data["bias"]["scopes"]):
            yield obs.metric, obs.scope, obs.value, obs.interval
    quality = data.get("quality")
    if quality:
        ci = quality.get("ci", {})
        for key in _QUALITY:
            if key in quality:
                yield f"quality.{key}", "overall", quality[key], ci.get(key)
        for attr in data["scope"]["attributes"]:
            groups = quality.get("groups", {}).get(f"judge:{attr}", {})
            fids = {v: _number(e.get("fid")) for v, e in groups.items()}
            for value, fid in fids.items():
                yield "quality.fid", f"{attr}={value}", fid, None
            finite = [f for f in fids.values() if f is not None]
            if groups:
                # as the audit computes it: worst over best of the groups large enough for an FID
                ok = len(finite) >= 2 and min(finite) > 0
                yield "quality.group_fid_ratio", attr, max(finite) / min(finite) if ok else None, None
    memorization = data.get("memorization")
    if memorization:
        yield "memorization.near_copy_rate", "overall", memorization["near_copy_rate"], None
    explain = data.get("explain")
    if explain:
        for attr, entry in explain["attributes"].items():
            levels = [_VERDICT_LEVEL[v["status"]] for v in entry["verdicts"].values()]
            if levels:
                yield "explain.quality", attr, float(max(levels)), None


def _finding_changes(a: AuditResult, b: AuditResult) -> list[FindingChange]:
    old = {(f["metric"], f["scope"]): f for f in a.findings}
    new = {(f["metric"], f["scope"]): f for f in b.findings}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        old_severity = before["severity"] if before else None
        new_severity = after["severity"] if after else None
        if old_severity == new_severity:
            continue
        changes.append(
            FindingChange(
                key[0],
                key[1],
                old_severity,
                new_severity,
                _number(before["value"]) if before else None,
                _number(after["value"]) if after else None,
                (after or before or {}).get("message", ""),
            )
        )
    # the worst news first: regressions, then the rest, each by metric and scope
    changes.sort(key=lambda c: (not c.regression, c.metric, c.scope))
    return changes


def _verdict_changes(a: AuditResult, b: AuditResult) -> list[VerdictChange]:
    def verdicts(result: AuditResult) -> dict[tuple[str, str], str]:
        attrs = result.data.get("explain", {}).get("attributes", {})
        return {(attr, m): v["status"] for attr, e in attrs.items() for m, v in e["verdicts"].items()}

    old, new = verdicts(a), verdicts(b)
    return [
        VerdictChange(attr, method, old.get((attr, method)), new.get((attr, method)))
        for attr, method in sorted(old.keys() | new.keys())
        if old.get((attr, method)) != new.get((attr, method))
    ]


def _context(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    notes = []
    ins_a, ins_b = a.get("manifest", {}).get("inputs", {}), b.get("manifest", {}).get("inputs", {})
    if ins_a.get("judge_sha256") != ins_b.get("judge_sha256"):
        notes.append("different judges: judged shares and features differ in part because of the judge")
    if ins_a.get("policy_sha256") != ins_b.get("policy_sha256"):
        notes.append("different policies: a severity change may come from the thresholds, not the generator")
    if ins_a.get("references") != ins_b.get("references"):
        notes.append("different reference distributions: bias gaps are measured against different targets")
    if (ins_a.get("reference_images_sha256"), ins_a.get("reference_labels_sha256")) != (
        ins_b.get("reference_images_sha256"),
        ins_b.get("reference_labels_sha256"),
    ):
        notes.append("different reference data: quality and memorization compare against other images")
    scope_a, scope_b = a.get("scope", {}), b.get("scope", {})
    for key, why in (
        ("n", "interval widths differ with the sample size"),
        ("seed", "sampling noise differs"),
        ("stages", "metrics of a stage run only once show as added or missing"),
        ("attributes", "scopes audited only once show as added or missing"),
    ):
        if scope_a.get(key) != scope_b.get(key):
            notes.append(f"{key} {scope_a.get(key)} → {scope_b.get(key)}: {why}")
    return notes


def _shown(value: float | None, interval: Interval | None) -> str:
    if value is None:
        return "(none)"
    return f"{value:.4g}" + (f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "")


__all__ = ["AuditDiff", "FindingChange", "MetricChange", "VerdictChange", "diff_audits"]
