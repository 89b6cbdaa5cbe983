"""Quality metrics between two image sources: features streamed once per source, then FID, KID, IS, PRDC.

A source is a data set (``ImageSet``, ``"shapes"``, ``"digits"``, an image folder) or a generator (a
``Generator``, a training run id, a folder holding ``generator.safetensors``). Generators are streamed in
batches through the extractor, so only features are ever held for all images. Data features are cached on
disk under a key made of the images' SHA-256, the extractor's identity (weights hash, mode) and the count, so
a re-audit against the same reference does not run the network again.

A generator's ``n`` images are drawn in seeded blocks of 256 (:mod:`auditkit.metrics.distributed`): block 0
is ``gen.sample(min(n, 256), seed=seed)``, block b a seed derived from ``(seed, b)``. That is what makes a
run under torchrun (``torchrun --nproc_per_node N -m auditkit metrics ...``, or :func:`compute_metrics`
called on every rank) draw and extract each rank's share and give exactly one process's features and
metrics; only rank 0 writes the cache and computes the metrics, and every rank returns the same result.

Per-group metrics split both sides by a label: a data set's attribute column, a conditional generator's
requested class, or (``judge=``) the judge's reading of every image. Groups smaller than ``min_group``
are reported with their size and no numbers: a Fréchet distance from a handful of images says nothing.

Precision modes: with ``mode="fast"`` (bf16 autocast, channels_last; see :mod:`auditkit.metrics.features`)
:func:`compute_metrics` also extracts the first :data:`PROBE_N` (256) images of each source in exact mode
and stores how far the fast features and the FID on that probe are from exact (``result["fast_deviation"]``,
see :func:`fast_deviation`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from auditkit.data.imageset import ImageSet
from auditkit.errors import ConfigError
from auditkit.generators.base import BaseGenerator
from auditkit.metrics.cache import FeatureCache, cache_key, tensor_fingerprint
from auditkit.metrics.distributed import (
    Shard,
    broadcast_json,
    broadcast_tensors,
    current_shard,
    gather_rows,
    sample_blocks,
)
from auditkit.metrics.features import FeatureExtractor
from auditkit.metrics.frechet import fid_from_features
from auditkit.metrics.inception_score import inception_score
from auditkit.metrics.kid import kernel_inception_distance
from auditkit.metrics.memorization import memorization
from auditkit.metrics.prdc import precision_recall_density_coverage

METRICS = ("fid", "kid", "is", "prdc", "memorization")
_PER_SAMPLE = ("nn_distance", "nn_index", "training_nn_distance", "per_sample_ratio")
DEFAULT_N = 5000
PROBE_N = 256  # images per source on which fast mode is compared with exact (the first ones)


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
    probe
        The first images of the source (up to ``PROBE_N``), kept when asked for, to measure fast mode.
    """

    name: str
    kind: str
    outputs: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    vocab: dict[str, tuple[str, ...]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    probe: torch.Tensor | None = field(default=None, repr=False)

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

        runs = store or RunStore()
        return load_generator(runs.folder(runs.get_run(text).id))
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
    keep_probe: bool = False,
    shard: Shard | None = None,
) -> SourceFeatures:
    """Features (every output of ``extractor``) of ``n`` images of ``source``, with their group labels.

    Parameters
    ----------
    source
        A data set (the first ``n`` images, all by default; cached) or a generator (``n`` samples in
        seeded blocks, see the module docstring; classes drawn uniformly; streamed, not cached).
    judge
        A :class:`~auditkit.bias.Judge`: also label every image with the judge's reading (attributes
        prefixed ``judge:``), for per-group metrics by judged attribute.
    cache
        ``True``: the default feature cache; a ``FeatureCache``; ``False``/``None``: no cache.
    keep_probe
        Keep the first ``PROBE_N`` images in ``probe`` (on rank 0), to measure fast mode against exact.
    shard
        This process's share under torch.distributed; ``None`` detects it (:func:`current_shard`). Every
        rank must call this with the same arguments; every rank gets all the features.
    """
    bs = batch_size or extractor.batch_size
    shard = current_shard() if shard is None else shard
    show = progress if shard.is_main else False
    if isinstance(source, BaseGenerator):
        return _generator_features(
            source, extractor, n or DEFAULT_N, seed, bs, judge, name, show, keep_probe, shard
        )
    if not isinstance(source, ImageSet):
        raise ConfigError(f"expected a data set or a generator; got {type(source).__name__}.")
    count = len(source) if n is None else min(n, len(source))
    if n is not None and n > len(source) and shard.is_main:
        warnings.warn(
            f"asked for {n} images but {name or 'the data set'} has {len(source)}; using all of them.",
            stacklevel=2,
        )
    data = source if count == len(source) else source.subset(range(count))
    store = FeatureCache() if cache is True else (cache or None)
    key = cache_key(
        data=tensor_fingerprint(data.images), extractor=extractor.info, outputs=list(extractor.outputs)
    )
    # Rank 0 alone reads and writes the cache; the others get its tensors (or its miss).
    outputs = store.load(key) if store is not None and shard.is_main else None
    outputs = broadcast_tensors(outputs, shard) if store is not None else None
    hit = outputs is not None
    rows = shard.span(count)
    if outputs is None:
        mine = extractor.extract_all(data.images[rows.start : rows.stop], batch_size=bs, progress=show)
        outputs = {k: gather_rows(v, shard) for k, v in mine.items()}
        if store is not None and shard.is_main:
            store.save(key, outputs, {"n": count, "extractor": extractor.name, "source": name})
    labels = {a: data.label(a) for a in data.attributes}
    vocab = dict(data.attributes)
    if judge is not None:
        judged = judge.predict(data.images[rows.start : rows.stop], batch_size=bs)
        _add_judged(labels, vocab, judge, gather_rows(judged, shard))
    info = {"n": count, "fingerprint": key, "cache_hit": hit, "source_info": data.info}
    probe = data.images[:PROBE_N] if keep_probe and shard.is_main else None
    return SourceFeatures(
        name or str(data.info.get("source", "data")), "data", dict(outputs), labels, vocab, info, probe
    )


def _generator_features(
    gen, extractor, n, seed, bs, judge, name, progress, keep_probe, shard: Shard
) -> SourceFeatures:
    blocks = sample_blocks(n, seed)
    mine = shard.span(len(blocks))
    chunks: dict[str, list[torch.Tensor]] = {k: [] for k in extractor.outputs}
    labels: list[torch.Tensor] = []
    judged: list[torch.Tensor] = []
    probe: list[torch.Tensor] = []
    kept = 0
    if any(k not in extractor.dims for k in extractor.outputs):
        extractor._dry_run(tuple(gen.image_shape))  # a rank without a share still needs the widths
    total = sum(blocks[b][0] for b in mine)
    with tqdm(total=total, desc=f"{gen.name} features", unit="img", disable=not progress) as bar:
        for b in mine:
            count, block_seed = blocks[b]
            for images, y in gen.sample_batches(count, seed=block_seed, batch_size=bs):
                for key, value in extractor.extract_all(images, batch_size=bs, progress=False).items():
                    chunks[key].append(value)
                if y is not None:
                    labels.append(y)
                if judge is not None:
                    judged.append(judge.predict(images))
                if keep_probe and shard.is_main and kept < PROBE_N:
                    probe.append(images[: PROBE_N - kept])
                    kept += probe[-1].shape[0]
                bar.update(images.shape[0])
    outputs = {k: gather_rows(_cat(v, extractor.dims[k]), shard) for k, v in chunks.items()}
    label_map: dict[str, torch.Tensor] = {}
    vocab: dict[str, tuple[str, ...]] = {}
    if gen.condition and gen.num_classes:
        label_map[gen.condition] = gather_rows(_cat(labels, None, torch.int64), shard)
        vocab[gen.condition] = gen.class_names
    if judge is not None:
        table = gather_rows(_cat(judged, len(judge.attributes), torch.int64), shard)
        _add_judged(label_map, vocab, judge, table)
    info = {"n": n, "seed": seed, "generator": gen.describe(), "processes": shard.world}
    return SourceFeatures(
        name or gen.name, "generator", outputs, label_map, vocab, info, torch.cat(probe) if probe else None
    )


def _cat(parts: list[torch.Tensor], width: int | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Concatenated rows; an empty N×width (or N) tensor for a rank with no share (a short sample)."""
    if parts:
        return torch.cat(parts)
    return torch.empty((0,) if width is None else (0, width), dtype=dtype)


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
    mode
        ``"exact"`` (fp32, the reference for reports) or ``"fast"`` (bf16 autocast, channels_last) for a
        named extractor; an extractor passed in keeps its own mode. In fast mode the result carries
        ``fast_deviation`` (:func:`fast_deviation`: fast vs exact on the first 256 images of each source).
    n
        Images per side (generators: samples to draw, default 5000; data: the first ``n``).
    size
        Image side for the built-in data sets (default 32).
    options
        Passed to :func:`compare` (``nearest_k``, ``kid_subsets``, ``min_group``...).

    Returns
    -------
    dict
        :func:`compare`'s result plus ``mode``, ``fast_deviation`` (fast mode only), ``features`` (the
        extractor's identity) and ``sources`` (provenance of both sides).

    Notes
    -----
    Under torchrun (``torchrun --nproc_per_node N script.py`` calling this on every rank, or
    ``torchrun --nproc_per_node N -m auditkit metrics ...``) each rank draws and extracts its share of both
    sources, the features are gathered, rank 0 alone writes the cache and computes the metrics, and every
    rank returns the same dict, equal to one process's (:mod:`auditkit.metrics.distributed`).
    """
    from auditkit.bias.judge import load_judge  # the judge imports the metrics package: import on use
    from auditkit.metrics.features import get_extractor

    shard = current_shard()
    # Under NCCL each rank runs the network on its own GPU (cuda:LOCAL_RANK); otherwise the default device.
    device = shard.device if shard.device.type == "cuda" else None
    judge_obj = load_judge(judge, store) if judge is not None else None
    if isinstance(features, str) and features == "judge":
        if judge_obj is None:
            raise ConfigError(
                "judge features need a trained judge: pass judge= (a Judge, its folder or run), or train one "
                "with `auditkit judge train`; or use features='inception' with local Inception weights."
            )
        extractor = judge_obj.feature_extractor(mode=mode, **({"device": device} if device else {}))
    elif isinstance(features, str) and features == "inception":
        extractor = get_extractor("inception", weights=inception_weights, mode=mode, device=device)
    else:
        extractor = get_extractor(features)
    fast = extractor.mode == "fast"
    a = resolve_source(real, n=n, seed=seed, size=size, store=store)
    b = resolve_source(fake, n=n, seed=seed + 1, size=size, store=store)
    wants_judged = judge_obj if any(str(x).startswith("judge:") for x in by) else None
    common = {"cache": cache, "judge": wants_judged, "progress": progress, "keep_probe": fast, "shard": shard}
    fa = source_features(a, extractor, n=n, seed=seed, name=str(real), **common)
    fb = source_features(b, extractor, n=n, seed=seed + 1, name=str(fake), **common)
    result = None
    if shard.is_main:  # the metrics are computed once, on rank 0, and sent to the other ranks
        result = compare(fa, fb, metrics=metrics, bootstrap=bootstrap, seed=seed, by=by, **options)
        result["mode"] = extractor.mode
        if fast:
            result["fast_deviation"] = fast_deviation(extractor, fa, fb)
        result["features"] = {k: v for k, v in extractor.info.items() if _json_safe(v)}
        result["sources"] = {
            "real": {"name": fa.name, "kind": fa.kind, **_safe(fa.info)},
            "fake": {"name": fb.name, "kind": fb.kind, **_safe(fb.info)},
        }
    return broadcast_json(result, shard)


def fast_deviation(extractor: FeatureExtractor, real: SourceFeatures, fake: SourceFeatures) -> dict[str, Any]:
    """How far fast-mode features and FID are from exact mode, on the probe of each source.

    The probe is the first :data:`PROBE_N` (256) images of each source (``SourceFeatures.probe``, kept by
    ``source_features(keep_probe=True)``). They are extracted again in exact mode (fp32, the reference
    graph); the fast features compared are the rows the metrics used.

    Returns
    -------
    dict
        ``probe_n`` (images per side), ``outputs``: per output ``max_abs`` and ``mean_abs`` (over every
        element of both probes) and ``relative`` (‖fast − exact‖_F / ‖exact‖_F); ``fid_exact`` and
        ``fid_fast`` between the two probes on the first output, and ``fid_abs_diff`` = |fast − exact|,
        ``fid_rel_diff`` = that / ``fid_exact``.
    """
    if real.probe is None or fake.probe is None:
        raise ConfigError(
            "fast-mode deviation needs the probe images of both sources: build them with "
            "source_features(..., keep_probe=True)."
        )
    exact = extractor.with_mode("exact")
    fast_rows, exact_rows = {}, {}
    for side, source in (("real", real), ("fake", fake)):
        count = source.probe.shape[0]
        exact_rows[side] = exact.extract_all(source.probe, progress=False)
        fast_rows[side] = {k: v[:count] for k, v in source.outputs.items()}
    outputs = {}
    for key in extractor.outputs:
        ref = torch.cat([exact_rows[s][key] for s in ("real", "fake")]).double()
        diff = (torch.cat([fast_rows[s][key] for s in ("real", "fake")]).double() - ref).abs()
        norm = float(torch.linalg.vector_norm(ref))
        outputs[key] = {
            "max_abs": float(diff.max()),
            "mean_abs": float(diff.mean()),
            "relative": float(torch.linalg.vector_norm(diff)) / norm if norm > 0 else float("nan"),
        }
    first = extractor.outputs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 256 images in 2048-d: the low-sample warning says nothing new
        fid_exact = fid_from_features(exact_rows["real"][first], exact_rows["fake"][first])
        fid_fast = fid_from_features(fast_rows["real"][first], fast_rows["fake"][first])
    gap = abs(fid_fast - fid_exact)
    return {
        "reference_mode": "exact",
        "probe": f"the first {PROBE_N} images of each source",
        "probe_n": {"real": real.probe.shape[0], "fake": fake.probe.shape[0]},
        "outputs": outputs,
        "fid_exact": float(fid_exact),
        "fid_fast": float(fid_fast),
        "fid_abs_diff": float(gap),
        "fid_rel_diff": float(gap / fid_exact) if fid_exact > 0 else float("nan"),
    }


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


__all__ = [
    "METRICS",
    "PROBE_N",
    "SourceFeatures",
    "compare",
    "compute_metrics",
    "fast_deviation",
    "resolve_source",
    "source_features",
]
