"""LIME for image classifiers: the ``lime`` package's numbers, with its per-sample Python loop vectorised.

Why hand-written: ``lime.lime_image.LimeImageExplainer`` builds every perturbed image in a Python loop
(a deep copy of the image, then one boolean mask per hidden superpixel, per sample) and hands the model
small numpy batches in H×W×C layout. For a 224×224 image and 1000 samples that loop takes longer than a
small CNN's forward passes. Here the N_samples×n_segments binary matrix is drawn once, and the perturbed
images of a whole batch are built at once on the model's device: ``keep = rows[:, segments]`` (one gather)
and ``where(keep, image, fudged)`` (as bit operations, see ``_where``). The weighted ridge regression is
solved in closed form with numpy.
See ``benchmarks/RESULTS.md`` ("LIME (issue 5)") for the overhead compared with lime.

The exactness contract. For each image, with the same segmentation (labels ``0 … F-1``), ``seed``,
``num_samples``, ``kernel_width`` and ``hide_color``, the result equals

.. code-block:: python

    explainer = lime.lime_image.LimeImageExplainer(kernel_width=kernel_width, random_state=seed)
    explanation = explainer.explain_instance(
        image_hwc, classifier_fn, labels=(target,), top_labels=None, hide_color=hide_color,
        num_samples=num_samples, segmentation_fn=lambda _: segments)  # random_seed left as None

where ``classifier_fn`` runs the same model on N×H×W×C batches and returns the softmax of its outputs
(``output="probabilities"``) or the outputs themselves (``output="logits"``). What that takes, step by step
(lime 0.2.0.1, ``lime_image.py`` and ``lime_base.py``):

* random numbers: ``numpy.random.RandomState(seed)`` (lime's ``check_random_state(random_state)``). Since
  ``explain_instance`` is called without ``random_seed``, lime first draws ``randint(0, 1000)`` (a seed for
  its default segmentation) from that state; the draw is repeated here so that the next one, the sample
  matrix ``randint(0, 2, num_samples * F).reshape(num_samples, F)``, is the same. Its first row is set to
  ones (the unperturbed image). Every image uses ``seed`` itself, as lime would when called once per image:
  an image's explanation does not depend on its position in ``images`` or on the batch it came in;
* hidden superpixels take the per-segment mean colour (``hide_color=None``, lime's "fudged image", the
  means computed in float32 exactly as lime does) or the constant ``hide_color``;
* sample weights: the exponential kernel ``sqrt(exp(-d² / kernel_width²))`` of the cosine distance ``d``
  between each row and the all-ones first row, which is ``1 - sqrt(ones_in_row / F)``;
* ``explain_instance``'s default ``num_features=100000`` makes lime's feature selection ``'auto'`` pick
  ``'highest_weights'``, which keeps the ``min(100000, F)`` segments with the largest ``|coef|`` of a first
  ``Ridge(alpha=0.01)`` fit: all of them, only reordered. Reordering the columns does not change a ridge
  solution, so that first fit is skipped;
* the explanation: ``Ridge(alpha=1, fit_intercept=True)`` fitted with those sample weights, here solved in
  closed form in float64 (weighted centring, then ``(XᵀWX + I) β = XᵀWy``); ``score`` is its weighted R²
  (scikit-learn's ``r2_score`` with sample weights) and ``local_pred`` its prediction for the all-ones row.

The tests compare weights, intercept, score and local prediction with lime's to 1e-9; the differences seen
are around 1e-16 (float64 round-off of the closed-form solver and of the distance formula). That assumes
the model returns the same bits for an image whatever batch it is in; some CPU convolution kernels round
differently for other batch shapes, which moved R² by ~1e-7 in the benchmark (pass ``batch_size=10``,
lime's default, for bit-equal model outputs). One degenerate case differs: when
the model's score is the same for every sample (nothing the perturbations hide matters), the fit here is
exact (weights 0, R² 1), while lime's weights are round-off (~1e-30) and its R² is 1 or 0 by chance.
This happens with ``hide_color=None`` on flat-coloured images (Shapes without noise) whose superpixels
follow colour edges: each segment's mean colour is its colour, so hiding changes nothing. Use a
``hide_color`` (e.g. 0) or segments that cross edges there.

Segments are always relabelled ``0 … F-1`` in sorted order of the labels given: lime assumes such labels
(with skimage's default ``start_label=1`` its feature 0 hides nothing and the last segment is never hidden).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from skimage.color import gray2rgb
from skimage.segmentation import felzenszwalb, quickshift, slic
from torch import nn
from tqdm.auto import tqdm

from auditkit._device import resolve_device
from auditkit.errors import ConfigError, DataError, ExplainError
from auditkit.explain._budget import rows_per_batch
from auditkit.explain._inputs import check_images
from auditkit.explain.core import Method, register_method

SEGMENTATIONS = ("slic", "quickshift", "felzenszwalb")
_ALGORITHMS = {"slic": slic, "quickshift": quickshift, "felzenszwalb": felzenszwalb}
_RIDGE_ALPHA = 1.0  # lime's Ridge(alpha=1)
# On CPU a batch's activations should stay in cache: a small CNN on 224×224 images ran 2-4× slower per
# image in batches of 10-100 than of 3 on one core. 2 MiB of input is 3 such images or 170 of 32×32.
_CPU_BATCH_BYTES = 2 * 2**20

Segmenter = Callable[..., np.ndarray]


@dataclass
class LimeResult:
    """LIME explanations of N images.

    Attributes
    ----------
    maps
        N×1×H×W float32 (CPU): every pixel carries its segment's weight.
    segments
        N×H×W int64 (CPU): the segment of every pixel, labels ``0 … F_i-1``.
    weights
        One float64 array per image, one weight per segment (index = segment label).
    intercept, score, local_pred
        float64 arrays of N: the ridge intercept, its weighted R² on the samples, and its prediction for
        the unperturbed image (lime's ``intercept[label]``, ``score``, ``local_pred[0]``).
    target
        int64 N: the output explained for each image.
    seed, num_samples
        The seed every image used, and the number of samples per image (the first one is the image itself).
    batch_size
        Perturbed images per model call.
    model_seconds
        Time spent inside model calls (CUDA synchronised).
    seconds
        Wall-clock time of the whole call, segmentation included.
    """

    maps: torch.Tensor
    segments: torch.Tensor
    weights: list[np.ndarray]
    intercept: np.ndarray
    score: np.ndarray
    local_pred: np.ndarray
    target: torch.Tensor
    seed: int
    num_samples: int
    batch_size: int
    model_seconds: float
    seconds: float


def default_segmentation_options(name: str, height: int, width: int) -> dict[str, Any]:
    """The options :func:`segment_images` passes to ``skimage.segmentation.<name>`` for H×W images.

    * ``slic``: ``n_segments=50, compactness=10.0, sigma=1.0, start_label=0`` (skimage's other defaults).
      lime passes nothing, so it gets skimage's ``n_segments=100, sigma=0, start_label=1``. 50 gives about
      30 segments on 32×32 Shapes images and on a 224×224 photograph, a number 1000 samples estimate well;
      ``sigma=1`` keeps it there on noisy images (without smoothing, pixel noise of 0.05 leaves 4-11 segments
      on 32×32 Shapes).
    * ``quickshift``: lime's defaults ``kernel_size=4, max_dist=200, ratio=0.2``, and ``rng=42`` (skimage's
      default; lime's ``random_seed`` is no longer a skimage argument, so lime gets 42 too). Below 128 px
      ``kernel_size`` shrinks to ``max(1, min(H, W) / 32)``: with 4, a 32×32 image is one segment.
    * ``felzenszwalb``: lime's (= skimage's) ``scale=1, sigma=0.8, min_size=20``: 3-20 segments on 32×32
      Shapes; on large natural images that is hundreds, raise ``scale`` (e.g. 100) and ``min_size``.
    """
    if name == "slic":
        return {"n_segments": 50, "compactness": 10.0, "sigma": 1.0, "start_label": 0}
    if name == "quickshift":
        return {"kernel_size": min(4.0, max(1.0, min(height, width) / 32)), "max_dist": 200, "ratio": 0.2,
                "rng": 42}  # fmt: skip
    if name == "felzenszwalb":
        return {"scale": 1, "sigma": 0.8, "min_size": 20}
    raise ConfigError(f"unknown segmentation {name!r}; use one of {list(SEGMENTATIONS)} or a callable.")


def segment_images(
    images: torch.Tensor,
    segmentation: str | Segmenter = "slic",
    segmentation_options: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Superpixels of each image, labelled ``0 … F-1``: N×H×W int64.

    Parameters
    ----------
    images
        float32 ``[0, 1]`` N×C×H×W. Each is segmented as an H×W×C float32 numpy array (what lime receives);
        the named algorithms need C = 3 or 1 (grey images are segmented as ``gray2rgb``, as lime does).
    segmentation
        ``"slic"``, ``"quickshift"``, ``"felzenszwalb"`` (skimage, with
        :func:`default_segmentation_options` updated by ``segmentation_options``), or a callable
        ``fn(image_hwc, **segmentation_options) -> H×W integer labels``.
    segmentation_options
        Keyword arguments for the algorithm, overriding the defaults.
    """
    images = _check_images(images)
    return torch.from_numpy(np.stack([_segment(im, segmentation, segmentation_options) for im in images]))


def lime_attribution(
    model: nn.Module | Callable[[torch.Tensor], Any],
    images: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor,
    *,
    segmentation: str | Segmenter = "slic",
    segmentation_options: Mapping[str, Any] | None = None,
    segments: torch.Tensor | np.ndarray | None = None,
    num_samples: int = 1000,
    seed: int = 0,
    kernel_width: float = 0.25,
    hide_color: float | Sequence[float] | None = None,
    output: Literal["probabilities", "logits"] = "probabilities",
    batch_size: int | None = None,
    memory_budget: int | float | str | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> LimeResult:
    """Explain ``model``'s ``target`` output on each image with LIME (equal to lime's numbers, vectorised).

    Parameters
    ----------
    model
        A torch module or callable mapping float32 N×C×H×W images to N×K scores. It is called as given
        (put a module in eval mode first) under ``torch.no_grad``.
    images
        float32 ``[0, 1]`` N×C×H×W.
    target
        The output explained: one int for all images or one per image.
    segmentation, segmentation_options
        How superpixels are made (see :func:`segment_images` and :func:`default_segmentation_options`);
        ignored when ``segments`` is given.
    segments
        Precomputed integer labels, N×H×W (or H×W for every image); relabelled ``0 … F-1``.
    num_samples
        Perturbed samples per image, the unperturbed image included (lime's default 1000; at least 2).
    seed
        ``numpy.random.RandomState(seed)`` draws each image's samples, lime's ``random_state=seed``
        (module docstring); every image uses the same seed, so its result does not depend on the batch.
    kernel_width
        Width of lime's exponential kernel on cosine distances (lime's default 0.25).
    hide_color
        What hidden superpixels show: ``None`` for each segment's mean colour (lime's default), or a value
        in image units (``[0, 1]``), one number or one per channel.
    output
        ``"probabilities"`` (default): explain the softmax of the model's outputs, for models returning
        logits (auditkit's judge heads). ``"logits"``: explain the outputs as returned (also the choice for
        a model that already returns probabilities). lime itself uses whatever its ``classifier_fn`` returns.
    batch_size
        Perturbed images per model call; by default as many as fit ``memory_budget``
        (``rows_per_batch(C·H·W·4, memory_budget, grad=False)``), at most ``num_samples``, and on CPU at
        most 2 MiB of input (so that activations stay in cache; larger batches ran slower there).
    memory_budget
        Bytes (or ``"512MB"``) for one batch; default ``$AUDITKIT_MEMORY_BUDGET`` or 512 MiB.
    device
        Where perturbed images are built and the model called; default the device of the model's first
        parameter (CPU for a callable). The model is not moved.
    progress
        Show a tqdm bar over model batches.

    Returns
    -------
    LimeResult
        Per-pixel maps, segments, per-segment weights, intercept, R², local prediction, timings.

    Raises
    ------
    ConfigError
        Bad options (unknown segmentation, ``num_samples < 2``, a bad target, seed or batch size).
    DataError
        Images (or ``segments``) of the wrong type, shape or range, or with NaN.
    ExplainError
        The model returned a wrong shape, NaN or infinite scores, or fewer outputs than ``target`` needs.
    """
    start = time.perf_counter()
    images = _check_images(images)
    n, c, h, w = images.shape
    targets = _check_target(target, n)
    num_samples = _check_int(num_samples, "num_samples", 2, "the first sample is the image itself")
    seed = _check_int(seed, "seed", 0, "numpy seeds are 0 … 2**32-1")
    if seed >= 2**32:
        raise ConfigError(f"seed must be below 2**32 (a numpy RandomState seed); got {seed}.")
    if isinstance(kernel_width, bool) or not isinstance(kernel_width, int | float) or not kernel_width > 0:
        raise ConfigError(
            f"kernel_width must be a positive number (lime's default 0.25); got {kernel_width!r}."
        )
    if not math.isfinite(kernel_width):
        raise ConfigError(f"kernel_width must be finite; got {kernel_width!r}.")
    if output not in ("probabilities", "logits"):
        raise ConfigError(f"output must be 'probabilities' or 'logits'; got {output!r}.")
    fill = _check_hide_color(hide_color, c)
    dev = _model_device(model) if device is None else resolve_device(device)
    if batch_size is None:
        batch_size = min(num_samples, rows_per_batch(c * h * w * 4, memory_budget, grad=False))
        if dev.type == "cpu":
            batch_size = min(batch_size, max(1, _CPU_BATCH_BYTES // (c * h * w * 4)))
    batch_size = _check_int(batch_size, "batch_size", 1, "it is the number of images per model call")
    labels = (
        _check_segments(segments, n, h, w)
        if segments is not None
        else np.stack([_segment(im, segmentation, segmentation_options) for im in images])
    )

    batches_per_image = math.ceil(num_samples / batch_size)
    bar = tqdm(total=n * batches_per_image, desc="lime", unit="batch", disable=not progress)
    clock = [0.0]
    weights, intercept, score, local_pred = [], np.zeros(n), np.zeros(n), np.zeros(n)
    try:
        for i in range(n):
            fit = _explain_one(
                model, images[i], labels[i], int(targets[i]), num_samples=num_samples, seed=seed,
                kernel_width=float(kernel_width), fill=fill, softmax=output == "probabilities",
                batch_size=batch_size, device=dev, bar=bar, clock=clock,
            )  # fmt: skip
            weights.append(fit[0])
            intercept[i], score[i], local_pred[i] = fit[1:]
    finally:
        bar.close()

    segs = torch.from_numpy(labels)
    maps = torch.stack(
        [torch.from_numpy(wt.astype(np.float32))[s] for wt, s in zip(weights, segs, strict=True)]
    )
    return LimeResult(
        maps=maps[:, None],
        segments=segs,
        weights=weights,
        intercept=intercept,
        score=score,
        local_pred=local_pred,
        target=targets,
        seed=seed,
        num_samples=num_samples,
        batch_size=batch_size,
        model_seconds=clock[0],
        seconds=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- one image


def _explain_one(
    model: Callable[[torch.Tensor], Any],
    image: torch.Tensor,
    segments: np.ndarray,
    target: int,
    *,
    num_samples: int,
    seed: int,
    kernel_width: float,
    fill: np.ndarray | None,
    softmax: bool,
    batch_size: int,
    device: torch.device,
    bar: tqdm,
    clock: list[float],
) -> tuple[np.ndarray, float, float, float]:
    """Samples, model scores and the weighted ridge fit of one image: (weights, intercept, R², local pred)."""
    n_seg = int(segments.max()) + 1
    rng = np.random.RandomState(seed)
    rng.randint(0, high=1000)  # lime's segmentation seed draw (explain_instance with random_seed=None)
    data = rng.randint(0, 2, num_samples * n_seg).reshape(num_samples, n_seg)
    data[0, :] = 1

    hwc = image.permute(1, 2, 0).numpy()
    fudged = (
        _segment_means(hwc, segments, n_seg)[segments] if fill is None else np.broadcast_to(fill, hwc.shape)
    )
    x = image.to(device)
    hidden = torch.from_numpy(np.ascontiguousarray(fudged)).permute(2, 0, 1).contiguous().to(device)
    index = torch.from_numpy(segments.reshape(1, -1)).to(device)
    masks = -torch.from_numpy(data.astype(np.int32)).to(device)  # per segment: -1 (all bits set) = kept
    buffer = torch.empty((min(batch_size, num_samples), *x.shape), dtype=torch.float32, device=device)
    hidden_bits = hidden.view(torch.int32)
    flip = x.view(torch.int32) ^ hidden_bits

    y = np.empty(num_samples)
    for lo in range(0, num_samples, batch_size):
        rows = masks[lo : lo + batch_size]
        b = rows.shape[0]
        keep = torch.gather(rows, 1, index.expand(b, -1)).view(b, 1, *x.shape[1:])  # per pixel
        batch = _where(keep, flip, hidden_bits, out=buffer[:b])
        y[lo : lo + b] = _scores(model, batch, target, softmax, clock)
        bar.update(1)

    distances = 1.0 - np.sqrt(data.sum(axis=1) / n_seg)  # cosine distance to the all-ones row
    sample_weight = np.sqrt(np.exp(-(distances**2) / kernel_width**2))
    return _weighted_ridge(data.astype(np.float64), y, sample_weight)


def _where(keep: torch.Tensor, flip: torch.Tensor, hidden: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``torch.where(keep != 0, image, hidden)`` for float32 images, as bit operations on their int32 views.

    ``keep`` is -1 (all bits set) where a pixel is kept and 0 where it is hidden; ``flip`` is
    ``image ^ hidden`` and ``hidden`` the hidden image, both viewed as int32. ``hidden ^ (flip & keep)`` is
    then, bit for bit, the image's or the hidden value: the same result as ``torch.where``, about 3× faster
    on one CPU core (integer ops vectorise, the float select does not), and that select is most of the time
    LIME spends outside the model.
    """
    bits = out.view(torch.int32)
    torch.bitwise_and(flip, keep, out=bits)
    bits.bitwise_xor_(hidden)
    return out


def _scores(
    model: Callable[[torch.Tensor], Any], batch: torch.Tensor, target: int, softmax: bool, clock: list[float]
) -> np.ndarray:
    """The model's (softmaxed) score of ``target`` for each image of ``batch``, float64 on the CPU."""
    cuda = batch.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(batch.device)
    start = time.perf_counter()
    with torch.no_grad():
        out = model(batch)
    if cuda:
        torch.cuda.synchronize(batch.device)
    clock[0] += time.perf_counter() - start
    out = torch.as_tensor(out)
    if out.ndim != 2 or out.shape[0] != batch.shape[0] or not out.is_floating_point():
        raise ExplainError(
            f"the model must return N×K float scores; for a batch of {batch.shape[0]} images it returned "
            f"{out.dtype}, shape {tuple(out.shape)}. Wrap it so it returns one row of class scores per image."
        )
    if target >= out.shape[1]:
        raise ExplainError(
            f"target {target} is out of range for a model with {out.shape[1]} outputs; "
            f"use 0 … {out.shape[1] - 1}."
        )
    if not torch.isfinite(out).all():
        raise ExplainError(
            "the model returned NaN or infinite scores on perturbed images; LIME would fit noise. "
            "Check the model on images with superpixels replaced (hide_color) and its numerical stability."
        )
    if softmax:
        out = out.softmax(dim=1)
    return out[:, target].double().cpu().numpy()


def _segment_means(hwc: np.ndarray, segments: np.ndarray, n_seg: int) -> np.ndarray:
    """F×C mean colour of each segment, as lime computes it (``np.mean`` of each channel, in image dtype).

    Pixels are grouped by a stable sort, so each segment's values come in raster order, as with lime's
    boolean mask, and each mean is the same float32 sum in the same order.
    """
    flat = hwc.reshape(-1, hwc.shape[-1])
    order = np.argsort(segments.reshape(-1), kind="stable")
    bounds = np.searchsorted(segments.reshape(-1)[order], np.arange(n_seg + 1))
    pixels = flat[order]
    means = np.empty((n_seg, hwc.shape[-1]), dtype=hwc.dtype)
    for s in range(n_seg):
        for ch in range(hwc.shape[-1]):
            means[s, ch] = np.mean(pixels[bounds[s] : bounds[s + 1], ch])
    return means


def _weighted_ridge(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """``Ridge(alpha=1).fit(x, y, sample_weight=w)`` in closed form: (coef, intercept, weighted R², f(ones)).

    Same objective as scikit-learn's: ``Σ w (y - xβ - b)² + α‖β‖²`` with the intercept unpenalised, i.e.
    centre ``x`` and ``y`` on their ``w``-weighted means and solve ``(XcᵀWXc + αI) β = XcᵀWyc``.
    A constant ``y`` is fitted exactly (β = 0, R² = 1); scikit-learn's round-off leaves β ≈ 1e-30 there and
    an R² of 1 or 0 depending on whether the residuals happen to round to exactly zero.
    """
    if np.all(y == y[0]):
        return np.zeros(x.shape[1]), float(y[0]), 1.0, float(y[0])
    total = w.sum()
    x_mean = w @ x / total
    y_mean = w @ y / total
    xc = x - x_mean
    yc = y - y_mean
    gram = xc.T @ (xc * w[:, None])
    gram[np.diag_indices_from(gram)] += _RIDGE_ALPHA
    coef = np.linalg.solve(gram, xc.T @ (w * yc))
    intercept = float(y_mean - x_mean @ coef)
    residual = float(w @ (y - (x @ coef + intercept)) ** 2)
    spread = float(w @ (y - y_mean) ** 2)
    # a constant target gives what sklearn's r2_score (force_finite) gives: 1 for a perfect fit, else 0
    score = 1.0 - residual / spread if spread != 0 else float(residual == 0)
    return coef, intercept, score, float(coef.sum() + intercept)


# --------------------------------------------------------------------------- inputs


def _segment(
    image: torch.Tensor, segmentation: str | Segmenter, options: Mapping[str, Any] | None
) -> np.ndarray:
    hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    h, w = hwc.shape[:2]
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"segmentation_options must be a dict of keyword arguments; got {options!r}.")
    if callable(segmentation):
        what = getattr(segmentation, "__name__", type(segmentation).__name__)
        labels = segmentation(hwc, **dict(options or {}))
    elif isinstance(segmentation, str) and segmentation in _ALGORITHMS:
        if hwc.shape[-1] not in (1, 3):
            raise DataError(
                f"segmentation {segmentation!r} needs RGB or grey images; got {hwc.shape[-1]} channels. "
                "Pass segments=… or a segmentation callable."
            )
        what = f"skimage.segmentation.{segmentation}"
        kwargs = {**default_segmentation_options(segmentation, h, w), **dict(options or {})}
        rgb = gray2rgb(hwc[..., 0]) if hwc.shape[-1] == 1 else hwc
        try:
            labels = _ALGORITHMS[segmentation](rgb, **kwargs)
        except TypeError as exc:
            raise ConfigError(
                f"segmentation_options {dict(options or {})} are not accepted by {what}: {exc}. "
                "Use that function's keyword arguments."
            ) from None
    else:
        raise ConfigError(
            f"unknown segmentation {segmentation!r}; use one of {list(SEGMENTATIONS)}, a callable "
            "fn(image_hwc) -> H×W labels, or pass segments=…."
        )
    labels = np.asarray(labels)
    if labels.shape != (h, w) or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"segmentation {what} returned {labels.dtype} labels of shape {labels.shape}; it must return "
            f"integer labels of shape ({h}, {w}), one per pixel."
        )
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels ``0 … F-1`` in sorted order of the given labels, int64."""
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64)


def _check_segments(segments: Any, n: int, h: int, w: int) -> np.ndarray:
    arr = segments.detach().cpu().numpy() if isinstance(segments, torch.Tensor) else np.asarray(segments)
    if arr.ndim == 2:
        arr = np.broadcast_to(arr, (n, *arr.shape))
    if arr.shape != (n, h, w) or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"segments must be integer labels of shape ({n}, {h}, {w}) (or ({h}, {w}) for every image) for "
            f"images of shape ({n}, C, {h}, {w}); got {arr.dtype}, shape {arr.shape}."
        )
    return np.stack([_relabel(s) for s in arr])


def _check_images(images: Any) -> torch.Tensor:
    return check_images(images, float32_only=True, purpose=" before LIME").cpu().contiguous()


def _check_target(target: Any, n: int) -> torch.Tensor:
    if isinstance(target, int) and not isinstance(target, bool):
        t = torch.full((n,), target, dtype=torch.int64)
    else:
        t = torch.as_tensor(target).flatten().cpu()
        if t.is_floating_point() or t.dtype == torch.bool or t.numel() != n:
            raise ConfigError(f"target must be one int or {n} ints (one per image); got {target!r}.")
        t = t.long()
    if (t < 0).any():
        raise ConfigError(f"target indices must be non-negative output indices; got {t.tolist()}.")
    return t


def _check_int(value: Any, name: str, low: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low} ({why}); got {value!r}.")
    return int(value)


def _check_hide_color(hide_color: Any, channels: int) -> np.ndarray | None:
    if hide_color is None:
        return None
    fill = np.asarray(hide_color, dtype=np.float64)
    if fill.ndim > 1 or (fill.ndim == 1 and fill.size != channels) or not np.isfinite(fill).all():
        raise ConfigError(
            f"hide_color must be None (segment means), one number or {channels} numbers (one per channel) "
            f"in image units [0, 1]; got {hide_color!r}."
        )
    return np.broadcast_to(fill, (channels,)).astype(np.float32)  # lime writes it into the float32 image


def _model_device(model: Any) -> torch.device:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return torch.device("cpu")


# --------------------------------------------------------------------------- explain(..., method="lime")


def _lime_method(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int,
    budget: int,
    segmentation: str | Segmenter = "slic",
    segmentation_options: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    kernel_width: float = 0.25,
    hide_color: float | Sequence[float] | None = None,
    output: Literal["probabilities", "logits"] = "probabilities",
    batch_size: int | None = None,
) -> tuple[torch.Tensor, None]:
    result = lime_attribution(
        model, x, target, segmentation=segmentation, segmentation_options=segmentation_options,
        num_samples=num_samples, seed=seed, kernel_width=kernel_width, hide_color=hide_color, output=output,
        batch_size=batch_size, memory_budget=budget, device=x.device,
    )  # fmt: skip
    return result.maps, None


register_method(
    Method("lime", _lime_method,
           {"segmentation": "slic", "segmentation_options": None, "num_samples": 1000, "kernel_width": 0.25,
            "hide_color": None, "output": "probabilities", "batch_size": None},
           gradient=False, stochastic=True, signed=True, library="scikit-image",
           description="LIME on superpixels (auditkit's vectorised lime, numbers equal to lime's).")
)  # fmt: skip


__all__ = [
    "SEGMENTATIONS",
    "LimeResult",
    "default_segmentation_options",
    "lime_attribution",
    "segment_images",
]
