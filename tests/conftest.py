"""Fixtures shared across test modules.

``trained_judge`` is a real judge trained on 3 000 Shapes images (6 epochs, width 8, about 4 s on 2 CPU
cores, shape ≈ 0.99 and the other attributes 1.0 held-out accuracy): the explanation tests need a model that
has learned something, so that sanity checks can tell a faithful method from one that ignores the model.
"""

from __future__ import annotations

import pytest
import torch

from auditkit.bias import Judge, train_judge
from auditkit.data import Shapes


@pytest.fixture(scope="session")
def judge_data() -> Shapes:
    return Shapes(3000, seed=1)


@pytest.fixture(scope="session")
def trained_judge(judge_data: Shapes) -> Judge:
    judge = train_judge(judge_data, epochs=6, width=8, seed=0, progress=False)
    # a judge that failed to learn would void every test that uses it
    assert judge.report.accuracy["shape"] > 0.9, judge.report.accuracy
    return judge


@pytest.fixture(scope="session")
def eval_images(judge_data: Shapes) -> torch.Tensor:
    """Eight held-apart Shapes images (a different seed from the judge's training data)."""
    return Shapes(8, seed=99).images
