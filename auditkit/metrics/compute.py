"""Quality metrics between two image sources: features streamed once per source, then FID, KID, IS, PRDC.

A source is a data set (``ImageSet``, ``"shapes"``, ``"digits"``, an image folder) or a generator (a
``Generator``, a training run id, a folder holding ``generator.safetensors``). Generators are streamed in
batches through the extractor, so only features are ever held for all images. Data features are cached on
disk under a key made of the images' SHA-256, the extractor's identity (weights hash, mode) and the count, so
a re-audit against the same reference does not run the network again.

Per-group metrics split both sides by a label: a data set's attribute column, a conditional generator's
requested class, or (``judge=``) the judge's reading of every image. Groups smaller than ``min_group``
are reported with their size and no numbers: a Fréchet distance from a handful of images says nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from auditkit.data.imageset import ImageSet
from auditkit.errors import ConfigError
from auditkit.generators.base import BaseGenerator
from auditkit.metrics.cache import FeatureCache, cache_key, tensor_fingerprint
from auditkit.metrics.features import FeatureExtractor
from auditkit.metrics.frechet import fid_from_features
from auditkit.metrics.inception_score import inception_score
from auditkit.metrics.kid import kernel_inception_distance
from auditkit.metrics.memorization import memorization
from auditkit.metrics.prdc import precision_recall_density_coverage

METRICS = ("fid", "kid", "is", "prdc", "memorization")
_PER_SAMPLE = ("nn_distance", "nn_index", "training_nn_distance", "per_sample_ratio")
DEFAULT_N = 5000


@dataclass
class SourceFeatures:
    """Features of one source, with the labels per-group metrics split by.

    Attributes
    ----------
    name
        What the source was called (a path, a run id, ``"shapes"``...).
    kind
        ``"data"`` or ``"generator"``.
    outputs
        Output name → N×D float32 features (``"pool"``/``"logits"`` for Inception, ``"features"`` else).
    labels
        Attribute → N int64 labels, with ``vocab`` their value names.
    info
        Provenance for reports: n, seed, fingerprint or generator description, cache hit.
    """

    name: str
    kind: str
    outputs: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    vocab: dict[str, tuple[str, ...]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> torch.Tensor:
        """The first output (the one FID, KID and PRDC use)."""
        return next(iter(self.outputs.values()))

    def __len__(self) -> int:
        return self.features.shape[0]

    def subset(self, mask: torch.Tensor) -> SourceFeatures:
        return SourceFeatures(
            self.name,
            self.kind,
            {k: v[mask] for k, v in self.outputs.items()},
            {k: v[mask] for k, v in self.labels.items()},
            self.vocab,
            {**self.info, "n": int(mask.sum())},
        )


def resolve_source(
    source: Any,
    *,
    n: int | None = None,
    seed: int = 0,
    size: int | None = None,
    store: Any = None,
) -> ImageSet | BaseGenerator:
    """The data set or generator a user named.

    ``source`` may be an ``ImageSet``, a ``Generator``, ``"shapes"`` / ``"digits"``, a folder of images, a
    folder or file holding a trained ``generator.safetensors``, or a run id in ``store``.
    """
    from auditkit.generators.registry import GENERATOR_FILE, load_generator

    if isinstance(source, ImageSet | BaseGenerator):
        return source
    if not isinstance(source, str | Path):
        raise ConfigError(
            f"a metrics source is a data set, a generator, 'shapes', 'digits', a folder or a run id; got "
            f"{type(source).__name__}."
        )
    text = str(source)
    if text in ("shapes", "digits"):
        from auditkit.data.sources import load_source

        return load_source(text, n=n or DEFAULT_N, size=size, seed=seed)
    path = Path(text)
    if path.is_file() and path.suffix == ".safetensors":
        return load_generator(path)
    if path.is_dir():
        if (path / GENERATOR_FILE).is_file():
            return load_generator(path)
        from auditkit.data.folder import ImageFolder

        return ImageFolder(path, size=size)
    if text.startswith("run-"):
        from auditkit.store import RunStore

        run = (store or RunStore()).get_run(text)
        return load_generator(run.path)
    raise ConfigError(
        f"cannot find the source {text!r}: give 'shapes', 'digits', an image folder, a trained generator's "
        "folder, or a run id."
    )


def source_features(
    source: ImageSet | BaseGenerator,
    extractor: FeatureExtractor,
    *,
    n: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    cache: FeatureCache | bool | None = True,
    judge: Any = None,
    name: str | None = None,
    progress: bool | None = None,
) -> SourceFeatures:
    """Features (every output of ``extractor``) of ``n`` images of ``source``, with their group labels.

    Parameters
    ----------
    source
        A data set (the first ``n`` images, all by default; cached) or a generator (``n`` samples with
        ``seed``, classes drawn uniformly; streamed, not cached).
    judge
        A :class:`~auditkit.bias.Judge`: also label every image with the judge's reading (attributes
        prefixed ``judge:``), for per-group metrics by judged attribute.
    cache
        ``True``: the default feature cache; a ``FeatureCache``; ``False``/``None``: no cache.
    """
    bs = batch_size or extractor.batch_size
    if isinstance(source, BaseGenerator):
        return _generator_features(source, extractor, n or DEFAULT_N, seed, bs, judge, name, progress)
    if not isinstance(source, ImageSet):
        raise ConfigError(f"expected a data set or a generator; got {type(source).__name__}.")
    count = len(source) if n is None else min(n, len(source))
    if n is not None and n > len(source):
        warnings.warn(
            f"asked for {n} images but {name or 'the data set'} has {len(source)}; using all of them.",
            stacklevel=2,
        )
    data = source if count == len(source) else source.subset(range(count))
    store = FeatureCache() if cache is True else (cache or None)
    key = cache_key(
        data=tensor_fingerprint(data.images), extractor=extractor.info, outputs=list(extractor.outputs)
    )
    hit = False
    outputs = store.load(key) if store is not None else None
    if outputs is None:
        outputs = extractor.extract_all(data.images, batch_size=bs, progress=progress)
        if store is not None:
            store.save(key, outputs, {"n": count, "extractor": extractor.name, "source": name})
    else:
        hit = True
    labels = {a: data.label(a) for a in data.attributes}
    vocab = dict(data.attributes)
    if judge is not None:
        _add_judged(labels, vocab, judge, judge.predict(data.images, batch_size=bs))
    info = {"n": count, "fingerprint": key, "cache_hit": hit, "source_info": data.info}
    return SourceFeatures(
        name or str(data.info.get("source", "data")), "data", dict(outputs), labels, vocab, info
    )


def _generator_features(gen, extractor, n, seed, bs, judge, name, progress) -> SourceFeatures:
    chunks: dict[str, list[torch.Tensor]] = {k: [] for k in extractor.outputs}
    labels: list[torch.Tensor] = []
    judged: list[torch.Tensor] = []
    for images, y in gen.sample_batches(n, seed=seed, batch_size=bs, progress=progress):
        for key, value in extractor.extract_all(images, batch_size=bs, progress=False).items():
            chunks[key].append(value)
        if y is not None:
            labels.append(y)
        if judge is not None:
            judged.append(judge.predict(images))
    outputs = {k: torch.cat(v) for k, v in chunks.items()}
    label_map: dict[str, torch.Tensor] = {}
    vocab: dict[str, tuple[str, ...]] = {}
    if labels and gen.condition:
        label_map[gen.condition] = torch.cat(labels)
        vocab[gen.condition] = gen.class_names
    if judge is not None:
        _add_judged(label_map, vocab, judge, torch.cat(judged))
    info = {"n": n, "seed": seed, "generator": gen.describe()}
    return SourceFeatures(name or gen.name, "generator", outputs, label_map, vocab, info)


def _add_judged(labels, vocab, judge, table: torch.Tensor) -> None:
    """Label columns ``judge:<attribute>`` from the judge's predictions (N×A, its attribute order)."""
    for j, (attr, values) in enumerate(judge.attributes.items()):
        labels[f"judge:{attr}"] = table[:, j]
        vocab[f"judge:{attr}"] = tuple(values)


def compare(
    real: SourceFeatures,
    fake: SourceFeatures,
    *,
    metrics: Sequence[str] = ("fid", "kid", "prdc"),
    nearest_k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    by: Sequence[str] = (),
    min_group: int = 50,
) -> dict[str, Any]:
    """Metrics of ``fake`` against ``real`` from their features; JSON-safe.

    Parameters
    ----------
    metrics
        Any of ``fid``, ``kid``, ``is`` (needs an extractor with ``logits``, i.e. Inception), ``prdc``,
        ``memorization`` (``real`` taken as the training set: nearest-neighbour distances, near-copy rate
        and the closest pairs as evidence).
    bootstrap
        Resamples for confidence intervals of FID, KID and PRDC (0: none).
    by
        Attributes to split both sides by for per-group FID and PRDC (e.g. ``["shape"]`` or
        ``["judge:colour"]``); each must label both sources.
    min_group
        Groups with fewer images on either side get sizes only.

    Returns
    -------
    dict
        ``{"fid": ..., "kid": ..., "kid_std": ..., "precision": ..., ..., "ci": {...}, "groups": {...}}``.
    """
    chosen = _check_metrics(metrics)
    result: dict[str, Any] = {"n_real": len(real), "n_fake": len(fake)}
    result.update(_point_metrics(real, fake, chosen, nearest_k, kid_subsets, kid_subset_size, seed))
    if bootstrap:
        result["ci"] = _intervals(real, fake, chosen, nearest_k, bootstrap, confidence, seed)
    groups: dict[str, Any] = {}
    for attribute in by:
        for side in (real, fake):
            if attribute not in side.labels:
                raise ConfigError(
                    f"cannot split by {attribute!r}: source {side.name!r} has labels {sorted(side.labels)}; "
                    "pass judge= to label both sides with the judge (attributes 'judge:<name>')."
                )
        vocab = fake.vocab.get(attribute) or real.vocab[attribute]
        per_value: dict[str, Any] = {}
        for index, value in enumerate(vocab):
            r_mask, f_mask = real.labels[attribute] == index, fake.labels[attribute] == index
            entry: dict[str, Any] = {"n_real": int(r_mask.sum()), "n_fake": int(f_mask.sum())}
            if min(entry["n_real"], entry["n_fake"]) >= max(min_group, nearest_k + 1):
                group_metrics = [m for m in chosen if m in ("fid", "prdc")]
                entry.update(
                    _point_metrics(
                        real.subset(r_mask), fake.subset(f_mask), group_metrics, nearest_k, 0, 0, seed
                    )
                )
            else:
                entry["skipped"] = f"fewer than {max(min_group, nearest_k + 1)} images on one side"
            per_value[value] = entry
        groups[attribute] = per_value
    if groups:
        result["groups"] = groups
    return result


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    names = list(METRICS) if "all" in metrics else [m.lower() for m in metrics]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ConfigError(f"unknown metric(s) {unknown or names}; choose from {list(METRICS)} or 'all'.")
    return names


def _point_metrics(real, fake, chosen, nearest_k, kid_subsets, kid_subset_size, seed) -> dict[str, Any]:
    out: dict[str, float] = {}
    r, f = real.features, fake.features
    if "fid" in chosen:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the low-sample warning is repeated per group otherwise
            out["fid"] = fid_from_features(r, f)
    if "kid" in chosen and kid_subsets:
        size = min(kid_subset_size, len(real), len(fake))
        out["kid"], out["kid_std"] = kernel_inception_distance(
            r, f, subsets=kid_subsets, subset_size=size, seed=seed
        )
    if "is" in chosen:
        if "logits" not in fake.outputs:
            raise ConfigError(
                "the Inception Score needs class logits: use --features inception (the judge has none)."
            )
        out["is"], out["is_std"] = inception_score(fake.outputs["logits"])
    if "prdc" in chosen:
        out.update(precision_recall_density_coverage(r, f, nearest_k, progress=False))
    result: dict[str, Any] = {k: float(v) for k, v in out.items()}
    if "memorization" in chosen:
        # ``real`` plays the training set here: how close does each generated image sit to it?
        found = memorization(f, r).to_dict()
        result["memorization"] = {k: v for k, v in found.items() if k not in _PER_SAMPLE}
    return result


def _intervals(real, fake, chosen, nearest_k, n_resamples, confidence, seed) -> dict[str, Any]:
    from auditkit.metrics import bootstrap as bs

    r, f = real.features, fake.features
    out: dict[str, Any] = {}
    common = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    if "fid" in chosen:
        out["fid"] = bs.fid_ci(r, f, **common).to_dict()
    if "kid" in chosen:
        # The interval is of the full-sample unbiased MMD² (the subset average estimates the same value).
        out["kid"] = bs.kid_ci(r, f, **common).to_dict()
    if "prdc" in chosen:
        out.update({k: v.to_dict() for k, v in bs.prdc_ci(r, f, k=nearest_k, **common).items()})
    return out


def compute_metrics(
    real: Any,
    fake: Any,
    *,
    metrics: Sequence[str] = ("fid", "kid", "prdc"),
    features: str | FeatureExtractor | torch.nn.Module = "judge",
    judge: Any = None,
    inception_weights: str | Path | None = None,
    mode: str = "exact",
    n: int | None = None,
    size: int | None = None,
    seed: int = 0,
    by: Sequence[str] = (),
    bootstrap: int = 0,
    cache: FeatureCache | bool | None = True,
    store: Any = None,
    progress: bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Metrics of ``fake`` against ``real`` (each any source :func:`resolve_source` accepts).

    Parameters
    ----------
    features
        ``"judge"`` (the judge's penultimate features: offline, quick on a CPU; needs ``judge``),
        ``"inception"`` (the standard FID network from local weights), an extractor or a module.
    judge
        A ``Judge``, or the path/run folder of one; required for ``features="judge"`` and for ``by``
        attributes named ``judge:<attribute>``.
    n
        Images per side (generators: samples to draw, default 5000; data: the first ``n``).
    size
        Image side for the built-in data sets (default 32).
    options
        Passed to :func:`compare` (``nearest_k``, ``kid_subsets``, ``min_group``...).
    """
    from auditkit.bias.judge import load_judge  # the judge imports the metrics package: import on use
    from auditkit.metrics.features import get_extractor

    judge_obj = load_judge(judge, store) if judge is not None else None
    if isinstance(features, str) and features == "judge":
        if judge_obj is None:
            raise ConfigError(
                "judge features need a trained judge: pass judge= (a Judge, its folder or run), or train one "
                "with `auditkit judge train`; or use features='inception' with local Inception weights."
            )
        extractor = judge_obj.feature_extractor(mode=mode)
    elif isinstance(features, str) and features == "inception":
        extractor = get_extractor("inception", weights=inception_weights, mode=mode)
    else:
        extractor = get_extractor(features)
    a = resolve_source(real, n=n, seed=seed, size=size, store=store)
    b = resolve_source(fake, n=n, seed=seed + 1, size=size, store=store)
    wants_judged = judge_obj if any(str(x).startswith("judge:") for x in by) else None
    fa = source_features(
        a, extractor, n=n, seed=seed, cache=cache, judge=wants_judged, name=str(real), progress=progress
    )
    fb = source_features(
        b, extractor, n=n, seed=seed + 1, cache=cache, judge=wants_judged, name=str(fake), progress=progress
    )
    result = compare(fa, fb, metrics=metrics, bootstrap=bootstrap, seed=seed, by=by, **options)
    result["features"] = {k: v for k, v in extractor.info.items() if _json_safe(v)}
    result["sources"] = {
        "real": {"name": fa.name, "kind": fa.kind, **_safe(fa.info)},
        "fake": {"name": fb.name, "kind": fb.kind, **_safe(fb.info)},
    }
    return result


def _json_safe(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def _safe(info: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in info.items():
        if isinstance(v, float) and not math.isfinite(v):
            continue
        if _json_safe(v):
            out[k] = v
    return out


__all__ = ["METRICS", "SourceFeatures", "compare", "compute_metrics", "resolve_source", "source_features"]
