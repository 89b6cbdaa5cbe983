"""The bias stage of an audit: every attribute, declared intersection and condition, raw and corrected.

Given the judge's labels on the generated images, its held-out confusion counts and a cited reference per
attribute, :func:`assess_bias` computes for each *scope*

- the raw and judge-corrected shares with bootstrap intervals (:func:`~auditkit.bias.bootstrap_shares`);
- the representation gap of both (TVD, KL, JS, min/max ratio, MAD), with intervals of the corrected
  gap's numbers taken from the same bootstrap replicates;
- a goodness-of-fit test of the judge's labels against the reference *as the judge would read it*
  (expected counts ``n·Cᵀr``), with Benjamini–Hochberg control over every test of the audit;
- the power of that test at the policy's smallest TVD, and the n it would need;
- for attributes, bias amplification against the training data's shares when those are known.

Scopes are ``"colour"`` (an attribute), ``"colour×shape"`` (an intersection; values ``"colour=red,
shape=circle"``) and ``"colour | shape=circle"`` (an attribute among images generated with one condition).
Each scope's bootstrap is seeded from the audit seed and the scope's name, so adding a scope never
changes another's numbers.

For a condition the reference is the training data's shares *within that condition* when the reference
is the training data (a generator should reproduce the data's conditional distribution), else the
attribute's reference as given. Bias amplification measures skew against parity: when the reference is
the training data itself (whose amplification would be the gap by definition) it uses the uniform
reference, and says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from auditkit.bias.correction import bootstrap_shares, joint_confusion
from auditkit.bias.representation import (
    Reference,
    bias_amplification,
    intersection_labels,
    intersection_values,
    label_counts,
    representation_gap,
)
from auditkit.bias.stats import benjamini_hochberg, goodness_of_fit, power_warning
from auditkit.errors import ConfigError
from auditkit.policy import Observation

JOIN = "×"
_GAP_METRICS = {"tvd": "bias.tvd", "js": "bias.js_divergence", "ratio": "bias.representation_ratio",
                "mad": "bias.mean_abs_deviation"}  # fmt: skip


@dataclass
class BiasAssessment:
    """The bias stage's result: one record per scope, the multiple-testing summary and observations.

    Attributes
    ----------
    scopes
        Scope name → JSON-safe record (shares raw/corrected with intervals, gaps, test, power, ...).
    tests
        Benjamini–Hochberg summary over all goodness-of-fit tests.
    observations
        What the policy judges (:class:`~auditkit.policy.Observation`), in scope order.
    """

    scopes: dict[str, dict[str, Any]]
    tests: dict[str, Any]
    observations: list[Observation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scopes": self.scopes, "tests": self.tests}


def assess_bias(
    judged: Mapping[str, np.ndarray],
    vocab: Mapping[str, Sequence[str]],
    confusion: Mapping[str, Sequence[Sequence[int]]],
    references: Mapping[str, Reference],
    *,
    intersections: Sequence[Sequence[str]] = (),
    condition: tuple[str, Sequence[str], np.ndarray] | None = None,
    training: Mapping[str, np.ndarray] | None = None,
    training_source: str = "training data",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    policy_tvd: float = 0.05,
    alpha: float = 0.05,
    test: str = "chi2",
) -> BiasAssessment:
    """Bias of the generated images in every scope (see the module docstring).

    Parameters
    ----------
    judged
        Attribute → the judge's value index for every generated image (same length for all).
    vocab
        Attribute → the judge's value names.
    confusion
        Attribute → held-out confusion counts ``[true][predicted]`` (``JudgeReport.confusion``).
    references
        Attribute → the :class:`Reference` its shares are compared with (values in ``vocab`` order).
    intersections
        Tuples of attributes whose joint values are audited too (reference: the product of the
        attributes' references unless ``training`` labels give the joint training shares).
    condition
        ``(name, class names, class index of every generated image)`` for a conditional generator.
    training
        Attribute → the training data's true labels (for amplification and conditional references).
    n_boot, level, seed
        Bootstrap replicates, interval level, seed.
    policy_tvd
        The smallest TVD the policy wants detected (for the power check).
    alpha, test
        False-discovery rate of the BH procedure; ``"chi2"`` or ``"g"``.
    """
    attrs = list(judged)
    _check_inputs(judged, vocab, confusion, references, intersections, condition, training)
    scopes: dict[str, dict[str, Any]] = {}
    draws: dict[str, np.ndarray] = {}

    for attr in attrs:
        ref = references[attr]
        record, corrected_draws = _scope(
            attr, judged[attr], len(vocab[attr]), confusion[attr], ref, tuple(vocab[attr]), n_boot, level,
            _scope_seed(seed, attr), policy_tvd, alpha, test,
        )  # fmt: skip
        record.update(kind="attribute", attributes=[attr])
        if training is not None and attr in training:
            record["amplification"] = _amplification(
                corrected_draws, record, training[attr], ref, tuple(vocab[attr]), training_source, level
            )
        scopes[attr] = record
        draws[attr] = corrected_draws

    for combo in intersections:
        combo = tuple(combo)
        name = JOIN.join(combo)
        sizes = [len(vocab[a]) for a in combo]
        labels = intersection_labels(np.stack([judged[a] for a in combo], axis=1), sizes)
        values = intersection_values({a: vocab[a] for a in combo})
        ref = _joint_reference(combo, vocab, references, training, training_source, values)
        record, _ = _scope(
            name, labels, len(values), [confusion[a] for a in combo], ref, values, n_boot, level,
            _scope_seed(seed, name), policy_tvd, alpha, test,
        )  # fmt: skip
        record.update(kind="intersection", attributes=list(combo))
        scopes[name] = record

    if condition is not None:
        cname, classes, cond = condition
        for c, cvalue in enumerate(classes):
            mask = cond == c
            for attr in (a for a in attrs if a != cname):
                name = f"{attr} | {cname}={cvalue}"
                ref = _conditional_reference(
                    attr, cname, c, cvalue, vocab, references, training, training_source
                )
                if not mask.any():
                    scopes[name] = {"kind": "condition", "attributes": [attr], "condition": [cname, cvalue],
                                    "n": 0, "empty": True, "reference": ref.to_dict()}  # fmt: skip
                    continue
                record, _ = _scope(
                    name, judged[attr][mask], len(vocab[attr]), confusion[attr], ref, tuple(vocab[attr]),
                    n_boot, level, _scope_seed(seed, name), policy_tvd, alpha, test,
                )  # fmt: skip
                record.update(kind="condition", attributes=[attr], condition=[cname, cvalue])
                scopes[name] = record
        if cname in judged:
            scopes[f"{cname} | fidelity"] = _fidelity(judged[cname], vocab[cname], classes, cond)

    tested = [(k, r) for k, r in scopes.items() if "test" in r]
    bh = benjamini_hochberg([r["test"]["p_value"] for _, r in tested], alpha) if tested else None
    for i, (_, record) in enumerate(tested):
        assert bh is not None
        record["test"]["p_adjusted"] = bh.p_adjusted[i]
        record["test"]["significant"] = bh.reject[i]
    tests = {
        "procedure": "benjamini-hochberg", "alpha": alpha, "n_tests": len(tested),
        "n_significant": int(sum(bh.reject)) if bh else 0, "test": test,
    }  # fmt: skip
    return BiasAssessment(scopes=scopes, tests=tests, observations=observations_from(scopes))


# --------------------------------------------------------------------------- one scope


def _scope(
    name: str,
    labels: np.ndarray,
    k: int,
    confusion: Any,
    ref: Reference,
    values: tuple[str, ...],
    n_boot: int,
    level: float,
    seed: int,
    policy_tvd: float,
    alpha: float,
    test: str,
) -> tuple[dict[str, Any], np.ndarray]:
    counts = label_counts(labels, k)
    cs = bootstrap_shares(labels, confusion, n_boot=n_boot, level=level, seed=seed, values=values)
    ref_shares = ref.aligned(values)
    raw_gap = representation_gap(np.asarray(cs.raw), ref_shares)
    corrected_gap = representation_gap(np.asarray(cs.corrected), ref_shares)
    rates = joint_confusion(confusion) if _is_sequence(confusion) else confusion
    gof = goodness_of_fit(counts, ref_shares, test, confusion=rates)
    power = power_warning(int(counts.sum()), policy_tvd, ref_shares, alpha=alpha, label=name)
    intervals = _gap_intervals(cs.corrected_draws, ref_shares, level)
    record = {
        "n": int(counts.sum()),
        "values": list(values),
        "counts": counts.astype(int).tolist(),
        "reference": ref.to_dict(),
        "shares": cs.to_dict(),
        "gap_raw": raw_gap.to_dict(),
        "gap_corrected": corrected_gap.to_dict(),
        "gap_corrected_interval": intervals,
        "test": gof.to_dict(),
        "power": power.to_dict(),
    }
    return record, cs.corrected_draws


def _gap_intervals(draws: np.ndarray, ref: np.ndarray, level: float) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    if draws.size == 0:
        return out
    gaps = [representation_gap(d, ref) for d in draws]
    tail = (1 - level) / 2
    for key in _GAP_METRICS:
        vals = np.array([getattr(g, key) for g in gaps], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[key] = (
            [float(np.quantile(vals, tail)), float(np.quantile(vals, 1 - tail))]
            if vals.size
            else [None, None]
        )
    return out


def _amplification(
    corrected_draws: np.ndarray,
    record: dict[str, Any],
    training_labels: np.ndarray,
    ref: Reference,
    values: tuple[str, ...],
    training_source: str,
    level: float,
) -> dict[str, Any]:
    train_shares = label_counts(training_labels, len(values)) / max(len(training_labels), 1)
    parity = Reference.uniform(values) if ref.kind == "training" else ref
    amp = bias_amplification(np.asarray(record["shares"]["corrected"]), train_shares, parity.aligned(values))
    diffs = np.array(
        [bias_amplification(d, train_shares, parity.aligned(values)).difference for d in corrected_draws]
    )
    tail = (1 - level) / 2
    interval = [float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail))] if diffs.size else None
    return {
        **amp.to_dict(),
        "difference_interval": interval,
        "training_shares": train_shares.tolist(),
        "training_source": training_source,
        "against": parity.to_dict(),
        "note": "against parity (uniform), since the reference is the training data"
        if ref.kind == "training" else "against the audit's reference",
    }  # fmt: skip


def _fidelity(judged: np.ndarray, values: Sequence[str], classes: Sequence[str], cond: np.ndarray) -> dict:
    """Does the generator obey its condition? The share of each class's images the judge reads as it."""
    by_value = {}
    for c, cvalue in enumerate(classes):
        mask = cond == c
        if cvalue in values and mask.any():
            hits = judged[mask] == list(values).index(cvalue)
            by_value[cvalue] = {"n": int(mask.sum()), "judged_as_condition": float(hits.mean())}
    return {"kind": "fidelity", "n": int(len(cond)), "by_value": by_value}


# --------------------------------------------------------------------------- references


def _joint_reference(
    combo: tuple[str, ...],
    vocab: Mapping[str, Sequence[str]],
    references: Mapping[str, Reference],
    training: Mapping[str, np.ndarray] | None,
    training_source: str,
    values: tuple[str, ...],
) -> Reference:
    kinds = {references[a].kind for a in combo}
    if kinds == {"training"} and training is not None and all(a in training for a in combo):
        joint = intersection_labels(
            np.stack([training[a] for a in combo], axis=1), [len(vocab[a]) for a in combo]
        )
        return Reference.from_counts(values, label_counts(joint, len(values)), source=training_source)
    shares = np.array([1.0])
    for a in combo:
        shares = np.outer(shares, references[a].aligned(vocab[a])).ravel()
    sources = "; ".join(f"{a}: {references[a].source}" for a in combo)
    return Reference.explicit(dict(zip(values, shares.tolist(), strict=True)), values=values,
                              source=f"product of the attributes' references ({sources})")  # fmt: skip


def _conditional_reference(
    attr: str,
    cname: str,
    c: int,
    cvalue: str,
    vocab: Mapping[str, Sequence[str]],
    references: Mapping[str, Reference],
    training: Mapping[str, np.ndarray] | None,
    training_source: str,
) -> Reference:
    ref = references[attr]
    if ref.kind != "training" or training is None or attr not in training or cname not in training:
        return ref
    within = training[cname] == c
    if not within.any():
        return ref
    counts = label_counts(training[attr][within], len(vocab[attr]))
    return Reference.from_counts(tuple(vocab[attr]), counts, source=f"{training_source}, {cname}={cvalue}")


# --------------------------------------------------------------------------- observations


def observations_from(scopes: Mapping[str, dict[str, Any]]) -> list[Observation]:
    """The policy observations of a bias stage's scopes (also used to rebuild them from a cached stage)."""
    obs: list[Observation] = []
    for name, record in scopes.items():
        if record.get("kind") == "fidelity":
            continue
        if record.get("empty"):
            reason = "empty group: no image was generated with this condition"
            obs.append(Observation("bias.tvd", name, float("nan"), evidence={"reason": reason}))
            continue
        gap = record["gap_corrected"]
        test = record["test"]
        evidence = {
            "values": record["values"], "n": record["n"], "reference_source": record["reference"]["source"],
            "raw": record["shares"]["raw"], "corrected": record["shares"]["corrected"],
            "reference": record["reference"]["shares"], "p_adjusted": test.get("p_adjusted"),
            "significant": test.get("significant"),
        }  # fmt: skip
        for key, metric in _GAP_METRICS.items():
            value = gap[key]
            interval = record["gap_corrected_interval"].get(key)
            has_interval = interval is not None and None not in interval
            obs.append(Observation(metric, name, float("nan") if value is None else float(value),
                                   tuple(interval) if has_interval else None, evidence))  # fmt: skip
        power = record["power"]
        power_evidence = {k: power[k] for k in ("required_n", "n", "policy_tvd", "message")}
        obs.append(Observation("bias.power", name, float(power["power"]), evidence=power_evidence))
        amp = record.get("amplification")
        if amp is not None:
            iv = amp["difference_interval"]
            amp_evidence = {k: amp[k] for k in ("generated_tvd", "training_tvd", "directional", "note")}
            obs.append(
                Observation("bias.amplification", name, float(amp["difference"]), tuple(iv) if iv else None,
                            amp_evidence)
            )  # fmt: skip
    return obs


# --------------------------------------------------------------------------- checks


def _scope_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2**32


def _is_sequence(confusion: Any) -> bool:
    return isinstance(confusion, list | tuple) and len(confusion) > 0 and np.asarray(confusion[0]).ndim == 2


def _check_inputs(judged, vocab, confusion, references, intersections, condition, training) -> None:
    if not judged:
        raise ConfigError("no attribute to audit: the judge labelled nothing.")
    lengths = {a: len(v) for a, v in judged.items()}
    if len(set(lengths.values())) != 1:
        raise ConfigError(f"every attribute needs one label per generated image; got lengths {lengths}.")
    if next(iter(lengths.values())) == 0:
        raise ConfigError("no generated image to audit (n = 0); generate at least one.")
    for attr in judged:
        for what, table in (("values", vocab), ("confusion counts", confusion), ("reference", references)):
            if attr not in table:
                raise ConfigError(f"attribute {attr!r} has no {what}; the judge and the reference must "
                                  f"describe the same attributes (judge: {sorted(judged)}).")  # fmt: skip
        ref = references[attr]
        if tuple(ref.values) != tuple(vocab[attr]):
            raise ConfigError(
                f"the reference for {attr!r} has values {list(ref.values)} but the judge reads "
                f"{list(vocab[attr])}; spell the reference's values as the judge does."
            )
    for combo in intersections:
        unknown = [a for a in combo if a not in judged]
        if unknown or len(combo) < 2 or len(set(combo)) != len(combo):
            raise ConfigError(
                f"intersection {list(combo)} must name at least two distinct audited attributes "
                f"(audited: {sorted(judged)}); unknown: {unknown}."
            )
    if condition is not None:
        _, classes, cond = condition
        n = next(iter(lengths.values()))
        if len(cond) != n:
            raise ConfigError(f"the condition labels ({len(cond)}) must match the generated images ({n}).")
        if len(cond) and (cond.min() < 0 or cond.max() >= len(classes)):
            raise ConfigError(f"condition labels must lie in 0…{len(classes) - 1}.")


__all__ = ["JOIN", "BiasAssessment", "assess_bias", "observations_from"]
