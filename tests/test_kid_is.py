"""KID and Inception Score against torchmetrics, torch-fidelity and NumPy/SciPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from scipy.stats import entropy
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from auditkit import ConfigError, DataError
from auditkit.metrics.inception_score import inception_score
from auditkit.metrics.kid import kernel_inception_distance


def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (a·b / d + 1)³, written from the definition."""
    d, m = x.shape[1], x.shape[0]

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / d + 1.0) ** 3

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, 64)), rng.standard_normal((260, 64)) * 1.1 + 0.1


def test_kid_whole_set_equals_numpy_definition(features) -> None:
    real, fake = features
    mean, std = kernel_inception_distance(real[:200], fake[:200], subsets=1, subset_size=200)
    assert mean == pytest.approx(numpy_mmd2(real[:200], fake[:200]), rel=1e-10)
    assert std == 0.0


def test_kid_equals_torchmetrics_under_the_same_seed(features) -> None:
    real, fake = (torch.from_numpy(f) for f in features)
    metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=7, subset_size=50).double()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(123)
    tm_mean, tm_std = (float(v) for v in metric.compute())
    mean, std = kernel_inception_distance(real, fake, subsets=7, subset_size=50, seed=123)
    assert mean == pytest.approx(tm_mean, rel=1e-9) and std == pytest.approx(tm_std, rel=1e-9)


def test_kid_subset_average_agrees_with_torch_fidelity_in_expectation(features) -> None:
    # torch-fidelity draws subsets with NumPy; the estimators agree up to Monte-Carlo error.
    real, fake = features
    ours, ours_std = kernel_inception_distance(real, fake, subsets=200, subset_size=100)
    ref = kid_features_to_metric(
        torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=200, kid_subset_size=100, verbose=False
    )
    se = ours_std / np.sqrt(200)
    assert abs(ours - ref["kernel_inception_distance_mean"]) < 5 * se


def test_kid_errors(features) -> None:
    real, fake = features
    with pytest.raises(ConfigError, match="subset_size 1000 exceeds"):
        kernel_inception_distance(real, fake)
    with pytest.raises(DataError, match="differ in dimension"):
        kernel_inception_distance(real, fake[:, :10], subset_size=10)
    with pytest.raises(DataError, match="NaN"):
        kernel_inception_distance(real * np.nan, fake, subset_size=10)


@pytest.fixture(scope="module")
def logits() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.standard_normal((500, 1008)) * 3


def test_is_equals_numpy_scipy_reference(logits) -> None:
    mean, std = inception_score(logits, splits=10)
    p = softmax(logits, axis=1)
    scores = []
    for part in np.array_split(p, 10):  # 500 / 10: the same groups as i·N//splits
        scores.append(np.exp(np.mean([entropy(row, part.mean(0)) for row in part])))
    assert mean == pytest.approx(np.mean(scores), rel=1e-9)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_is_equals_torch_fidelity(logits) -> None:
    n = 497  # not divisible by the split count: the group boundaries must agree too
    ref = isc_features_to_metric(torch.from_numpy(logits[:n]), splits=10, shuffle=False)
    mean, std = inception_score(logits[:n], splits=10)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-9)


def test_is_equals_torchmetrics_under_the_same_shuffle(logits) -> None:
    metric = InceptionScore(feature=torch.nn.Identity(), splits=10).double()
    metric.update(torch.from_numpy(logits))
    torch.manual_seed(7)
    tm_mean, tm_std = (float(v) for v in metric.compute())
    mean, std = inception_score(logits, splits=10, shuffle=True, seed=7)
    assert mean == pytest.approx(tm_mean, rel=1e-9)
    # torchmetrics reports the sample standard deviation over the 10 splits.
    assert std * np.sqrt(10 / 9) == pytest.approx(tm_std, rel=1e-9)


def test_is_errors(logits) -> None:
    with pytest.raises(ConfigError, match="splits"):
        inception_score(logits[:5], splits=10)
    with pytest.raises(DataError, match="N×K"):
        inception_score(logits[0])
