"""auditkit's vectorised LIME against the ``lime`` package, a model with a known answer, and its contract.

Reference: ``lime.lime_image.LimeImageExplainer(kernel_width, random_state=seed).explain_instance(...)`` with
the same segments (``segmentation_fn`` returning ours), ``labels=(target,)``, ``top_labels=None``, the same
``hide_color`` and ``num_samples``, and a ``classifier_fn`` running the same torch model on lime's H×W×C
batches. Ours runs with lime's model batch size (10), so that the model's float32 outputs are the same
bits (some conv kernels round differently for other batch shapes). Tolerance: 1e-9 absolute on weights,
intercept, R² and local prediction (observed: about 1e-16; the only differences are float64 round-off of
the closed-form ridge and of the cosine distance).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from lime.lime_image import LimeImageExplainer
from skimage.segmentation import felzenszwalb, quickshift, slic
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from torch import nn

from auditkit.data import Shapes
from auditkit.errors import ConfigError, DataError, ExplainError
from auditkit.explain.lime import _weighted_ridge, _where, lime_attribution, segment_images

ATOL = 1e-9
N_SAMPLES = 300


def _grid(h: int, w: int, cell: int) -> np.ndarray:
    """Square blocks as segments: they cross the shapes' edges, so segment means differ from the pixels."""
    rows, cols = np.arange(h)[:, None] // cell, np.arange(w)[None, :] // cell
    return (rows * ((w + cell - 1) // cell) + cols).astype(np.int64)


def _lime_reference(
    model: nn.Module,
    image: torch.Tensor,
    target: int,
    segments: np.ndarray | None,
    *,
    seed: int,
    hide_color: object,
    output: str = "probabilities",
    num_samples: int = N_SAMPLES,
) -> tuple[np.ndarray, float, float, float, np.ndarray]:
    """lime's (weights by segment, intercept, score, local_pred, segments) for one C×H×W image."""

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            out = model(x)
        return (out.softmax(dim=1) if output == "probabilities" else out).numpy()

    explainer = LimeImageExplainer(random_state=seed)
    with contextlib.redirect_stderr(io.StringIO()):  # lime's own tqdm bar
        exp = explainer.explain_instance(
            image.permute(1, 2, 0).numpy(),
            classifier_fn,
            labels=(target,),
            top_labels=None,
            hide_color=hide_color,
            num_samples=num_samples,
            segmentation_fn=None if segments is None else (lambda _: segments),
        )
    weights = np.full(int(exp.segments.max()) + 1, np.nan)
    for feature, weight in exp.local_exp[target]:
        weights[feature] = weight
    return weights, exp.intercept[target], exp.score, exp.local_pred[0], exp.segments


def _assert_matches_lime(
    result, model, images, targets, segments, *, seed, hide_color, output="probabilities"
):
    for i, t in enumerate(targets):
        ref_w, ref_b, ref_r2, ref_pred, _ = _lime_reference(
            model, images[i], int(t), segments[i], seed=seed, hide_color=hide_color, output=output
        )
        np.testing.assert_allclose(result.weights[i], ref_w, rtol=0, atol=ATOL)
        assert result.intercept[i] == pytest.approx(ref_b, abs=ATOL)
        assert result.score[i] == pytest.approx(ref_r2, abs=ATOL)
        assert result.local_pred[i] == pytest.approx(ref_pred, abs=ATOL)
        assert np.ptp(ref_w) > 1e-3, "a degenerate case (all weights ~0) would compare nothing"


# --------------------------------------------------------------------------- equality with lime


@pytest.mark.parametrize(
    ("hide_color", "segmentation", "output"),
    [
        (None, "grid", "probabilities"),  # segment means: grid cells cross colour edges
        (0.5, "slic", "probabilities"),  # grey: black leaves this confident judge's probabilities ~flat
        ((0.5, 0.2, 0.8), "slic", "logits"),
    ],
)
def test_equals_lime_on_the_judge(trained_judge, eval_images, hide_color, segmentation, output) -> None:
    model = trained_judge.head("shape")
    images = eval_images[:3]
    targets = torch.tensor([0, 1, 2])
    if segmentation == "grid":
        segments = np.stack([_grid(32, 32, 8)] * 3)
    else:
        segments = segment_images(images, "slic").numpy()
    result = lime_attribution(
        model, images, targets, segments=segments, num_samples=N_SAMPLES, seed=7, hide_color=hide_color,
        output=output, batch_size=10,
    )  # fmt: skip
    _assert_matches_lime(
        result, model, images, targets, segments, seed=7, hide_color=hide_color, output=output
    )
    # every pixel carries its segment's weight
    for i in range(3):
        expected = torch.from_numpy(result.weights[i].astype(np.float32))[result.segments[i]]
        assert torch.equal(result.maps[i, 0], expected)


def test_default_quickshift_equals_lime_with_its_own_default_segmentation() -> None:
    """From 128 px up our quickshift defaults are lime's: no segmentation_fn given to lime at all."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 3)).eval()  # fmt: skip
    image = Shapes(1, size=128, seed=5, noise=0.05).images
    result = lime_attribution(
        model, image, 2, segmentation="quickshift", num_samples=200, seed=11, batch_size=10
    )
    ref_w, ref_b, ref_r2, ref_pred, ref_segments = _lime_reference(
        model, image[0], 2, None, seed=11, hide_color=None, num_samples=200
    )
    assert np.array_equal(result.segments[0].numpy(), ref_segments)
    assert len(ref_w) >= 5
    np.testing.assert_allclose(result.weights[0], ref_w, rtol=0, atol=ATOL)
    assert (result.intercept[0], result.score[0], result.local_pred[0]) == pytest.approx(
        (ref_b, ref_r2, ref_pred), abs=ATOL
    )


def test_closed_form_ridge_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (400, 30)).astype(np.float64)
    y = x @ rng.normal(size=30) + rng.normal(scale=0.5, size=400)
    w = rng.uniform(0.01, 1, 400)
    coef, intercept, score, local = _weighted_ridge(x, y, w)
    ref = Ridge(alpha=1, fit_intercept=True).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(coef, ref.coef_, rtol=0, atol=1e-10)
    assert intercept == pytest.approx(ref.intercept_, abs=1e-10)
    assert score == pytest.approx(r2_score(y, ref.predict(x), sample_weight=w), abs=1e-12)
    assert local == pytest.approx(ref.predict(np.ones((1, 30)))[0], abs=1e-10)
    # a constant target is fitted exactly: no weight, perfect R² (sklearn's force_finite convention)
    assert _weighted_ridge(x, np.full(400, 0.25), w)[1:] == (0.25, 1.0, 0.25)
    assert not _weighted_ridge(x, np.full(400, 0.25), w)[0].any()


def test_bitwise_where_equals_torch_where() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(3, 9, 7, generator=gen) * 1e3
    image[0, 0, :3] = torch.tensor([-0.0, float("inf"), 1e-40])  # signed zero, infinity, subnormal
    hidden = torch.randn(3, 9, 7, generator=gen)
    keep = torch.rand(5, 1, 9, 7, generator=gen) < 0.5
    out = _where(
        -keep.to(torch.int32), image.view(torch.int32) ^ hidden.view(torch.int32), hidden.view(torch.int32),
        torch.empty(5, 3, 9, 7),
    )  # fmt: skip
    assert torch.equal(out.view(torch.int32), torch.where(keep, image, hidden).view(torch.int32))


# --------------------------------------------------------------------------- a known answer


class _RedInRegion(nn.Module):
    """Logit 0 = mean red value inside rows 8-15, columns 4-11; logit 1 = 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0, 8:16, 4:12].mean(dim=(1, 2))
        return torch.stack([red, torch.zeros_like(red)], dim=1)


def test_known_answer_weights_are_the_overlap_of_each_segment_with_the_region() -> None:
    """Hiding with black, the logit is exactly Σ_s kept_s · overlap_s / 64, so each weight ≈ overlap share."""
    image = Shapes(1, seed=3, noise=0.05).images
    image[:, 0] = image[:, 0].clamp(min=0.5)  # red everywhere, so that hiding always lowers the logit
    result = lime_attribution(_RedInRegion(), image, 0, segmentation="slic", num_samples=500, seed=0,
                              hide_color=0.0, output="logits")  # fmt: skip
    seg = result.segments[0].numpy()
    region = np.zeros((32, 32), bool)
    region[8:16, 4:12] = True
    red = image[0, 0].double().numpy()
    expected = np.array([red[(seg == s) & region].sum() / 64 for s in range(seg.max() + 1)])
    weights = result.weights[0]
    inside = expected > 0
    assert 2 <= inside.sum() < len(weights)
    np.testing.assert_allclose(weights, expected, atol=0.01)  # ridge shrinkage only
    assert np.abs(weights[~inside]).max() < 0.003
    top = set(np.argsort(-weights)[: inside.sum()])
    assert top == set(np.flatnonzero(inside))
    assert result.score[0] > 0.99
    assert result.local_pred[0] == pytest.approx(red[region].mean(), abs=0.02)


# --------------------------------------------------------------------------- determinism and batching


def test_same_seed_same_maps_and_other_seed_other_samples(trained_judge, eval_images) -> None:
    model = trained_judge.head("shape")
    images = eval_images[:4]
    kw = {"num_samples": 200, "hide_color": 0.0}
    first = lime_attribution(model, images, 1, seed=5, **kw)
    again = lime_attribution(model, images, 1, seed=5, batch_size=37, progress=True, **kw)
    other = lime_attribution(model, images, 1, seed=6, **kw)
    # same samples and weights; the model's scores round differently by batch size on some CPUs (oneDNN)
    torch.testing.assert_close(first.maps, again.maps, rtol=1e-5, atol=1e-7)
    assert torch.equal(first.segments, other.segments)  # the segmentation does not depend on the seed
    for i in range(4):
        assert not np.array_equal(first.weights[i], other.weights[i])
    # every image uses the seed itself: an image explained alone gives what it gets inside the batch
    alone = lime_attribution(model, images[2:3], 1, seed=5, **kw)
    assert torch.equal(alone.maps[0], first.maps[2])
    assert first.num_samples == 200 and first.seed == 5
    assert 0 < first.model_seconds < first.seconds


def test_explain_registry_runs_the_same_lime(trained_judge, eval_images) -> None:
    from auditkit.explain import explain

    model = trained_judge.head("shape")
    direct = lime_attribution(model, eval_images[:2], 0, num_samples=200, seed=3, hide_color=0.0)
    via = explain(model, eval_images[:2], 0, method="lime", seed=3, num_samples=200, hide_color=0.0)
    assert torch.equal(via.maps, direct.maps)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(trained_judge, eval_images) -> None:
    model = trained_judge.head("shape")
    cpu = lime_attribution(model, eval_images[:2], 0, num_samples=200, hide_color=0.0)
    gpu = lime_attribution(model.cuda(), eval_images[:2], 0, num_samples=200, hide_color=0.0)
    model.cpu()
    for a, b in zip(cpu.weights, gpu.weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3)  # TF32 convolutions on the GPU


# --------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    ("name", "fn", "options"),
    [
        ("slic", slic, {"n_segments": 50, "compactness": 10.0, "sigma": 1.0, "start_label": 0}),
        ("quickshift", quickshift, {"kernel_size": 1.0, "max_dist": 200, "ratio": 0.2, "rng": 42}),
        ("felzenszwalb", felzenszwalb, {"scale": 1, "sigma": 0.8, "min_size": 20}),
    ],
)
def test_segmentations_equal_skimage_with_the_documented_options(eval_images, name, fn, options) -> None:
    images = eval_images[:3]
    ours = segment_images(images, name)
    assert ours.dtype == torch.int64 and ours.shape == (3, 32, 32)
    for i in range(3):
        direct = fn(images[i].permute(1, 2, 0).numpy(), **options)
        labels = np.unique(direct, return_inverse=True)[1].reshape(direct.shape)
        assert np.array_equal(ours[i].numpy(), labels)
        assert set(np.unique(labels)) == set(range(labels.max() + 1)) and labels.max() >= 2
    result = lime_attribution(lambda x: x.mean(dim=(2, 3)), images, 0, segmentation=name, num_samples=20)
    assert torch.equal(result.segments, ours)


def test_segmentation_options_callables_grey_images_and_shared_segments(eval_images) -> None:
    coarse = segment_images(eval_images[:2], "slic", {"n_segments": 8})
    assert int(coarse.max()) < int(segment_images(eval_images[:2], "slic").max())
    halves = segment_images(
        eval_images[:2],
        lambda im, cut: (np.arange(32) >= cut)[None, :].repeat(32, 0).astype(int),
        {"cut": 10},
    )
    assert halves.shape == (2, 32, 32) and set(halves.unique().tolist()) == {0, 1}
    grey = eval_images[:1].mean(dim=1, keepdim=True)
    assert torch.equal(segment_images(grey, "slic")[0], segment_images(grey.expand(1, 3, 32, 32), "slic")[0])
    shared = _grid(32, 32, 16) * 10 + 3  # any integer labels, one map for every image: relabelled 0 … 3
    result = lime_attribution(
        lambda x: x.mean(dim=(2, 3)), eval_images[:2], 1, segments=shared, num_samples=20
    )
    assert torch.equal(result.segments, torch.from_numpy(_grid(32, 32, 16)).expand(2, 32, 32))


def test_grey_images_explain_like_their_rgb_copies() -> None:
    """A model reading the channel mean sees a grey image and its 3-channel copy alike: same explanation."""
    grey = Shapes(2, seed=4, noise=0.05).images.mean(dim=1, keepdim=True)

    def on_mean(x: torch.Tensor) -> torch.Tensor:  # logit 1: contrast (std) of the grey image, ×10
        g = x.mean(dim=1).flatten(1)
        return torch.stack([g.mean(dim=1), 10 * g.std(dim=1), (g**2).mean(dim=1)], dim=1)

    for hide_color in (None, 0.3):
        kw = {"num_samples": 100, "hide_color": hide_color, "output": "logits"}
        a = lime_attribution(on_mean, grey, 1, **kw)
        b = lime_attribution(on_mean, grey.expand(2, 3, 32, 32), 1, **kw)
        assert torch.equal(a.segments, b.segments)
        for wa, wb in zip(a.weights, b.weights, strict=True):
            np.testing.assert_allclose(wa, wb, atol=1e-6)
            assert np.abs(wa).max() > 1e-3


# --------------------------------------------------------------------------- errors


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"images": torch.rand(3, 32, 32)}, DataError, "images[None]"),
        ({"images": torch.full((1, 3, 8, 8), float("nan"))}, DataError, "NaN"),
        ({"images": torch.rand(1, 3, 8, 8) * 255}, DataError, "[0, 1]"),
        ({"images": torch.rand(1, 3, 8, 8).double()}, DataError, "float32"),
        ({"segmentation": "watershed"}, ConfigError, "'slic', 'quickshift', 'felzenszwalb'"),
        ({"segmentation_options": {"n_segmentz": 5}}, ConfigError, "n_segmentz"),
        ({"num_samples": 1}, ConfigError, "num_samples"),
        ({"target": 5}, ExplainError, "target 5 is out of range for a model with 3 outputs"),
        ({"target": -1}, ConfigError, "non-negative"),
        ({"model": lambda x: torch.full((x.shape[0], 3), float("nan"))}, ExplainError, "NaN"),
        ({"model": lambda x: x.mean(dim=(1, 2, 3))}, ExplainError, "N×K"),
        ({"segments": np.zeros((2, 16, 16), np.int64)}, DataError, "segments must be integer labels"),
        ({"hide_color": (0.0, 1.0)}, ConfigError, "hide_color"),
        ({"output": "probs"}, ConfigError, "'probabilities' or 'logits'"),
    ],
)
def test_errors_name_the_input_and_the_fix(kwargs, error, words) -> None:
    args = {"model": _linear, "images": torch.rand(2, 3, 32, 32), "target": 0, "num_samples": 10, **kwargs}
    model, images, target = args.pop("model"), args.pop("images"), args.pop("target")
    with pytest.raises(error) as info:
        lime_attribution(model, images, target, **args)
    assert words in str(info.value)
