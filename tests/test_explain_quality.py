"""Explanation quality: every number against an independent reference, and the sanity checks on a real judge.

References: a naive one-model-call-per-step deletion/insertion loop written here, ``numpy.trapezoid`` and
``sklearn.metrics.auc`` for the areas, ``scipy.stats.pearsonr`` on the same pixel subsets for faithfulness,
``scipy.stats.spearmanr`` and ``sklearn.metrics.jaccard_score`` for agreement. Acceptance (from the issue):
a Sobel edge map, which ignores the model, fails the randomization check while Saliency and integrated
gradients on the trained judge pass it; integrated gradients' deletion AUC is below a random map's.
Tolerances: 1e-6 where the same float32 model outputs are compared (only the order of float64 sums differs),
1e-9 for pure float64 statistics.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Saliency
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import jaccard_score
from torch import nn

from auditkit.bias import Judge
from auditkit.errors import ConfigError, DataError, ExplainError
from auditkit.explain import quality as q

ATOL = 1e-6


# ------------------------------------------------------------------------------------ explain functions


def saliency(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return Saliency(model).attribute(images.clone().requires_grad_(), target=target, abs=True)


def integrated_gradients(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ig = IntegratedGradients(model)
    return ig.attribute(images.clone().requires_grad_(), target=target, n_steps=8, internal_batch_size=64)


def sobel(model: nn.Module, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A planted 'explanation' that never looks at the model: the gradient magnitude of the grey image."""
    grey = images.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(grey, kx, padding=1), F.conv2d(grey, kx.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt()


def noisy_method(sigma: float):
    """A stochastic method with a known noise level: the Sobel map plus seeded Gaussian noise."""

    def explain(model: nn.Module, images: torch.Tensor, target: torch.Tensor, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        edges = sobel(model, images, target)
        return edges + sigma * edges.std() * torch.randn(edges.shape, generator=gen)

    return explain


@pytest.fixture(scope="module")
def head(trained_judge: Judge) -> nn.Module:
    return trained_judge.head("shape")


@pytest.fixture(scope="module")
def target(head: nn.Module, eval_images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return head(eval_images).argmax(dim=1)


# ------------------------------------------------------------------------------------ naive references


def naive_curve(model, images, maps, target, steps, baseline, kind):
    """One model call per image and step; the pixel order from NumPy's stable argsort (ties: lower index)."""
    n, _, h, w = images.shape
    p = h * w
    out = np.empty((n, steps + 1))
    with torch.no_grad():
        for i in range(n):
            order = np.argsort(-maps[i].sum(dim=0).double().numpy().ravel(), kind="stable")
            for s in range(steps + 1):
                changed = np.zeros(p, dtype=bool)
                changed[order[: s * p // steps]] = True
                mask = torch.from_numpy(changed).view(1, h, w)
                if kind == "deletion":
                    x = torch.where(mask, baseline[i], images[i])
                else:
                    x = torch.where(mask, images[i], baseline[i])
                out[i, s] = float(model(x[None]).softmax(dim=1)[0, target[i]])
    return out


# ------------------------------------------------------------------------------- deletion / insertion


def test_batched_curves_equal_a_naive_loop(head, eval_images, target):
    images, t = eval_images[:4], target[:4]
    gen = torch.Generator().manual_seed(5)
    # rounded values give many ties, so the tie rule is checked too; 3 channels are summed
    maps = (torch.rand(4, 3, 32, 32, generator=gen) * 4).round()
    mean = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    # 1 MiB holds 10 rows of 3×32×32 (with the activation allowance): 36 rows in 4 uneven batches
    dele = q.deletion_curve(head, images, maps, t, steps=8, baseline="black", memory_budget="1MiB")
    ins = q.insertion_curve(head, images, maps, t, steps=8, baseline="mean", memory_budget="1MiB")
    np.testing.assert_allclose(
        dele.scores.numpy(),
        naive_curve(head, images, maps, t, 8, torch.zeros_like(images), "deletion"),
        atol=ATOL,
    )
    np.testing.assert_allclose(
        ins.scores.numpy(), naive_curve(head, images, maps, t, 8, mean, "insertion"), atol=ATOL
    )

    # a tensor baseline (C×H×W, one for all images) and the default batch size give the same as the loop
    grey = torch.full((3, 32, 32), 0.5)
    dele_grey = q.deletion_curve(head, images, maps, t, steps=8, baseline=grey)
    ref = naive_curve(head, images, maps, t, 8, grey.expand_as(images), "deletion")
    np.testing.assert_allclose(dele_grey.scores.numpy(), ref, atol=ATOL)

    for curve in (dele, ins, dele_grey):
        np.testing.assert_allclose(curve.fractions.numpy(), np.arange(9) / 8, atol=1e-12)
        for i in range(4):
            ref_auc = np.trapezoid(curve.scores[i].numpy(), curve.fractions.numpy())
            assert curve.auc[i].item() == pytest.approx(ref_auc, abs=1e-12)
            assert curve.auc[i].item() == pytest.approx(
                sk_auc(curve.fractions.numpy(), curve.scores[i].numpy())
            )
        assert curve.mean_auc == pytest.approx(float(curve.auc.mean()), abs=1e-12)
    json.dumps(dele.to_dict(), allow_nan=False)


def test_logit_score_and_blur_baseline(head, eval_images, target):
    images, t = eval_images[:2], target[:2]
    maps = q.random_attribution(images, seed=1)
    logit = q.deletion_curve(head, images, maps, t, steps=4, score="logit")
    with torch.no_grad():
        ref = head(images).gather(1, t[:, None]).squeeze(1)
    np.testing.assert_allclose(logit.scores[:, 0].numpy(), ref.numpy(), atol=ATOL)  # nothing deleted yet
    blur = q.insertion_curve(head, images, maps, t, steps=4)  # the default baseline: blurred images
    assert blur.baseline == "blur"
    with torch.no_grad():
        probs = head(images).softmax(dim=1).gather(1, t[:, None]).squeeze(1)
    np.testing.assert_allclose(blur.scores[:, -1].numpy(), probs.numpy(), atol=ATOL)  # everything inserted


def test_integrated_gradients_deletes_faster_than_random(head, eval_images, target):
    maps = integrated_gradients(head, eval_images, target)
    ig = q.deletion_curve(head, eval_images, maps, target, steps=10)
    for seed in (0, 1, 2):
        chance = q.deletion_curve(
            head, eval_images, q.random_attribution(eval_images, seed=seed), target, steps=10
        )
        # measured: IG ≈ 0.16 against ≈ 0.75 for random maps; 0.9 is the verdict's own "clear gain" bar
        assert ig.mean_auc < 0.9 * chance.mean_auc, (ig.mean_auc, chance.mean_auc)


def test_random_attribution_is_seeded(eval_images):
    a, b = q.random_attribution(eval_images, seed=3), q.random_attribution(eval_images, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, q.random_attribution(eval_images, seed=4))
    assert a.shape == (8, 1, 32, 32) and float(a.min()) >= 0 and float(a.max()) < 1


# ---------------------------------------------------------------------------------------- faithfulness


def test_faithfulness_equals_pearsonr_on_the_same_subsets(head, eval_images, target):
    images, t = eval_images[:3], target[:3]
    maps = integrated_gradients(head, images, t)
    result = q.faithfulness_correlation(
        head, images, maps, t, subset_size=0.05, n_perturbations=12, seed=7, memory_budget="1MiB"
    )
    m = round(0.05 * 32 * 32)
    assert result.subsets.shape == (3, 12, m) and result.subset_size == m
    flat = maps.sum(dim=1).reshape(3, -1).double()
    with torch.no_grad():
        for i in range(3):
            full = float(head(images[i : i + 1]).softmax(dim=1)[0, t[i]])
            sums, drops = [], []
            for subset in result.subsets[i]:
                assert len(set(subset.tolist())) == m  # a subset never repeats a pixel
                x = images[i].clone().view(3, -1)
                x[:, subset] = 0.0  # the black baseline
                drops.append(full - float(head(x.view(1, 3, 32, 32)).softmax(dim=1)[0, t[i]]))
                sums.append(float(flat[i, subset].sum()))
            np.testing.assert_allclose(result.attribution_sums[i].numpy(), sums, atol=1e-9)
            np.testing.assert_allclose(result.score_drops[i].numpy(), drops, atol=ATOL)
            assert result.correlation[i].item() == pytest.approx(pearsonr(sums, drops).statistic, abs=1e-5)
    assert result.mean == pytest.approx(float(result.correlation.mean()), abs=1e-12)

    again = q.faithfulness_correlation(head, images, maps, t, subset_size=0.05, n_perturbations=12, seed=7)
    assert torch.equal(again.subsets, result.subsets)  # the seed fixes the subsets exactly
    # the scores may round differently between runs on some CPUs (oneDNN kernel choice), not the subsets
    torch.testing.assert_close(again.correlation, result.correlation, rtol=1e-5, atol=1e-6)
    other = q.faithfulness_correlation(head, images, maps, t, subset_size=0.05, n_perturbations=12, seed=8)
    assert not torch.equal(other.subsets, result.subsets)
    json.dumps(result.to_dict(), allow_nan=False)


def test_faithfulness_of_a_constant_map_is_undefined(head, eval_images, target):
    flat = torch.ones(2, 1, 32, 32)
    result = q.faithfulness_correlation(
        head, eval_images[:2], flat, target[:2], subset_size=10, n_perturbations=5
    )
    assert result.correlation.isnan().all() and np.isnan(result.mean)
    assert result.to_dict()["mean"] is None  # JSON has no NaN


# ------------------------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("absolute", [True, False])
def test_agreement_equals_scipy_and_sklearn(absolute):
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(5, 3, 16, 16, generator=gen) * 2).round()  # ties in both maps
    b = a.sum(dim=1, keepdim=True) + 3 * torch.randn(5, 1, 16, 16, generator=gen)
    result = q.agreement(a, b, k=0.2, absolute=absolute)
    top = round(0.2 * 256)
    assert result.top_pixels == top
    for i in range(5):
        x, y = a[i].sum(dim=0).double().numpy().ravel(), b[i, 0].double().numpy().ravel()
        if absolute:
            x, y = np.abs(x), np.abs(y)
        assert result.spearman[i].item() == pytest.approx(spearmanr(x, y).statistic, abs=1e-9)
        masks = []
        for v in (x, y):
            mask = np.zeros(256, dtype=int)
            mask[np.argsort(-v, kind="stable")[:top]] = 1
            masks.append(mask)
        assert result.iou[i].item() == pytest.approx(jaccard_score(*masks), abs=1e-12)
    assert result.mean_iou == pytest.approx(float(result.iou.mean()), abs=1e-12)
    json.dumps(result.to_dict(), allow_nan=False)


def test_agreement_extremes():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(3, 1, 8, 8, generator=gen)
    same = q.agreement(a, a.expand(3, 3, 8, 8) / 3)  # the same map spread over three channels
    np.testing.assert_allclose(same.spearman.numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(same.iou.numpy(), 1.0, atol=1e-12)
    flipped = q.agreement(a, -a, absolute=False, k=0.5)
    np.testing.assert_allclose(flipped.spearman.numpy(), -1.0, atol=1e-12)
    np.testing.assert_allclose(flipped.iou.numpy(), 0.0, atol=1e-12)  # disjoint halves
    flat = q.agreement(a, torch.zeros_like(a))
    assert flat.spearman.isnan().all() and np.isnan(flat.mean_spearman)


# --------------------------------------------------------------------------------------- randomization


def test_randomization_fails_an_edge_detector_and_passes_gradients(head, eval_images, target):
    images, t = eval_images[:4], target[:4]
    before = {k: v.clone() for k, v in head.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in head.parameters()]
    rng = torch.get_rng_state()

    edges = q.randomization_check(head, sobel, images, t, seed=0)
    assert not edges.passed
    np.testing.assert_allclose(edges.mean_spearman.numpy(), 1.0, atol=1e-12)  # it never looks at the model
    np.testing.assert_allclose(edges.mean_ssim.numpy(), 1.0, atol=1e-9)

    for method in (saliency, integrated_gradients):
        result = q.randomization_check(head, method, images, t, seed=0)
        # measured final similarities: Saliency ≈ 0.2, IG ≈ 0.0; the bar is 0.5
        assert result.passed, (method.__name__, result.mean_spearman)
        assert result.final_similarity == pytest.approx(float(result.mean_spearman[-1]))
        assert result.final_similarity < 0.5
        json.dumps(result.to_dict(), allow_nan=False)

    # the cascade runs from the output end to the input and skips the heads this module never runs
    assert edges.layers[0] == f"net.heads.{head.index}" and edges.layers[-1] == "net.trunk.0"
    assert len(edges.layers) == 10  # 4 × (conv, batch norm), the penultimate Linear, one head
    assert not any(name.startswith("net.heads.") for name in edges.layers[1:])

    # the caller's model, its gradients and the global random stream are untouched
    after = head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for p, g in zip(head.parameters(), grads, strict=True):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert torch.equal(rng, torch.get_rng_state())


def test_randomization_is_seeded(head, eval_images, target):
    images, t = eval_images[:3], target[:3]
    a = q.randomization_check(head, saliency, images, t, seed=1)
    b = q.randomization_check(head, saliency, images, t, seed=1)
    c = q.randomization_check(head, saliency, images, t, seed=2)
    assert torch.equal(a.spearman, b.spearman) and torch.equal(a.ssim, b.ssim)
    assert not torch.equal(a.spearman, c.spearman)
    by_ssim = q.randomization_check(head, saliency, images, t, seed=1, similarity="ssim", threshold=0.3)
    assert by_ssim.final_similarity == pytest.approx(float(a.mean_ssim[-1]))
    assert by_ssim.passed == (by_ssim.final_similarity < 0.3)


# ------------------------------------------------------------------------------------------- stability


def test_stability_equals_mean_pairwise_spearman(head, eval_images, target):
    images, t = eval_images[:3], target[:3]
    method = noisy_method(0.5)
    result = q.stability(method, head, images, t, seeds=(0, 1, 2))
    maps = [method(head, images, t, seed=s).sum(dim=1).reshape(3, -1).numpy() for s in (0, 1, 2)]
    for i in range(3):
        pairs = [spearmanr(maps[a][i], maps[b][i]).statistic for a, b in ((0, 1), (0, 2), (1, 2))]
        assert result.spearman[i].item() == pytest.approx(np.mean(pairs), abs=1e-9)
    again = q.stability(method, head, images, t, seeds=(0, 1, 2))
    assert torch.equal(again.spearman, result.spearman)

    # no noise: perfectly stable; noise 10× the map's spread: below the failure bar
    assert q.stability(noisy_method(0.0), head, images, t).mean_spearman == pytest.approx(1.0, abs=1e-12)
    assert q.stability(noisy_method(10.0), head, images, t).mean_spearman < 0.5
    json.dumps(result.to_dict(), allow_nan=False)

    with pytest.raises(ConfigError, match="distinct"):
        q.stability(method, head, images, t, seeds=(0, 0))
    with pytest.raises(ConfigError, match="seed"):
        q.stability(sobel, head, images, t)  # a deterministic function takes no seed


# ---------------------------------------------------------------------------------------------- verdict


def _curve(scores: list[list[float]]) -> q.Curve:
    s = torch.tensor(scores, dtype=torch.float64)
    fractions = torch.linspace(0, 1, s.shape[1], dtype=torch.float64)
    auc = torch.trapezoid(s, fractions, dim=1)
    return q.Curve("deletion", fractions, s, auc, float(auc.mean()), "black", "probability")


def _randomization(final: float) -> q.RandomizationResult:
    v = torch.tensor([final], dtype=torch.float64)
    return q.RandomizationResult(["layer"], v[None], v[None], v, v, "spearman", final, 0.5, final < 0.5)


def _stability(value: float) -> q.StabilityResult:
    v = torch.tensor([value], dtype=torch.float64)
    return q.StabilityResult((0, 1), v, v, value, value)


CHANCE = _curve([[1.0, 0.8, 0.6, 0.2]])  # AUC 0.6


@pytest.mark.parametrize(
    ("deletion", "randomization", "stability", "status"),
    [
        ([[1.0, 0.2, 0.1, 0.2]], 0.1, None, "trustworthy"),  # ratio 0.3
        ([[1.0, 0.2, 0.1, 0.2]], 0.1, 0.9, "trustworthy"),
        ([[1.0, 0.2, 0.1, 0.2]], 0.1, 0.7, "questionable"),
        ([[1.0, 0.2, 0.1, 0.2]], 0.1, 0.3, "failed"),
        ([[1.0, 0.2, 0.1, 0.2]], 0.9, None, "failed"),  # maps survive randomization
        ([[1.0, 0.8, 0.5, 0.2]], 0.1, None, "questionable"),  # ratio 0.95: within chance
        ([[1.0, 0.9, 0.8, 0.2]], 0.1, None, "failed"),  # ratio 1.117: slower than chance
    ],
)
def test_verdict_rules(deletion, randomization, stability, status):
    v = q.verdict(
        "m",
        randomization=_randomization(randomization),
        deletion=_curve(deletion),
        random_deletion=CHANCE,
        stability=None if stability is None else _stability(stability),
    )
    assert v.status == status, v.reasons
    assert (v.reasons == []) == (status == "trustworthy")
    json.dumps(v.to_dict(), allow_nan=False)


def test_verdict_edge_cases():
    good = {"randomization": _randomization(0.1), "deletion": _curve([[1.0, 0.2, 0.1, 0.2]])}
    assert q.verdict("m", **good).status == "questionable"  # no random reference: deletion not judged
    assert q.verdict("m", deletion=good["deletion"], random_deletion=CHANCE).status == "questionable"
    flat = _curve([[0.99, 0.98, 0.97, 0.96]])  # the baseline keeps the evidence: uninformative
    v = q.verdict("m", randomization=_randomization(0.1), deletion=flat, random_deletion=flat)
    assert v.status == "questionable" and "uninformative" in v.reasons[0]
    nan = torch.full((1, 1, 4, 4), float("nan"))
    v = q.verdict("m", attributions=nan, **good, random_deletion=CHANCE)
    assert v.status == "failed" and "NaN" in v.reasons[0]
    # a stricter randomization bar given to the verdict overrides the one the check ran with
    strict = q.verdict("m", **good, random_deletion=CHANCE, thresholds={"randomization_max_similarity": 0.05})
    assert strict.status == "failed"
    with pytest.raises(ConfigError, match="unknown threshold"):
        q.verdict("m", thresholds={"nope": 1.0})
    with pytest.raises(ConfigError, match="computed differently"):
        q.verdict("m", deletion=good["deletion"], random_deletion=_curve([[1.0, 0.5, 0.2]]))


def test_assess_on_the_trained_judge(head, eval_images, target):
    ig = q.assess("integrated_gradients", integrated_gradients, head, eval_images, target, steps=10)
    assert ig.status == "trustworthy", ig.reasons
    assert set(ig.details) == {"deletion", "random_deletion", "faithfulness", "randomization"}
    json.dumps(ig.to_dict(), allow_nan=False)
    edges = q.assess("sobel", sobel, head, eval_images, target, steps=10)
    assert edges.status == "failed" and any("randomised" in r for r in edges.reasons)

    def broken(model, images, target):
        return torch.full(images.shape, float("nan"))

    v = q.assess("broken", broken, head, eval_images, target)
    assert v.status == "failed" and "NaN" in v.reasons[0]


# --------------------------------------------------------------------------------------- bad inputs


def test_non_finite_attributions_raise(head, eval_images, target):
    maps = torch.zeros(8, 1, 32, 32)
    maps[3, 0, 5, 5] = float("nan")
    with pytest.raises(ExplainError, match="NaN or infinite.*1 of 8"):
        q.deletion_curve(head, eval_images, maps, target)
    infinite = torch.zeros(8, 3, 32, 32)
    infinite[0, 1, 2, 3] = float("inf")
    with pytest.raises(ExplainError, match="NaN or infinite"):
        q.faithfulness_correlation(head, eval_images, infinite, target)
    with pytest.raises(ExplainError, match="attributions a"):
        q.agreement(maps, torch.zeros_like(maps))

    def broken(model, images, target):
        return torch.full(images.shape, float("inf"))

    with pytest.raises(ExplainError, match="'broken'.*unchanged model"):
        q.randomization_check(head, broken, eval_images[:2], target[:2])


def test_bad_shapes_and_options_raise(head, eval_images, target):
    maps = torch.rand(8, 1, 32, 32)
    bad_maps = [
        torch.rand(7, 1, 32, 32),
        torch.rand(8, 1, 16, 32),
        torch.rand(8, 2, 32, 32),
        torch.rand(8, 32, 32),
    ]
    for bad in bad_maps:
        with pytest.raises(DataError, match="attributions"):
            q.deletion_curve(head, eval_images, bad, target)
    with pytest.raises(DataError, match="images"):
        q.deletion_curve(head, eval_images[0], maps[0], target)
    with pytest.raises(DataError, match="one class index per image"):
        q.deletion_curve(head, eval_images, maps, target[:3])
    with pytest.raises(ExplainError, match="outside 0..2"):
        q.deletion_curve(head, eval_images, maps, 7)
    with pytest.raises(DataError, match="baseline tensor"):
        q.deletion_curve(head, eval_images, maps, target, baseline=torch.zeros(3, 8, 8))
    with pytest.raises(ConfigError, match="baseline"):
        q.insertion_curve(head, eval_images, maps, target, baseline="white")
    with pytest.raises(ConfigError, match="steps"):
        q.deletion_curve(head, eval_images, maps, target, steps=0)
    with pytest.raises(ConfigError, match="score"):
        q.deletion_curve(head, eval_images, maps, target, score="accuracy")
    with pytest.raises(ConfigError, match="subset_size"):
        q.faithfulness_correlation(head, eval_images, maps, target, subset_size=1024)
    with pytest.raises(ConfigError, match="n_perturbations"):
        q.faithfulness_correlation(head, eval_images, maps, target, n_perturbations=1)
    with pytest.raises(ConfigError, match="k must"):
        q.agreement(maps, maps, k=0)
    with pytest.raises(DataError, match="different images"):
        q.agreement(maps, maps[:4])
    with pytest.raises(ConfigError, match="similarity"):
        q.randomization_check(head, sobel, eval_images, target, similarity="cosine")
