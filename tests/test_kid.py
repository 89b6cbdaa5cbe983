"""KID against torchmetrics, torch-fidelity and a NumPy transcription of the unbiased MMD² formula.

Tolerances: 1e-9 relative everywhere (all references compute in float64 here; the brief's bound is 1e-6).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric
from torchmetrics.image.kid import KernelInceptionDistance

from auditkit import ConfigError, DataError
from auditkit.metrics import kid as kid_module
from auditkit.metrics.kid import kernel_inception_distance, polynomial_mmd2

pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")


def numpy_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef: float = 1.0):
    """Unbiased MMD² written from the definition: means of k over i ≠ j within, over all pairs between."""
    m = len(x)
    gamma = 1.0 / x.shape[1] if gamma is None else gamma

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (gamma * a @ b.T + coef) ** degree

    off = ~np.eye(m, dtype=bool)
    return float(k(x, x)[off].mean() + k(y, y)[off].mean() - 2 * k(x, y).mean())


class Lookup(torch.nn.Module):
    """A 'feature extractor' for torchmetrics that returns precomputed features: image i → row i."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", features)

    def forward(self, index_images: torch.Tensor) -> torch.Tensor:
        return self.table[index_images[:, 0, 0, 0].long()]


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    # Non-negative like Inception pool features, with different spreads so KID is clearly non-zero.
    return np.abs(rng.standard_normal((300, 64))), np.abs(rng.standard_normal((260, 64)) * 1.2 + 0.1)


def torchmetrics_kid(real: np.ndarray, fake: np.ndarray, **options) -> tuple[float, float]:
    table = torch.from_numpy(np.concatenate([real, fake]))
    metric = KernelInceptionDistance(feature=Lookup(table), **options)
    ids = torch.arange(len(table), dtype=torch.float64)[:, None, None, None]
    metric.update(ids[: len(real)], real=True)
    metric.update(ids[len(real) :], real=False)
    mean, std = metric.compute()
    return float(mean), float(std)


def test_whole_sets_equal_torchmetrics_torch_fidelity_and_numpy(features) -> None:
    real, fake = features[0][:250], features[1][:250]
    mean, std = kernel_inception_distance(real, fake, subsets=1, subset_size=250)
    assert mean > 1e-3 and std == 0.0
    # subset_size = n: every draw is a permutation of the whole set, which MMD² does not see.
    assert mean == pytest.approx(torchmetrics_kid(real, fake, subsets=1, subset_size=250)[0], rel=1e-9)
    tf = kid_features_to_metric(
        torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=1, kid_subset_size=250, verbose=False
    )
    assert mean == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-9)
    assert mean == pytest.approx(numpy_mmd2(real, fake), rel=1e-9)
    assert polynomial_mmd2(real, fake) == pytest.approx(mean, rel=1e-12)


def test_random_subsets_equal_numpy_on_the_same_draws(features) -> None:
    real, fake = features
    mean, std = kernel_inception_distance(real, fake, subsets=9, subset_size=40, seed=11)
    # The documented draw: per subset a randperm of the real set, then of the fake set, one generator.
    generator = torch.Generator().manual_seed(11)
    values = []
    for _ in range(9):
        ri = torch.randperm(len(real), generator=generator)[:40].numpy()
        fi = torch.randperm(len(fake), generator=generator)[:40].numpy()
        values.append(numpy_mmd2(real[ri], fake[fi]))
    assert mean == pytest.approx(np.mean(values), rel=1e-9)
    assert std == pytest.approx(np.std(values), rel=1e-9)


def test_random_subsets_equal_torchmetrics_under_the_same_seed(features) -> None:
    real, fake = features
    torch.manual_seed(123)  # torchmetrics draws from the global generator
    tm_mean, tm_std = torchmetrics_kid(real, fake, subsets=7, subset_size=50)
    mean, std = kernel_inception_distance(real, fake, subsets=7, subset_size=50, seed=123)
    assert mean == pytest.approx(tm_mean, rel=1e-9) and std == pytest.approx(tm_std, rel=1e-9)


def test_kernel_options_equal_numpy(features) -> None:
    real, fake = features[0][:60], features[1][:60]
    mean, _ = kernel_inception_distance(real, fake, subsets=1, subset_size=60, degree=2, gamma=0.5, coef=0.3)
    assert mean == pytest.approx(numpy_mmd2(real, fake, degree=2, gamma=0.5, coef=0.3), rel=1e-9)


def test_batching_does_not_change_the_numbers(features, monkeypatch: pytest.MonkeyPatch) -> None:
    real, fake = features
    whole = kernel_inception_distance(real, fake, subsets=6, subset_size=30, seed=3)
    monkeypatch.setattr(kid_module, "_BATCH_BYTES", 1)  # one subset per batch
    one_by_one = kernel_inception_distance(real, fake, subsets=6, subset_size=30, seed=3)
    assert one_by_one == pytest.approx(whole, rel=1e-12)
    assert kernel_inception_distance(torch.from_numpy(real).float(), fake, 6, 30, seed=3) == pytest.approx(
        kernel_inception_distance(real.astype(np.float32), fake, 6, 30, seed=3), rel=1e-12
    )


def test_same_seed_same_numbers_other_seed_other_subsets(features) -> None:
    real, fake = features
    a = kernel_inception_distance(real, fake, subsets=5, subset_size=20, seed=1)
    assert kernel_inception_distance(real, fake, subsets=5, subset_size=20, seed=1) == a
    assert kernel_inception_distance(real, fake, subsets=5, subset_size=20, seed=2) != a


def test_errors_name_the_input_and_the_fix(features) -> None:
    real, fake = features
    with pytest.raises(
        ConfigError, match=r"subset_size 1000 exceeds .*real 300, fake 260.*lower subset_size"
    ):
        kernel_inception_distance(real, fake)
    with pytest.raises(ConfigError, match="subsets must be"):
        kernel_inception_distance(real, fake, subsets=0, subset_size=10)
    with pytest.raises(ConfigError, match="subset_size must be"):
        kernel_inception_distance(real, fake, subset_size=1)
    with pytest.raises(DataError, match="differ in dimension: 64 vs 10"):
        kernel_inception_distance(real, fake[:, :10], subset_size=10)
    with pytest.raises(DataError, match="real features contain NaN"):
        kernel_inception_distance(real * np.nan, fake, subset_size=10)
    with pytest.raises(DataError, match="fake features must be an N×D"):
        kernel_inception_distance(real, fake[0], subset_size=10)


def test_subset_average_agrees_with_torch_fidelity_in_expectation(features) -> None:
    # torch-fidelity draws its subsets with NumPy, so only the averages agree, within Monte-Carlo error.
    real, fake = features
    mean, std = kernel_inception_distance(real, fake, subsets=200, subset_size=50)
    ref = kid_features_to_metric(
        torch.as_tensor(real), torch.as_tensor(fake), kid_subsets=200, kid_subset_size=50, verbose=False
    )
    assert abs(mean - ref["kernel_inception_distance_mean"]) < 5 * std / np.sqrt(200)
