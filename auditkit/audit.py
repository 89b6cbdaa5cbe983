"""The audit orchestrator: a generator, a reference, a judge and a policy in; an :class:`AuditResult` out.

Stages, in order, each cached in the audit's folder (``stages/<name>.json``) under a key of everything it
depends on, so an interrupted audit resumed with ``resume=AUDIT_ID`` redoes only unfinished stages:

``samples``
    ``n`` images from the generator (seeded), read by the judge (labels, penultimate features); a few
    images per judged value are kept for sample grids and explanations. Images are streamed, never all
    held.
``bias``
    :func:`auditkit.bias.assess.assess_bias`: raw and judge-corrected shares per attribute, intersection
    and condition against the cited reference, with intervals, tests and amplification.
``quality``
    FID, KID, precision/recall/density/coverage on the judge's features, overall and per judged group,
    with bootstrap intervals.
``memorization``
    Nearest-training-image distances of the generated images, near-copy rate and closest pairs.
``explain``
    Attributions of the judge's reading on a stratified sample, each method's quality verdict
    (:func:`auditkit.explain.assess`) and side-by-side panels.

The policy then turns the stages' observations into findings and a verdict. The result is versioned JSON
(``AuditResult.SCHEMA``; JSON Schema in ``auditkit/schemas/``) with every artifact's SHA-256 and a
manifest (weights hashes, policy and reference data hashes, versions, seeds, device). Everything outside
the ``runtime`` section (audit id, dates, timings) is byte-identical for the same inputs and seed on a CPU.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from auditkit._atomic import json_bytes
from auditkit.errors import ConfigError, StoreError
from auditkit.policy import Observation, Policy, PolicyResult, evaluate
from auditkit.result import SCHEMA, SCHEMA_FILE, AuditResult

STAGES = ("bias", "quality", "memorization", "explain")
DEFAULT_METHODS = ("integrated_gradients", "saliency", "grad_cam")
_VERDICT_LEVEL = {"trustworthy": 2, "questionable": 1, "failed": 0}
_PACKAGES = ("auditkit", "torch", "torchvision", "numpy", "scipy", "captum", "shap", "lime", "scikit-learn")


def audit(
    generator: Any,
    reference: Any,
    judge: Any,
    policy: Policy | str | Path | None = None,
    *,
    n: int = 5000,
    seed: int = 0,
    attributes: Sequence[str] | None = None,
    intersections: Sequence[Sequence[str]] = (),
    reference_shares: str | Mapping[str, Mapping[str, float]] = "data",
    reference_source: str | None = None,
    stages: Sequence[str] = STAGES,
    explain_methods: Sequence[str] = DEFAULT_METHODS,
    explain_per_value: int = 4,
    n_boot: int = 1000,
    quality_bootstrap: int = 100,
    reference_n: int | None = None,
    batch_size: int = 256,
    store: Any = None,
    name: str | None = None,
    resume: str | None = None,
    progress: bool = True,
) -> AuditResult:
    """Audit ``generator`` against ``reference`` with ``judge``, under ``policy``.

    Parameters
    ----------
    generator
        A :class:`~auditkit.generators.Generator`, a trained generator's folder or file, or a run id.
    reference
        Labelled reference data (an ``ImageSet``, ``"shapes"``, ``"digits"``, a folder, a run id): the
        real side of the quality metrics, the training set of the memorization check, and (by default)
        the reference distribution of the bias audit.
    judge
        A :class:`~auditkit.Judge`, a judge folder or a run id.
    policy
        A :class:`~auditkit.policy.Policy`, a YAML path, or ``None`` for the default policy.
    n, seed
        Generated images and the seed of everything random (sampling, bootstraps, explanations).
    attributes
        Attributes to audit (default: the judge's attributes that the reference data also labels).
    intersections
        Tuples of attributes audited jointly, e.g. ``[("shape", "colour")]``.
    reference_shares
        ``"data"``: the reference data's shares (cited as the data); ``"uniform"``: parity; or
        attribute → value → share, with ``reference_source`` the citation.
    stages
        Which of ``bias``, ``quality``, ``memorization``, ``explain`` to run.
    explain_methods, explain_per_value
        Attribution methods judged on the explanation sample, and images per judged value in it.
    n_boot, quality_bootstrap
        Bootstrap replicates for the bias intervals and for the quality intervals.
    reference_n
        Use only the first ``reference_n`` reference images for quality and memorization.
    store, name
        Where the audit is recorded (``RunStore``; default ``$AUDITKIT_HOME``), and its label.
    resume
        An interrupted audit's id: finished stages with the same inputs are loaded, not recomputed.
    progress
        tqdm bars.

    Returns
    -------
    AuditResult
        Also written as ``audit.json`` in the audit's folder, with its artifacts.
    """
    from auditkit.bias.judge import load_judge
    from auditkit.metrics.compute import resolve_source
    from auditkit.store import RunStore

    started = time.perf_counter()
    _check_options(n, seed, stages, explain_per_value, n_boot, quality_bootstrap, batch_size)
    store = store if store is not None else RunStore()
    judge_obj = load_judge(judge, store)
    gen = resolve_source(generator, store=store)
    data = resolve_source(reference, n=reference_n, seed=seed, store=store)
    from auditkit.data.imageset import ImageSet
    from auditkit.generators.base import BaseGenerator

    if not isinstance(gen, BaseGenerator):
        raise ConfigError(f"the audited source {generator!r} is a data set, not a generator.")
    if not isinstance(data, ImageSet):
        raise ConfigError(f"the reference {reference!r} must be labelled data, not a generator.")
    if reference_n is not None and reference_n < len(data):
        data = data.subset(range(reference_n))
    policy_obj = (
        policy if isinstance(policy, Policy) else (Policy.load(policy) if policy else Policy.default())
    )
    if tuple(gen.image_shape) != tuple(judge_obj.image_shape):
        raise ConfigError(
            f"the generator makes images of shape {tuple(gen.image_shape)} but the judge reads "
            f"{tuple(judge_obj.image_shape)}; train the judge on data of the generator's size."
        )
    attrs = _audited_attributes(judge_obj, data, attributes)
    references = _references(attrs, judge_obj, data, reference_shares, reference_source)
    for combo in intersections:
        if len(combo) < 2 or any(a not in attrs for a in combo):
            raise ConfigError(
                f"intersection {list(combo)} must name at least two audited attributes {attrs}."
            )

    config = {
        "n": n,
        "seed": seed,
        "attributes": attrs,
        "intersections": [list(c) for c in intersections],
        "reference_shares": reference_shares if isinstance(reference_shares, str) else "explicit",
        "reference_source": reference_source,
        "stages": list(stages),
        "explain_methods": list(explain_methods),
        "explain_per_value": explain_per_value,
        "n_boot": n_boot,
        "quality_bootstrap": quality_bootstrap,
        "reference_n": reference_n,
        "batch_size": batch_size,
    }
    manifest = _manifest(gen, judge_obj, data, policy_obj, references, seed)
    key = hashlib.sha256(json_bytes({"config": config, "inputs": manifest["inputs"]})).hexdigest()
    info = _open_audit(store, resume, name, {**config, "key": key})
    timings: dict[str, float] = {}
    runner = _Stages(store, info.id, key, timings, progress)

    try:
        samples = runner.run(
            "samples",
            lambda: _sample(gen, judge_obj, attrs, n, seed, batch_size, explain_per_value, progress),
        )
        observations: list[Observation] = []
        results: dict[str, Any] = {}
        if "bias" in stages:
            bias = runner.run(
                "bias",
                lambda: _bias(
                    samples, gen, judge_obj, data, attrs, references, intersections, n_boot, seed, policy_obj
                ),
            )
            results["bias"] = bias
            observations += _bias_observations(bias)
        # the reference's judge features serve quality and memorization: extract them once, on first use
        real_features = functools.cache(lambda: _real_features(data, judge_obj, batch_size))
        if "quality" in stages:
            quality = runner.run(
                "quality",
                lambda: _quality(samples, real_features(), judge_obj, attrs, quality_bootstrap, seed),
            )
            results["quality"] = quality
            observations += _quality_observations(quality, attrs)
        if "memorization" in stages:
            mem = runner.run(
                "memorization", lambda: _memorization(samples, real_features(), judge_obj, len(data), seed)
            )
            results["memorization"] = mem
            observations.append(
                Observation(
                    "memorization.near_copy_rate",
                    "overall",
                    mem["near_copy_rate"],
                    evidence={k: mem[k] for k in ("baseline_near_copy_rate", "distance_ratio", "threshold")},
                )
            )
        if "explain" in stages:
            expl = runner.run(
                "explain",
                lambda: _explain(
                    samples, judge_obj, attrs, explain_methods, explain_per_value, seed, store, info.id
                ),
            )
            latent = runner.run("latent", lambda: _latent(gen, judge_obj, attrs, seed, store, info.id))
            results["explain"] = {**expl, "latent": latent}
            observations += _explain_observations(expl)
        grids = runner.run("grids", lambda: _grids(samples, judge_obj, attrs, store, info.id))
        decided: PolicyResult = evaluate(policy_obj, observations)
        data_out = {
            "schema": SCHEMA,
            "verdict": decided.verdict,
            "scope": {
                "generator": gen.describe(),
                "n": n,
                "seed": seed,
                "attributes": attrs,
                "intersections": config["intersections"],
                "stages": list(stages),
                "references": {a: references[a].to_dict() for a in attrs},
                "reference_data": {"n": len(data), "info": _json_safe(data.info)},
            },
            "judge": _judge_summary(judge_obj, attrs),
            **results,
            "samples": {"grids": grids},
            "findings": decided.to_dict(),
            "manifest": {**manifest, "config": config, "artifacts": []},
        }
        artifacts = sorted(
            (
                {"path": a.relpath, "sha256": a.sha256, "bytes": a.size}
                for a in store.artifacts(info.id)
                # audit.json cannot list itself (one left by an interrupted run would be stale)
                if not a.relpath.startswith("stages/") and a.relpath != "audit.json"
            ),
            key=lambda a: a["path"],
        )
        data_out["manifest"]["artifacts"] = artifacts
        timings["total"] = time.perf_counter() - started
        data_out["runtime"] = {
            "audit_id": info.id,
            "created_at": info.created_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "timings": timings,
            "device": str(judge_obj.device),
            "platform": platform.platform(),
        }
        result = AuditResult(_json_safe(data_out), info.path)
        store.write_artifact(info.id, "audit.json", result.to_json(), media_type="application/json")
        store.set_audit_status(info.id, "completed", verdict=decided.verdict)
        return result
    except KeyboardInterrupt:
        store.set_audit_status(info.id, "interrupted")
        raise
    except BaseException:
        store.set_audit_status(info.id, "failed")
        raise


def training_data(run: str | Path, store: Any = None) -> Any:
    """The data a training run learned from, rebuilt from its recorded config (Shapes with its skew, ...).

    ``run`` is a run id in ``store`` or a run folder. Raises ``ConfigError`` when the run recorded no data
    config (a generator brought from elsewhere): pass the reference data explicitly then.
    """
    from auditkit.data.sources import load_source

    text = str(run)
    folder = Path(text)
    if not folder.is_dir() and text.startswith("run-"):
        from auditkit.store import RunStore

        folder = (store or RunStore()).folder(text)
    if folder.is_file():
        folder = folder.parent
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        data = dict(config["train"]["data"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{run} records no training data config; pass the reference data explicitly "
            "(--reference shapes|digits|FOLDER)."
        ) from None
    data.pop("condition", None)
    return load_source(**data)


# --------------------------------------------------------------------------- stage cache


class _Stages:
    """Runs stages, caching each result as JSON (arrays as safetensors) under the audit's key."""

    def __init__(self, store: Any, audit_id: str, key: str, timings: dict[str, float], progress: bool):
        self.store, self.audit_id, self.key, self.timings, self.progress = (
            store,
            audit_id,
            key,
            timings,
            progress,
        )

    def run(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        cached = self._cached(name)
        if cached is not None:
            self.timings[name] = 0.0
            return cached
        start = time.perf_counter()
        value = compute()
        self.timings[name] = time.perf_counter() - start
        arrays = value.pop("arrays", None)
        if arrays is not None:
            self.store.write_artifact(self.audit_id, f"stages/{name}.safetensors", save_safetensors(arrays))
        # Keys stay in the order they were computed in (json_bytes would sort them): findings list groups
        # in dict order, so a stage loaded on resume must read exactly like the one just computed.
        record = {"key": self.key, "arrays": arrays is not None, "value": _json_safe(value)}
        text = json.dumps(record, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        self.store.write_artifact(self.audit_id, f"stages/{name}.json", text.encode())
        if arrays is not None:
            value["arrays"] = arrays
        return value

    def _cached(self, name: str) -> dict[str, Any] | None:
        """Stage ``name``'s stored result, if it was computed with this key and its files are readable.

        A damaged cache file (edited, truncated by a copy) is a miss: the stage is computed again and its
        files rewritten, which gives the same result since every stage is seeded.
        """
        meta_path = self.store.artifact_path(self.audit_id, f"stages/{name}.json")
        if not meta_path.is_file():
            return None
        try:
            cached = json.loads(meta_path.read_text(encoding="utf-8"))
            if cached.get("key") != self.key:
                return None
            value = cached["value"]
            if cached.get("arrays"):
                blob = self.store.artifact_path(self.audit_id, f"stages/{name}.safetensors").read_bytes()
                value["arrays"] = load_safetensors(blob)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError):
            return None  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return value


def _open_audit(store: Any, resume: str | None, name: str | None, config: dict[str, Any]) -> Any:
    if resume is None:
        return store.create_audit(name=name, config=config)
    info = store.get_audit(resume)
    if info.config.get("key") != config["key"]:
        raise ConfigError(
            f"audit {resume} was started with different inputs or settings; resuming it would mix results. "
            "Start a new audit (drop --resume) or resume with the original settings."
        )
    if info.status == "completed":
        raise StoreError(f"audit {resume} is already completed; its result is {info.path / 'audit.json'}.")
    store.set_audit_status(resume, "running")
    return info


# --------------------------------------------------------------------------- stages


def _sample(gen, judge, attrs, n, seed, batch_size, keep, progress) -> dict[str, Any]:
    judged: list[torch.Tensor] = []
    features: list[torch.Tensor] = []
    conditions: list[torch.Tensor] = []
    kept: dict[str, dict[int, list[torch.Tensor]]] = {a: {} for a in attrs}
    columns = [list(judge.attributes).index(a) for a in attrs]
    for images, labels in gen.sample_batches(n, seed=seed, batch_size=batch_size, progress=progress):
        predicted = judge.predict(images, batch_size=batch_size)[:, columns]
        judged.append(predicted)
        features.append(judge.features(images, batch_size=batch_size))
        if labels is not None:
            conditions.append(labels.long())
        for j, attr in enumerate(attrs):
            for value in predicted[:, j].unique().tolist():
                bucket = kept[attr].setdefault(int(value), [])
                room = keep * 2 - len(bucket)  # twice what explanations use: grids show more
                if room > 0:
                    bucket.extend(images[predicted[:, j] == value][:room])
    arrays = {"judged": torch.cat(judged).to(torch.int64), "features": torch.cat(features).float()}
    if conditions:
        arrays["conditions"] = torch.cat(conditions)
    index = {}
    for attr in attrs:
        for value, imgs in sorted(kept[attr].items()):
            arrays[f"kept/{attr}/{value}"] = torch.stack(imgs).float()
            index.setdefault(attr, []).append(value)
    return {"n": n, "kept": index, "arrays": arrays}


def _bias(
    samples, gen, judge, data, attrs, references, intersections, n_boot, seed, policy
) -> dict[str, Any]:
    from auditkit.bias.assess import assess_bias

    judged = samples["arrays"]["judged"].numpy()
    labels = {a: judged[:, j] for j, a in enumerate(attrs)}
    vocab = {a: judge.attributes[a] for a in attrs}
    confusion = {a: judge.report.confusion[a] for a in attrs}
    condition = None
    if "conditions" in samples["arrays"] and gen.condition:
        condition = (gen.condition, gen.class_names, samples["arrays"]["conditions"].numpy())
    # the reference data's true labels, where they use the judge's (or, for the condition, the
    # generator's) value names: for amplification and conditional references
    training = {
        a: data.label(a).numpy()
        for a in attrs
        if a in data.attributes and tuple(data.attributes[a]) == tuple(judge.attributes[a])
    }
    if gen.condition and tuple(data.attributes.get(gen.condition, ())) == tuple(gen.class_names):
        training[gen.condition] = data.label(gen.condition).numpy()
    tvd_rule = policy.rules.get("bias.tvd")
    policy_tvd = (
        tvd_rule.warn if tvd_rule and tvd_rule.warn is not None else (tvd_rule.fail if tvd_rule else 0.05)
    )
    result = assess_bias(
        labels,
        vocab,
        confusion,
        references,
        intersections=intersections,
        condition=condition,
        training=training,
        training_source=_data_name(data),
        n_boot=n_boot,
        seed=seed,
        policy_tvd=policy_tvd,
    )
    return result.to_dict()


def _bias_observations(bias: dict[str, Any]) -> list[Observation]:
    from auditkit.bias.assess import observations_from

    return observations_from(bias["scopes"])


def _real_features(data, judge, batch_size):
    from auditkit.metrics.compute import source_features

    extractor = judge.feature_extractor(batch_size=batch_size)
    return source_features(data, extractor, judge=judge, cache=False, progress=False)


def _fake_features(samples, judge, attrs):
    from auditkit.metrics.compute import SourceFeatures

    judged = samples["arrays"]["judged"]
    labels = {f"judge:{a}": judged[:, j] for j, a in enumerate(attrs)}
    vocab = {f"judge:{a}": tuple(judge.attributes[a]) for a in attrs}
    return SourceFeatures(
        "generator", "generator", {"features": samples["arrays"]["features"]}, labels, vocab
    )


def _quality(samples, real, judge, attrs, bootstrap, seed) -> dict[str, Any]:
    from auditkit.metrics.compute import compare

    fake = _fake_features(samples, judge, attrs)
    result = compare(
        real,
        fake,
        metrics=("fid", "kid", "prdc"),
        bootstrap=bootstrap,
        seed=seed,
        by=[f"judge:{a}" for a in attrs],
    )
    result["features"] = "judge"
    return result


def _quality_observations(quality: dict[str, Any], attrs: Sequence[str]) -> list[Observation]:
    obs = []
    ci = quality.get("ci", {})
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        if key in quality:
            interval = (ci[key]["low"], ci[key]["high"]) if key in ci else None
            obs.append(
                Observation(
                    f"quality.{key}",
                    "overall",
                    float(quality[key]),
                    interval,
                    {"features": "judge", "n_real": quality["n_real"], "n_fake": quality["n_fake"]},
                )
            )
    for attr in attrs:
        groups = quality.get("groups", {}).get(f"judge:{attr}", {})
        fids = {v: e["fid"] for v, e in groups.items() if e.get("fid") is not None}
        if len(fids) >= 2 and min(fids.values()) > 0:
            worst, best = max(fids, key=fids.get), min(fids, key=fids.get)
            obs.append(
                Observation(
                    "quality.group_fid_ratio",
                    attr,
                    fids[worst] / fids[best],
                    evidence={"fid_by_group": fids, "worst": worst, "best": best},
                )
            )
        elif groups:
            skipped = [v for v, e in groups.items() if e.get("fid") is None]
            obs.append(
                Observation(
                    "quality.group_fid_ratio",
                    attr,
                    math.nan,
                    evidence={"reason": f"too few images in groups {skipped}"},
                )
            )
    return obs


def _memorization(samples, real, judge, n_training, seed) -> dict[str, Any]:
    from auditkit.metrics.compute import SourceFeatures, compare

    # Identical training images (frequent in synthetic data) would make the training set's own NN spacing
    # 0; a copy of any of them is a copy of one distinct image, so the check runs on the distinct ones.
    distinct = torch.unique(real.features, dim=0)
    real = SourceFeatures(real.name, real.kind, {"features": distinct})
    fake = _fake_features(samples, judge, [])
    result = compare(real, fake, metrics=("memorization",), seed=seed)["memorization"]
    result["n_training_images"] = n_training
    result["n_distinct_training_features"] = int(distinct.shape[0])
    return result


def _explain(samples, judge, attrs, methods, per_value, seed, store, audit_id) -> dict[str, Any]:
    from auditkit.explain import assess, explain, get_method, method_panel

    out: dict[str, Any] = {"methods": list(methods), "attributes": {}}
    for attr in attrs:
        values = samples["kept"].get(attr, [])
        images = torch.cat([samples["arrays"][f"kept/{attr}/{v}"][:per_value] for v in values])
        target = torch.cat(
            [torch.full((min(per_value, len(samples["arrays"][f"kept/{attr}/{v}"])),), v) for v in values]
        ).long()
        head = judge.head(attr)
        verdicts: dict[str, Any] = {}
        maps = {}
        for method in methods:
            spec = get_method(method)

            def explain_fn(model, x, t, seed: int = seed, _method: str = method) -> torch.Tensor:
                return explain(model, x, t, _method, seed=seed).maps

            maps[method] = explain(head, images, target, method, seed=seed)
            verdict = assess(method, explain_fn, head, images, target, stochastic=spec.stochastic, seed=seed)
            verdicts[method] = {
                "status": verdict.status,
                "reasons": list(verdict.reasons),
                "checks": _json_safe(verdict.checks),
                "record": {k: v for k, v in maps[method].to_dict().items() if k != "seconds"},
            }
        vocab = judge.attributes[attr]
        png = method_panel(images, maps, row_labels=[vocab[int(t)] for t in target], max_rows=len(images))
        rel = f"explain/{attr}.png"
        store.write_artifact(audit_id, rel, png, media_type="image/png")
        out["attributes"][attr] = {"n": len(images), "verdicts": verdicts, "panel": rel}
    return out


# Integrated-gradient steps tried in turn until completeness holds to the latent module's warning bar
# (5 %, or a miss below 0.01 nats); the audit records the final miss, so one after the last try is visible.
_LATENT_IG_STEPS = (32, 64, 128)
# A miss this large even at the most steps means the generator is not smooth along the path (a discrete
# choice inside it, such as a mixture prior's component): one-at-a-time occlusion is the honest measure.
_LATENT_IG_GIVE_UP = 0.5


def _complete_latent_ig(gen, judge, attr: str, *, n: int, seed: int):
    """Latent IG with as many steps as completeness needs (up to the last of ``_LATENT_IG_STEPS``), or
    occlusion when IG cannot account for the score change; returns the attribution and a note."""
    import warnings

    from auditkit.explain.latent import latent_attribution

    for steps in _LATENT_IG_STEPS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the miss is handled here and recorded
            found = latent_attribution(gen, judge, attr, n=n, seed=seed, n_steps=steps)
        if not found.misses_completeness():
            return found, {}
    if found.misses_completeness(_LATENT_IG_GIVE_UP):
        note = {
            "ig_relative_delta": found.relative_delta,
            "fallback": (
                f"integrated gradients missed completeness by {100 * found.relative_delta:.0f} % at "
                f"{found.n_steps} steps (the generator is not smooth along the path, e.g. a discrete "
                "component choice), so dimensions were ranked by occlusion"
            ),
        }
        return latent_attribution(gen, judge, attr, n=n, seed=seed, method="occlusion"), note
    return found, {}


def _latent(gen, judge, attrs, seed, store, audit_id, n: int = 32) -> dict[str, Any]:
    """What in the generator drives each attribute: latent attribution and a traversal of the top dims."""
    from auditkit.errors import ExplainError
    from auditkit.explain.latent import latent_attribution, latent_traversal, traversal_figure

    out: dict[str, Any] = {}
    for attr in attrs:
        try:
            found, note = _complete_latent_ig(gen, judge, attr, n=n, seed=seed)
        except ExplainError:  # no gradients (an exported graph, numpy inside): perturb instead
            note = {}
            try:
                found = latent_attribution(gen, judge, attr, n=n, seed=seed, method="occlusion")
            except ExplainError as exc:
                return {"skipped": str(exc)}
        travel = latent_traversal(gen, judge, attr, dims=found, seed=seed)
        rel = f"explain/latent-{attr}.png"
        store.write_artifact(audit_id, rel, traversal_figure(travel), media_type="image/png")
        out[attr] = {
            "top_input": found.top_input,
            "ranking": found.ranking(8),
            "method": found.method,
            "condition_method": found.condition_method,
            "relative_delta": found.relative_delta,
            "mean_abs_delta": float(found.deltas.abs().mean()) if found.method == "ig" else None,
            "n_steps": found.n_steps,
            **note,
            "traversal": {k: v for k, v in travel.to_dict().items() if k != "generator"},
            "figure": rel,
        }
    return {"attributes": out, "n": n}


def _explain_observations(expl: dict[str, Any]) -> list[Observation]:
    obs = []
    for attr, entry in expl["attributes"].items():
        levels = {m: _VERDICT_LEVEL[v["status"]] for m, v in entry["verdicts"].items()}
        if levels:
            best = max(levels, key=levels.get)
            obs.append(
                Observation(
                    "explain.quality",
                    attr,
                    float(levels[best]),
                    evidence={
                        "best_method": best,
                        "verdicts": {m: v["status"] for m, v in entry["verdicts"].items()},
                    },
                )
            )
    return obs


def _grids(samples, judge, attrs, store, audit_id) -> dict[str, str]:
    """One PNG per audited attribute: a row of kept images per judged value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for attr in attrs:
        values = samples["kept"].get(attr, [])
        if not values:
            continue
        cols = max(len(samples["arrays"][f"kept/{attr}/{v}"]) for v in values)
        fig, axes = plt.subplots(
            len(values), cols, figsize=(1.1 * cols + 0.8, 1.1 * len(values)), squeeze=False
        )
        for i, v in enumerate(values):
            imgs = samples["arrays"][f"kept/{attr}/{v}"]
            axes[i, 0].set_ylabel(judge.attributes[attr][v], fontsize=8)
            for j in range(cols):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(imgs):
                    ax.imshow(imgs[j].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
                else:
                    ax.axis("off")
        fig.suptitle(f"generated images by the judge's {attr}", fontsize=9)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        rel = f"samples/{attr}.png"
        store.write_artifact(audit_id, rel, buf.getvalue(), media_type="image/png")
        out[attr] = rel
    return out


# --------------------------------------------------------------------------- inputs


def _audited_attributes(judge, data, attributes) -> list[str]:
    shared = [a for a in judge.attributes if a in data.attributes]
    if attributes is None:
        if not shared:
            raise ConfigError(
                f"the judge's attributes {list(judge.attributes)} and the reference data's "
                f"{list(data.attributes)} have none in common; audit with a judge trained on this data."
            )
        return shared
    attrs = list(attributes)
    unknown = [a for a in attrs if a not in judge.attributes]
    if unknown or not attrs:
        raise ConfigError(f"cannot audit {unknown or attrs}: the judge reads {list(judge.attributes)}.")
    return attrs


def _references(attrs, judge, data, shares, source) -> dict[str, Any]:
    from auditkit.bias.representation import Reference, label_counts

    refs = {}
    for attr in attrs:
        values = tuple(judge.attributes[attr])
        if shares == "data":
            if attr not in data.attributes:
                raise ConfigError(f"the reference data has no {attr!r} labels; pass explicit shares for it.")
            if tuple(data.attributes[attr]) != values:
                raise ConfigError(
                    f"the judge's values for {attr!r} {list(values)} differ from the reference data's "
                    f"{list(data.attributes[attr])}; the judge and the reference must use the same values."
                )
            counts = label_counts(data.label(attr).numpy(), len(values))
            refs[attr] = Reference.from_counts(values, counts, source=source or _data_name(data))
        elif shares == "uniform":
            refs[attr] = Reference.uniform(values)
        elif isinstance(shares, Mapping):
            if attr not in shares:
                raise ConfigError(f"explicit reference shares name {sorted(shares)}; add {attr!r}.")
            if not source:
                raise ConfigError("explicit reference shares need reference_source (the citation).")
            refs[attr] = Reference.explicit(shares[attr], source=source, values=values)
        else:
            raise ConfigError(f"reference_shares must be 'data', 'uniform' or a mapping; got {shares!r}.")
    return refs


def _check_options(n, seed, stages, per_value, n_boot, quality_bootstrap, batch_size) -> None:
    for label, value, low in (
        ("n", n, 2),
        ("seed", seed, 0),
        ("explain_per_value", per_value, 1),
        ("n_boot", n_boot, 10),
        ("quality_bootstrap", quality_bootstrap, 0),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{label} must be an integer ≥ {low}; got {value!r}.")
    if 0 < quality_bootstrap < 10:
        raise ConfigError(f"quality_bootstrap must be 0 (no intervals) or ≥ 10; got {quality_bootstrap}.")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown audit stage(s) {unknown}; choose from {list(STAGES)}.")


def _data_name(data) -> str:
    info = data.info or {}
    return str(info.get("source") or info.get("name") or "reference data") + f" ({len(data)} images)"


def _judge_summary(judge, attrs) -> dict[str, Any]:
    report = judge.report
    return {
        "attributes": {a: list(judge.attributes[a]) for a in attrs},
        "accuracy": {a: report.accuracy[a] for a in attrs},
        "confusion": {a: report.confusion[a] for a in attrs},
        "n_train": report.n_train,
        "n_holdout": report.n_holdout,
        "run_id": judge.run_id,
        "weights_sha256": _judge_hash(judge),
    }


# --------------------------------------------------------------------------- manifest


def _manifest(gen, judge, data, policy, references, seed) -> dict[str, Any]:
    from auditkit.metrics.cache import tensor_fingerprint

    labels = data.labels if isinstance(data.labels, torch.Tensor) else torch.as_tensor(data.labels)
    return {
        "inputs": {
            "generator_sha256": _generator_hash(gen),
            "generator": gen.describe(),
            "judge_sha256": _judge_hash(judge),
            "reference_images_sha256": tensor_fingerprint(data.images),
            "reference_labels_sha256": tensor_fingerprint(labels),
            "policy_sha256": policy.sha256 or hashlib.sha256(json_bytes(policy.to_dict())).hexdigest(),
            "references": {a: r.to_dict() for a, r in references.items()},
        },
        "policy": policy.to_dict(),
        "seed": seed,
        "versions": _versions(),
    }


def _state_hash(modules: Sequence[nn.Module]) -> str:
    from auditkit.metrics.cache import tensor_fingerprint

    digest = hashlib.sha256()
    for module in modules:
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor_fingerprint(tensor).encode())
    return digest.hexdigest()


def _generator_hash(gen) -> str:
    modules = [v for v in vars(gen).values() if isinstance(v, nn.Module)]
    if not modules:  # an exported graph or a callable: hash its description (weights unavailable)
        return hashlib.sha256(json_bytes(_json_safe(gen.describe()))).hexdigest()
    return _state_hash(modules)


def _judge_hash(judge) -> str:
    return judge.weights_sha256 or _state_hash([judge.network])


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _json_safe(value: Any) -> Any:
    """Plain JSON types only: NaN/inf become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _json_safe(value.item())
    if isinstance(value, Path):
        return str(value)
    return repr(value)


__all__ = ["DEFAULT_METHODS", "SCHEMA", "SCHEMA_FILE", "STAGES", "AuditResult", "audit", "training_data"]
