"""Latent attribution: which latent dimensions, and whether the class condition, drive an attribute.

For a generator ``G`` and a judge, the quantity explained for attribute ``A`` and one sample ``(z, y)`` is

    f(z, y) = log softmax(judge_A(G(z, y)))[t],

the judge's log-probability of ``t``, by default the value of ``A`` the image shows (the judge's own
prediction on ``G(z, y)``; pass ``target=`` to ask about another value). The log-probability rather than
the probability: a confident judge's probability saturates near 1, so its gradients vanish along most of
the path and the attributions of a clear image would say little; the log-probability stays well scaled.

**Integrated gradients** (Sundararajan et al. 2017, Captum's ``IntegratedGradients``) attribute
``f(x) - f(x₀)`` to the inputs along the straight path from a baseline ``x₀`` to ``x``; the attributions of
one sample sum to that difference up to the integral's error, reported per sample as the *convergence
delta* (``sum of attributions - (f(x) - f(x₀))``).

Baselines, and why:

* latent ``z₀``: ``baseline="zero"`` (default) is the origin, the mode of the standard Gaussian prior every
  auditkit generator samples from: "the most typical latent", so an attribution says how far a sample's
  own latent value moves the score away from the typical image. ``"mean"`` uses the mean of the ``n``
  drawn latents (close to zero; it makes the baseline the sample's centre instead of the prior's), and a
  tensor of ``latent_shape`` sets it explicitly.
* condition ``e₀``: the labels are discrete, so integrated gradients cannot move along them. The families
  feed labels through an ``nn.Embedding`` (see :meth:`BaseGenerator.label_embedding`), which gives a
  continuous point ``e_y`` per class. The **condition relaxation** makes that embedding output an input
  of its own: a forward hook on the embedding replaces its output by ``e`` (so no generator code changes),
  and integrated gradients run jointly over ``(z, e)`` from ``(z₀, e₀)``, with ``e₀`` the mean of the
  class embeddings: no particular class, equally far from all of them. The condition's attribution is
  the sum over the embedding's entries, so it competes with the latent dimensions as one input, and
  completeness holds for the whole: latent + condition attributions ≈ ``f(z, e_y) - f(z₀, e₀)``. Rows
  of the embedding at index ``>= num_classes`` (diffusion's "no label" row for guidance) are not hooked.

Read attributions with the baseline image in mind: integrated gradients credit whatever makes the attribute
readable on the way from ``G(z₀, e₀)``. If the baseline image hides what is judged (a stand-in generator
whose ``z = 0`` painted the shape in the background's grey), the inputs that make it visible share the credit:
there the colour dimensions took about 90 % of the *shape* attribution until ``z = 0`` drew a visible
shape. ``scores`` and ``baseline_scores`` say how readable the baseline is.

When a conditional generator exposes no embedding (a wrapped module without ``label_embedding=``), the
condition is valued by **ablation** instead: ``f(z, y) - mean over classes y' of f(z, y')``, and the latent
dimensions by integrated gradients at the fixed label ``y`` (completeness then covers the latent part,
``f(z, y) - f(z₀, y)``). ``condition_method`` records which. Both are log-probability differences, so
they can be ranked together, but they are not on identical footing: the ablation compares with every
other class's image, the relaxed value with the single average-class point ``e₀``.

``method="occlusion"`` needs no gradients at all (ONNX graphs, ``torch.no_grad`` code): each latent
dimension is valued by replacing it with its baseline (Captum's ``FeatureAblation``,
``f(z, y) - f(z with z_i = z₀_i, y)``) and the condition by the ablation above. Occlusion values of the
dimensions do not sum to ``f(z) - f(z₀)`` (there is no completeness); they measure one-at-a-time effects.

Many samples are attributed and aggregated: the mean ``|attribution|`` of each input (and the mean signed
value) ranks the latent dimensions and the condition, with each input's share of the total. A
**traversal** then walks the top dimensions of one latent through a range of values and records the
judge's probabilities of every value of the attribute (evidence images plus a curve;
:func:`traversal_figure` draws them).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from auditkit.errors import ConfigError, ExplainError, GeneratorError
from auditkit.explain._budget import rows_per_batch

__all__ = [
    "LatentAttribution",
    "LatentTraversal",
    "latent_attribution",
    "latent_traversal",
    "traversal_figure",
]

_METHODS = ("ig", "occlusion")
# More n_steps are advised when the mean |delta| exceeds both 5 % of the mean |f(x) - f(x0)| and 0.01 nats
# (the floor keeps tiny gaps, e.g. latent-only IG at a fixed label, from warning about noise).
_DELTA_WARN = 0.05
_DELTA_FLOOR = 0.01


# --------------------------------------------------------------------------- results


@dataclass
class LatentAttribution:
    """Attributions of a judge's score of one attribute to the latent dimensions and the condition.

    Attributes
    ----------
    generator
        The generator's name.
    attribute
        The attribute explained.
    value_names
        The attribute's values (indices of ``targets``).
    latent_shape
        Shape of one latent; per-dimension results are over its flattened entries, named ``z[i]``.
    method
        ``"ig"`` (integrated gradients) or ``"occlusion"``.
    condition_method
        ``"ig"`` (relaxed through the label embedding), ``"ablation"``, or ``None`` (unconditional).
    baseline
        The latent baseline: ``"zero"``, ``"mean"`` or ``"tensor"``.
    n_steps
        Integration steps (integrated gradients).
    seed
        Seed of the latents and drawn labels.
    class_names
        The generator's classes (indices of ``labels``).
    labels
        Class of each sample (``n``), or ``None``.
    targets
        Attribute value explained for each sample (``n``).
    latent
        Per-sample attributions of the latent entries, ``n × latent_dim``.
    condition
        Per-sample attribution of the condition (``n``), or ``None``.
    scores
        ``f(z, y)`` per sample (log-probability of the target).
    baseline_scores
        ``f`` at the baseline per sample: ``f(z₀, e₀)`` (``"ig"`` condition), else ``f(z₀, y)``.
    deltas
        Convergence delta per sample: sum of the integrated-gradient attributions minus
        ``scores - baseline_scores``; ``NaN`` for occlusion, which has no completeness.
    """

    generator: str
    attribute: str
    value_names: tuple[str, ...]
    latent_shape: tuple[int, ...]
    method: str
    condition_method: str | None
    baseline: str
    n_steps: int
    seed: int
    class_names: tuple[str, ...]
    labels: torch.Tensor | None
    targets: torch.Tensor
    latent: torch.Tensor
    condition: torch.Tensor | None
    scores: torch.Tensor
    baseline_scores: torch.Tensor
    deltas: torch.Tensor

    @property
    def n(self) -> int:
        """Number of samples attributed."""
        return int(self.targets.shape[0])

    @property
    def latent_mean_abs(self) -> torch.Tensor:
        """Mean ``|attribution|`` of each latent entry over the samples (``latent_dim``)."""
        return self.latent.abs().mean(0)

    @property
    def latent_mean_signed(self) -> torch.Tensor:
        """Mean signed attribution of each latent entry (``latent_dim``)."""
        return self.latent.mean(0)

    @property
    def condition_mean_abs(self) -> float | None:
        """Mean ``|attribution|`` of the condition, or ``None`` when unconditional."""
        return None if self.condition is None else float(self.condition.abs().mean())

    @property
    def condition_mean_signed(self) -> float | None:
        """Mean signed attribution of the condition, or ``None`` when unconditional."""
        return None if self.condition is None else float(self.condition.mean())

    @property
    def relative_delta(self) -> float:
        """Mean ``|delta|`` over mean ``|f(x) - f(x₀)|``: the integral's relative error (NaN: occlusion)."""
        gap = float((self.scores - self.baseline_scores).abs().mean())
        return float(self.deltas.abs().mean()) / max(gap, 1e-12)

    def misses_completeness(self, tolerance: float = _DELTA_WARN) -> bool:
        """Whether integrated gradients miss completeness: mean ``|delta|`` above both ``tolerance`` of
        the mean ``|f(x) - f(x₀)|`` and 0.01 nats (a near-zero gap makes the ratio noise). False for
        occlusion."""
        if self.method != "ig":
            return False
        return float(self.deltas.abs().mean()) > _DELTA_FLOOR and self.relative_delta > tolerance

    def ranking(self, k: int | None = None) -> list[dict[str, Any]]:
        """Inputs (``"condition"`` and ``"z[i]"``) by mean ``|attribution|``, largest first.

        Each entry: ``input``, ``dim`` (latent index, ``None`` for the condition), ``mean_abs``,
        ``mean_signed`` and ``share`` (fraction of the total mean ``|attribution|`` over all inputs).
        ``k`` keeps the first ``k``.
        """
        abs_ = self.latent_mean_abs.tolist()
        signed = self.latent_mean_signed.tolist()
        rows: list[dict[str, Any]] = [
            {"input": f"z[{i}]", "dim": i, "mean_abs": a, "mean_signed": s}
            for i, (a, s) in enumerate(zip(abs_, signed, strict=True))
        ]
        if self.condition is not None:
            rows.append(
                {
                    "input": "condition",
                    "dim": None,
                    "mean_abs": self.condition_mean_abs,
                    "mean_signed": self.condition_mean_signed,
                }
            )
        total = sum(r["mean_abs"] for r in rows)
        for r in rows:
            r["share"] = r["mean_abs"] / total if total > 0 else 0.0
        rows.sort(key=lambda r: -r["mean_abs"])
        return rows[:k] if k is not None else rows

    @property
    def top_input(self) -> str:
        """The input with the largest mean ``|attribution|`` (``"condition"`` or ``"z[i]"``)."""
        return self.ranking(1)[0]["input"]

    def top_dims(self, k: int = 3) -> list[int]:
        """The ``k`` latent dimensions with the largest mean ``|attribution|`` (for a traversal)."""
        order = torch.argsort(self.latent_mean_abs, descending=True, stable=True)
        return [int(i) for i in order[:k]]

    def to_dict(self, top: int = 20) -> dict[str, Any]:
        """JSON-safe summary: settings, the ``top`` ranked inputs, per-dimension means, per-sample values."""
        return {
            "generator": self.generator,
            "attribute": self.attribute,
            "value_names": list(self.value_names),
            "latent_shape": list(self.latent_shape),
            "method": self.method,
            "condition_method": self.condition_method,
            "baseline": self.baseline,
            "n_steps": self.n_steps,
            "seed": self.seed,
            "n": self.n,
            "ranking": [_json_row(r) for r in self.ranking(top)],
            "latent_mean_abs": _floats(self.latent_mean_abs),
            "latent_mean_signed": _floats(self.latent_mean_signed),
            "condition_mean_abs": _float(self.condition_mean_abs),
            "condition_mean_signed": _float(self.condition_mean_signed),
            "relative_delta": _float(self.relative_delta),
            "samples": {
                "labels": None
                if self.labels is None
                else [self.class_names[i] for i in self.labels.tolist()],
                "targets": [self.value_names[i] for i in self.targets.tolist()],
                "condition": None if self.condition is None else _floats(self.condition),
                "scores": _floats(self.scores),
                "baseline_scores": _floats(self.baseline_scores),
                "deltas": _floats(self.deltas),
            },
        }


@dataclass
class LatentTraversal:
    """Images and judge probabilities along single latent dimensions of one latent.

    Attributes
    ----------
    generator
        The generator's name.
    attribute
        The attribute read by the judge.
    value_names
        The attribute's values (last axis of ``probabilities``).
    dims
        The latent dimensions walked (flattened indices).
    steps
        The values each dimension is set to (``S``).
    label
        The class name of the condition, or ``None``.
    z
        The latent all rows start from (``latent_shape``).
    images
        ``D × S × C × H × W`` float32 in ``[0, 1]``.
    probabilities
        ``D × S × K``: the judge's probability of every value of the attribute at each step.
    """

    generator: str
    attribute: str
    value_names: tuple[str, ...]
    dims: tuple[int, ...]
    steps: torch.Tensor
    label: str | None
    z: torch.Tensor
    images: torch.Tensor
    probabilities: torch.Tensor

    @property
    def predicted(self) -> list[list[str]]:
        """The most probable value at each step, ``D × S`` names."""
        return [[self.value_names[i] for i in row] for row in self.probabilities.argmax(-1).tolist()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (the images are left out; draw them with :func:`traversal_figure`)."""
        return {
            "generator": self.generator,
            "attribute": self.attribute,
            "value_names": list(self.value_names),
            "dims": list(self.dims),
            "steps": _floats(self.steps),
            "label": self.label,
            "probabilities": [[_floats(p) for p in row] for row in self.probabilities],
            "predicted": self.predicted,
            "image_shape": list(self.images.shape[2:]),
        }


# --------------------------------------------------------------------------- attribution


def latent_attribution(
    generator: Any,
    judge: Any,
    attribute: str,
    *,
    n: int = 64,
    seed: int = 0,
    labels: Any = None,
    target: int | str | Sequence[int] | Sequence[str] | torch.Tensor | None = None,
    baseline: str | torch.Tensor = "zero",
    n_steps: int = 32,
    method: str = "ig",
    memory_budget: int | float | str | None = None,
    progress: bool = False,
) -> LatentAttribution:
    """Attribute the judge's score of ``attribute`` on ``G(z, y)`` to the latent dims and the condition.

    Parameters
    ----------
    generator
        A :class:`~auditkit.generators.base.BaseGenerator` with a differentiable ``forward(z, labels)``
        (any generator for ``method="occlusion"``).
    judge
        A :class:`~auditkit.bias.judge.Judge` that reads ``attribute``.
    attribute
        The attribute explained, one of ``judge.attributes``.
    n
        Number of samples; their latents are drawn as ``generator.sample(n, seed=seed)`` draws them.
    seed
        Seeds the latents and the labels drawn when ``labels`` is ``None``.
    labels
        Classes of a conditional generator, as ``generator.sample`` takes them (``None``: uniform).
    target
        Value explained: ``None`` for the value each image shows (the judge's prediction), or a value
        index or name for all samples, or one per sample.
    baseline
        Latent baseline ``z₀``: ``"zero"`` (the prior's mode), ``"mean"`` (of the drawn latents) or a
        tensor of ``latent_shape``. The condition's baseline is the mean class embedding.
    n_steps
        Integration steps of integrated gradients (Gauss-Legendre, Captum's default).
    method
        ``"ig"`` (integrated gradients) or ``"occlusion"`` (no gradients needed; see the module notes).
    memory_budget
        Bytes (or a size such as ``"1GiB"``) one batch of expanded inputs may use; see
        :func:`auditkit.explain._budget.memory_budget`.
    progress
        Show a progress bar.

    Returns
    -------
    LatentAttribution

    Raises
    ------
    ConfigError
        An unknown attribute, target or method, or bad labels.
    ExplainError
        The generator gives no gradients (``method="ig"``), or attributions are not finite.
    """
    value_names = _check_attribute(judge, attribute)
    n = _positive_int("n", n)
    n_steps = _positive_int("n_steps", n_steps)
    if method not in _METHODS:
        raise ConfigError(f"unknown latent attribution method {method!r}; use one of {list(_METHODS)}.")
    head = judge.head(attribute)
    jdev = judge.device
    gdev = getattr(generator, "device", torch.device("cpu"))
    rng = torch.Generator().manual_seed(_seed(seed))
    z_all = torch.randn((n, *generator.latent_shape), generator=rng)
    y_all = generator.resolve_labels(labels, n, rng)
    targets = _resolve_target(target, value_names, n)
    z0, baseline_name = _latent_baseline(baseline, z_all, tuple(generator.latent_shape))
    embedding = _embedding_of(generator) if y_all is not None and method == "ig" else None
    condition_method = None if y_all is None else ("ig" if embedding is not None else "ablation")

    def logp(images: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(head(images.to(jdev)).float(), dim=1)

    injector = _Injector(embedding, generator.num_classes) if embedding is not None else None
    rows = rows_per_batch(_bytes_per_row(generator, embedding), memory_budget)

    with _eval_mode(generator), injector.active() if injector else contextlib.nullcontext():
        if method == "ig":
            _check_differentiable(
                generator, z_all[:1].to(gdev), None if y_all is None else y_all[:1].to(gdev)
            )

        def images_of(z: torch.Tensor, y: torch.Tensor | None, e: torch.Tensor | None = None) -> torch.Tensor:
            if injector is None:
                return generator.forward(z, y)
            with injector.inject(e):
                return generator.forward(z, y)

        def score(z: torch.Tensor, y: torch.Tensor | None, e: torch.Tensor | None = None) -> torch.Tensor:
            """Log-probabilities ``N × K`` without gradients, in batches of ``rows``."""
            out = []
            with torch.no_grad():
                for s in range(0, z.shape[0], rows):
                    ys = None if y is None else y[s : s + rows].to(gdev)
                    es = None if e is None else e[s : s + rows].to(gdev)
                    out.append(logp(images_of(z[s : s + rows].to(gdev), ys, es)).cpu())
            return torch.cat(out)

        lp = score(z_all, y_all)
        if targets is None:
            targets = lp.argmax(1)
        pick = torch.arange(n)
        scores = lp[pick, targets]
        e_y = e0 = None
        if embedding is not None:
            with torch.no_grad():
                e_y = embedding(y_all.to(embedding.weight.device)).detach().float().cpu()
                e0 = embedding.weight[: generator.num_classes].detach().float().mean(0).cpu()
            baseline_scores = score(z0.expand_as(z_all), y_all, e0.expand_as(e_y))[pick, targets]
        else:
            baseline_scores = score(z0.expand_as(z_all), y_all)[pick, targets]

        latent = torch.empty((n, math.prod(generator.latent_shape)))
        condition = torch.empty(n) if y_all is not None else None
        chunk = max(1, min(n, rows // n_steps)) if method == "ig" else max(1, min(n, rows))
        bar = tqdm(total=n, desc=f"latent {method} {attribute}", unit="sample", disable=not progress)
        try:
            for s in range(0, n, chunk):
                sl = slice(s, s + chunk)
                z = z_all[sl].to(gdev)
                y = None if y_all is None else y_all[sl].to(gdev)
                t = targets[sl].to(jdev)
                if method == "occlusion":
                    latent[sl] = _occlusion(images_of, logp, z, y, z0.to(gdev), t, rows).flatten(1).cpu()
                elif e_y is not None:
                    attr_z, attr_e = _ig(
                        lambda z_, e_, y_: logp(images_of(z_, y_, e_)),
                        (z, e_y[sl].to(gdev)),
                        (z0.to(gdev), e0.unsqueeze(0).to(gdev)),
                        y,
                        t,
                        n_steps,
                        rows,
                    )
                    latent[sl] = attr_z.detach().flatten(1).cpu()
                    condition[sl] = attr_e.detach().sum(1).cpu()  # type: ignore[index]
                else:
                    (attr_z,) = _ig(
                        lambda z_, y_: logp(images_of(z_, y_)), (z,), (z0.to(gdev),), y, t, n_steps, rows
                    )
                    latent[sl] = attr_z.detach().flatten(1).cpu()
                bar.update(z.shape[0])
        finally:
            bar.close()

        if condition_method == "ablation":
            per_class = torch.stack(
                [
                    score(z_all, torch.full_like(y_all, k))[pick, targets]  # type: ignore[arg-type]
                    for k in range(generator.num_classes)
                ],
                dim=1,
            )
            condition = scores - per_class.mean(1)

    _check_finite(latent, condition, generator.name, attribute)
    if method == "ig":
        total = latent.sum(1) + (condition if condition_method == "ig" else 0.0)  # type: ignore[operator]
        deltas = total - (scores - baseline_scores)
    else:
        deltas = torch.full((n,), math.nan)
    result = LatentAttribution(
        generator=str(generator.name),
        attribute=attribute,
        value_names=value_names,
        latent_shape=tuple(generator.latent_shape),
        method=method,
        condition_method=condition_method,
        baseline=baseline_name,
        n_steps=n_steps,
        seed=seed,
        class_names=tuple(generator.class_names),
        labels=None if y_all is None else y_all.clone(),
        targets=targets.clone(),
        latent=latent,
        condition=condition,
        scores=scores,
        baseline_scores=baseline_scores,
        deltas=deltas,
    )
    if result.misses_completeness():
        warnings.warn(
            f"integrated gradients of {attribute!r} on {generator.name!r} miss completeness by "
            f"{100 * result.relative_delta:.1f} % of f(x) - f(x0) on average; raise n_steps (now {n_steps}).",
            stacklevel=2,
        )
    return result


def _ig(
    fn: Callable[..., torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    baselines: tuple[torch.Tensor, ...],
    labels: torch.Tensor | None,
    target: torch.Tensor,
    n_steps: int,
    rows: int,
) -> tuple[torch.Tensor, ...]:
    from captum.attr import IntegratedGradients

    batch = inputs[0].shape[0]
    attrs = IntegratedGradients(fn).attribute(
        inputs,
        baselines=baselines,
        target=target,
        additional_forward_args=(labels,),
        n_steps=n_steps,
        internal_batch_size=max(rows, 2 * batch),
    )
    return tuple(attrs)


def _occlusion(
    images_of: Callable[..., torch.Tensor],
    logp: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    labels: torch.Tensor | None,
    z0: torch.Tensor,
    target: torch.Tensor,
    rows: int,
) -> torch.Tensor:
    from captum.attr import FeatureAblation

    def fn(z_: torch.Tensor, y_: torch.Tensor | None) -> torch.Tensor:
        return logp(images_of(z_, y_))

    per_eval = max(1, min(rows // z.shape[0], z[0].numel()))
    with torch.no_grad():
        return FeatureAblation(fn).attribute(
            z,
            baselines=z0.expand_as(z).contiguous(),
            target=target,
            additional_forward_args=(labels,),
            perturbations_per_eval=per_eval,
        )


class _Injector:
    """Forward hook that replaces the label embedding's output by a given ``e`` (one row per sample).

    Rows whose index is ``>= num_classes`` (the "no label" row of classifier-free guidance) keep the
    module's own output; when the embedding is called on a multiple of the batch (guidance doubles it),
    row ``r`` takes ``e[r % batch]``.
    """

    def __init__(self, embedding: nn.Embedding, num_classes: int) -> None:
        self.embedding = embedding
        self.num_classes = num_classes
        self.e: torch.Tensor | None = None
        self.calls = 0

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        handle = self.embedding.register_forward_hook(self._hook)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def inject(self, e: torch.Tensor | None) -> Iterator[None]:
        self.e, calls = e, self.calls
        try:
            yield
        finally:
            self.e = None
        if e is not None and self.calls == calls:
            raise ExplainError(
                "the generator's label_embedding() is never called by its forward(z, labels), so the "
                "condition cannot be relaxed through it; return the embedding the labels go through."
            )

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self.e is None:
            return None
        self.calls += 1
        index = args[0]
        batch = self.e.shape[0]
        if index.ndim != 1 or output.ndim != 2 or index.shape[0] % batch:
            raise ExplainError(
                f"the label embedding was called on indices of shape {tuple(index.shape)} for a batch of "
                f"{batch}; the condition relaxation needs one lookup per sample (or per copy of the batch)."
            )
        e = self.e.to(output.dtype).repeat(index.shape[0] // batch, 1)
        keep = (index >= self.num_classes).unsqueeze(1)
        return torch.where(keep, output, e)


# --------------------------------------------------------------------------- traversal


def latent_traversal(
    generator: Any,
    judge: Any,
    attribute: str,
    *,
    dims: int | Sequence[int] | LatentAttribution,
    z: torch.Tensor | None = None,
    seed: int = 0,
    label: int | str | None = None,
    values: torch.Tensor | Sequence[float] | None = None,
) -> LatentTraversal:
    """Walk latent dimensions one at a time and read ``attribute``'s probabilities at each step.

    Parameters
    ----------
    generator, judge, attribute
        As in :func:`latent_attribution`.
    dims
        Latent dimensions (flattened indices), or a :class:`LatentAttribution` (its top 3 dims).
    z
        The latent to start from (``latent_shape``); ``None`` draws it as ``generator.sample(1, seed=seed)``.
    seed
        Seeds ``z`` and, for a conditional generator without ``label``, the label.
    label
        The class (index or name) of a conditional generator.
    values
        What each dimension is set to, in turn (default ``torch.linspace(-3, 3, 9)``: ±3 prior std).

    Returns
    -------
    LatentTraversal
    """
    value_names = _check_attribute(judge, attribute)
    latent_dim = math.prod(generator.latent_shape)
    if isinstance(dims, LatentAttribution):
        dims = dims.top_dims(3)
    dim_list = [dims] if isinstance(dims, int) else list(dims)
    if not dim_list or any(
        isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < latent_dim for d in dim_list
    ):
        raise ConfigError(f"dims must be latent indices in [0, {latent_dim - 1}]; got {dims!r}.")
    steps = torch.linspace(-3, 3, 9) if values is None else torch.as_tensor(values, dtype=torch.float32)
    if steps.ndim != 1 or steps.numel() < 2 or not torch.isfinite(steps).all():
        raise ConfigError(f"values must be at least two finite numbers; got {values!r}.")
    rng = torch.Generator().manual_seed(_seed(seed))
    drawn = torch.randn((1, *generator.latent_shape), generator=rng)
    if z is None:
        base = drawn[0]
    else:
        base = torch.as_tensor(z, dtype=torch.float32).cpu()
        if base.numel() != latent_dim:
            raise ConfigError(
                f"z must have the latent shape {tuple(generator.latent_shape)}; got {tuple(base.shape)}."
            )
        base = base.reshape(generator.latent_shape)
    y = generator.resolve_labels(label, 1, rng)
    flat = base.flatten().repeat(len(dim_list) * steps.numel(), 1)
    for i, d in enumerate(dim_list):
        flat[i * steps.numel() : (i + 1) * steps.numel(), d] = steps
    zs = flat.view(-1, *generator.latent_shape)
    ys = None if y is None else y.expand(zs.shape[0])
    gdev = getattr(generator, "device", torch.device("cpu"))
    size = int(getattr(generator, "batch_size", 64))
    batches = []
    with _eval_mode(generator), torch.no_grad():
        for index, s in enumerate(range(0, zs.shape[0], size)):
            yb = None if ys is None else ys[s : s + size].to(gdev)
            out = generator.forward(zs[s : s + size].to(gdev), yb)
            batches.append(generator._check_batch(out, index, s, out.shape[0]))
    images = torch.cat(batches)
    probs = judge.predict_proba(images)[attribute]
    d, k = len(dim_list), steps.numel()
    return LatentTraversal(
        generator=str(generator.name),
        attribute=attribute,
        value_names=value_names,
        dims=tuple(dim_list),
        steps=steps.clone(),
        label=None if y is None else generator.class_names[int(y[0])],
        z=base.clone(),
        images=images.view(d, k, *images.shape[1:]),
        probabilities=probs.view(d, k, -1),
    )


def traversal_figure(traversal: LatentTraversal, *, dpi: int = 150) -> bytes:
    """A PNG: per dimension, a row of evidence thumbnails and the curve of the attribute's probabilities.

    Each thumbnail is captioned with the value set and the judge's most probable reading; the curves use
    distinct markers, line styles and grey levels, so the figure reads in black-and-white print.
    """
    from matplotlib.figure import Figure

    d, s = traversal.images.shape[:2]
    steps = traversal.steps.tolist()
    names = traversal.value_names
    fig = Figure(figsize=(0.85 * s + 3.6, 1.15 * d + 0.7), dpi=dpi)
    grid = fig.add_gridspec(d, s + 1, width_ratios=[1.0] * s + [3.4], wspace=0.08, hspace=0.55)
    markers = "osD^vP*Xh<>p"
    styles = ("-", "--", ":", "-.")
    # Greys, not the default colour cycle: it would paint the value "blue" green when the attribute is colour.
    greys = ("0.0", "0.4", "0.6")
    predicted = traversal.predicted
    for row, dim in enumerate(traversal.dims):
        for col in range(s):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(
                _to_hwc(traversal.images[row, col]), cmap="gray", interpolation="nearest", vmin=0.0, vmax=1.0
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{steps[col]:+.2g}", fontsize=7, pad=2)
            ax.set_xlabel(predicted[row][col], fontsize=6, labelpad=1)
            if col == 0:
                ax.set_ylabel(f"z[{dim}]", fontsize=9, rotation=0, ha="right", va="center", labelpad=4)
        ax = fig.add_subplot(grid[row, s])
        for j, name in enumerate(names):
            ax.plot(
                steps,
                traversal.probabilities[row, :, j].tolist(),
                marker=markers[j % len(markers)],
                linestyle=styles[j % len(styles)],
                color=greys[j % len(greys)],
                markersize=3.5,
                linewidth=1.2,
                label=name,
            )
        ax.set_ylim(-0.03, 1.03)
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=7)
        ax.yaxis.tick_right()
        ax.grid(alpha=0.3, linewidth=0.5)
        ax.set_xlabel(f"value of z[{dim}]", fontsize=7, labelpad=1)
        if row == 0:
            ax.set_title(f"P({traversal.attribute} = ·)", fontsize=8, pad=3)
            ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.12, 0.5), frameon=False)
    cond = f", class {traversal.label}" if traversal.label is not None else ""
    fig.suptitle(f"{traversal.generator}: {traversal.attribute} along latent dims{cond}", fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.9, top=1 - 0.45 / (1.15 * d + 0.7), bottom=0.1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------- helpers


def _check_attribute(judge: Any, attribute: str) -> tuple[str, ...]:
    known = getattr(judge, "attributes", {})
    if not isinstance(attribute, str) or attribute not in known:
        raise ConfigError(f"unknown attribute {attribute!r}; the judge knows {list(known)}.")
    return tuple(known[attribute])


def _positive_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer; got {value!r}.")
    return value


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63); got {value!r}.")
    return value


def _resolve_target(target: Any, value_names: tuple[str, ...], n: int) -> torch.Tensor | None:
    if target is None:
        return None

    def index(v: Any) -> int:
        if isinstance(v, str) and v in value_names:
            return value_names.index(v)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(value_names):
            return int(v)
        raise ConfigError(
            f"target {v!r} is not a value of the attribute; its values are {list(value_names)}."
        )

    if isinstance(target, int | str):
        return torch.full((n,), index(target), dtype=torch.int64)
    items = target.tolist() if isinstance(target, torch.Tensor) else list(target)
    if len(items) != n:
        raise ConfigError(f"got {len(items)} targets for {n} samples; give one per sample or one for all.")
    return torch.tensor([index(v) for v in items], dtype=torch.int64)


def _latent_baseline(
    baseline: str | torch.Tensor, z_all: torch.Tensor, latent_shape: tuple[int, ...]
) -> tuple[torch.Tensor, str]:
    if isinstance(baseline, torch.Tensor):
        if baseline.numel() != math.prod(latent_shape) or not torch.isfinite(baseline).all():
            raise ConfigError(
                f"a baseline tensor must hold one finite latent of shape {latent_shape}; got "
                f"{tuple(baseline.shape)}."
            )
        return baseline.detach().float().cpu().reshape(1, *latent_shape), "tensor"
    if baseline == "zero":
        return torch.zeros((1, *latent_shape)), "zero"
    if baseline == "mean":
        return z_all.mean(0, keepdim=True), "mean"
    raise ConfigError(f"unknown latent baseline {baseline!r}; use 'zero', 'mean' or a latent tensor.")


def _embedding_of(generator: Any) -> nn.Embedding | None:
    getter = getattr(generator, "label_embedding", None)
    table = getter() if callable(getter) else None
    if table is None:
        return None
    if not isinstance(table, nn.Embedding) or table.num_embeddings < generator.num_classes:
        raise ConfigError(
            f"generator {generator.name!r}: label_embedding() must return the nn.Embedding of its "
            f"{generator.num_classes} classes; got {table!r}."
        )
    return table


def _bytes_per_row(generator: Any, embedding: nn.Embedding | None) -> int:
    """Bytes one interpolated sample costs: its latent and embedding, the image through G and the judge."""
    from auditkit.generators.diffusion import DiffusionGenerator

    passes = 1
    if isinstance(generator, DiffusionGenerator):  # forward keeps every sampling step's activations
        cfg = generator.config
        passes = cfg.sample_steps * (2 if generator.num_classes and cfg.guidance not in (0.0, 1.0) else 1)
    image = math.prod(generator.image_shape)
    width = embedding.embedding_dim if embedding is not None else 0
    return 4 * (math.prod(generator.latent_shape) + width + image * (1 + passes))


@contextlib.contextmanager
def _eval_mode(generator: Any) -> Iterator[None]:
    """Eval mode for the generator's modules (BatchNorm must not mix the interpolated samples)."""
    roots = [generator, getattr(generator, "model", None), getattr(generator, "network", None)]
    subs = {id(m): m for root in roots if isinstance(root, nn.Module) for m in root.modules()}
    modes = [(m, m.training) for m in subs.values()]
    for root in roots:
        if isinstance(root, nn.Module):
            root.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _check_differentiable(generator: Any, z: torch.Tensor, labels: torch.Tensor | None) -> None:
    advice = (
        "Wrap the original torch module with ModuleGenerator, or use method='occlusion' (perturbations "
        "of the latent dims and an ablation of the condition, no gradients needed)."
    )
    probe = z.clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            out = generator.forward(probe, labels)
    except (GeneratorError, NotImplementedError, RuntimeError) as exc:  # RuntimeError: numpy() under autograd
        raise ExplainError(
            f"gradients are unavailable for generator {generator.name!r}: {exc} {advice}"
        ) from None
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise ExplainError(
            f"gradients are unavailable for generator {generator.name!r}: its forward(z, labels) output "
            f"does not depend differentiably on z (no grad_fn). {advice}"
        )


def _check_finite(latent: torch.Tensor, condition: torch.Tensor | None, name: str, attribute: str) -> None:
    bad = ~torch.isfinite(latent).all(1)
    if condition is not None:
        bad |= ~torch.isfinite(condition)
    if bad.any():
        idx = bad.nonzero().flatten().tolist()
        shown = ", ".join(map(str, idx[:10])) + (" ..." if len(idx) > 10 else "")
        raise ExplainError(
            f"latent attributions of {attribute!r} on generator {name!r} are not finite for "
            f"{len(idx)} sample(s) (indices {shown}); the generator or judge overflows there. Check "
            "those samples' images, or use another seed or baseline."
        )


def _to_hwc(image: torch.Tensor) -> Any:
    arr = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def _floats(t: torch.Tensor) -> list[float | None]:
    return [_float(v) for v in t.flatten().tolist()]


def _float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "mean_abs": _float(row["mean_abs"]),
        "mean_signed": _float(row["mean_signed"]),
        "share": _float(row["share"]),
    }
