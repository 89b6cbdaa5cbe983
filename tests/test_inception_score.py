"""Inception Score against torchmetrics, torch-fidelity, a SciPy reference and closed forms.

Tolerances: 1e-9 relative against every reference (all compute in float64 here; the brief's bound is 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy
from torch_fidelity.metric_isc import isc_features_to_metric
from torchmetrics.image.inception import InceptionScore

from auditkit import ConfigError, DataError
from auditkit.metrics.inception_score import inception_score

pytestmark = pytest.mark.filterwarnings("ignore:Metric `InceptionScore` will save all extracted features")


def scipy_inception_score(logits: np.ndarray, splits: int, ddof: int = 0) -> tuple[float, float]:
    """exp(mean KL(p(y|x) ‖ p(y))) per split [i·N//splits, (i+1)·N//splits), with scipy's softmax and KL."""
    p, n = softmax(logits, axis=1), len(logits)
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([entropy(row, marginal) for row in part])))
    return float(np.mean(scores)), float(np.std(scores, ddof=ddof))


class Lookup(torch.nn.Module):
    """A 'feature extractor' for torchmetrics that returns precomputed logits: image i → row i."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, index_images: torch.Tensor) -> torch.Tensor:
        return self.table[index_images[:, 0, 0, 0].long()]


@pytest.fixture(scope="module")
def logits() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.standard_normal((500, 1008)) * 3  # 1008-way, like Inception's logits_unbiased


@pytest.mark.parametrize(("n", "splits"), [(500, 10), (497, 10), (90, 7), (40, 1)])
def test_equals_the_scipy_reference(logits, n: int, splits: int) -> None:
    mean, std = inception_score(logits[:n], splits=splits)
    ref_mean, ref_std = scipy_inception_score(logits[:n], splits)
    assert mean == pytest.approx(ref_mean, rel=1e-9)
    assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)


def test_equals_torchmetrics_under_the_same_shuffle(logits) -> None:
    table = torch.from_numpy(logits)
    metric = InceptionScore(feature=Lookup(table), splits=10)
    metric.update(torch.arange(len(table), dtype=torch.float64)[:, None, None, None])
    torch.manual_seed(7)  # torchmetrics always shuffles, from the global generator
    tm_mean, tm_std = (float(v) for v in metric.compute())
    mean, std = inception_score(logits, splits=10, shuffle=True, seed=7, ddof=1)
    assert mean == pytest.approx(tm_mean, rel=1e-9)
    assert std == pytest.approx(tm_std, rel=1e-9)
    # The default spread is the population one: torchmetrics' times sqrt((k−1)/k).
    assert inception_score(logits, splits=10, shuffle=True, seed=7)[1] == pytest.approx(
        tm_std * np.sqrt(9 / 10), rel=1e-9
    )


def test_equals_torch_fidelity_with_uneven_splits(logits) -> None:
    n = 497  # not divisible by 10: the group boundaries must agree too
    ref = isc_features_to_metric(torch.from_numpy(logits[:n]), splits=10, shuffle=False)
    mean, std = inception_score(logits[:n], splits=10)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-9)


def test_closed_forms() -> None:
    # Identical predictions: p(y|x) = p(y), KL 0, score 1. Confident and evenly spread over K classes: K.
    assert inception_score(np.zeros((60, 1008)), splits=3) == pytest.approx((1.0, 0.0), abs=1e-12)
    confident = np.full((80, 8), -50.0)
    confident[np.arange(80), np.arange(80) % 8] = 50.0
    mean, std = inception_score(confident, splits=2)
    assert mean == pytest.approx(8.0, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_a_class_no_sample_predicts_does_not_give_nan() -> None:
    # exp(-1e4) underflows to 0, so the marginal of class 0 is exactly 0; log-sum-exp keeps it finite,
    # where p·(log p − log 0) would be 0·∞. scipy.stats.entropy treats 0·log 0 as 0.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 20))
    x[:, 0] = -1e4
    mean, std = inception_score(x, splits=5)
    ref = scipy_inception_score(x, 5)
    assert (
        np.isfinite(mean)
        and mean == pytest.approx(ref[0], rel=1e-9)
        and std == pytest.approx(ref[1], rel=1e-9)
    )


def test_shuffle_is_deterministic_by_seed_and_torch_input_works(logits) -> None:
    a = inception_score(logits, shuffle=True, seed=3)
    assert inception_score(torch.from_numpy(logits), shuffle=True, seed=3) == pytest.approx(a, rel=1e-12)
    assert inception_score(logits, shuffle=True, seed=4) != a


def test_errors_name_the_input(logits) -> None:
    with pytest.raises(
        ConfigError, match=r"splits must be an integer between 1 and the number of samples \(5\)"
    ):
        inception_score(logits[:5], splits=10)
    with pytest.raises(ConfigError, match="ddof"):
        inception_score(logits, ddof=2)
    with pytest.raises(DataError, match="N×K"):
        inception_score(logits[0])
    with pytest.raises(DataError, match="NaN"):
        inception_score(logits * np.nan)
