"""Representation metrics against scipy and hand computations; references and their validation.

Tolerances: KL against ``scipy.stats.entropy`` and JS against ``scipy.spatial.distance.jensenshannon``
squared to 1e-12 absolute (different summation order); TVD, MAD and ratios against hand formulas written
differently here (TVD = 1 − Σ min(p, r); ratios by an explicit loop) to 1e-12.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.stats
import torch
from scipy.spatial.distance import jensenshannon

from auditkit.bias.representation import (
    FOUR_FIFTHS,
    Reference,
    bias_amplification,
    intersection_labels,
    intersection_values,
    label_counts,
    representation_gap,
    shares,
)
from auditkit.errors import ConfigError, DataError


def random_pairs(seed: int, count: int = 50) -> list[tuple[np.ndarray, np.ndarray]]:
    """Share vectors of 2–8 values, some with zeros in either vector."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        k = int(rng.integers(2, 9))
        p, r = rng.dirichlet(np.full(k, 0.7)), rng.dirichlet(np.full(k, 0.7))
        if i % 3 == 1:  # a value never generated
            p[rng.integers(k)] = 0.0
            p /= p.sum()
        pairs.append((p, r))
    return pairs


# ------------------------------------------------------------------------------------------ the metrics


def test_metrics_against_scipy_and_hand_formulas() -> None:
    for p, r in random_pairs(0):
        gap = representation_gap(p, r)
        assert gap.tvd == pytest.approx(1.0 - np.minimum(p, r).sum(), abs=1e-12)
        assert gap.kl == pytest.approx(scipy.stats.entropy(p, r, base=2), abs=1e-12)
        assert gap.js == pytest.approx(jensenshannon(p, r, base=2) ** 2, abs=1e-12)
        assert 0.0 <= gap.js <= 1.0
        assert gap.mad == pytest.approx(
            sum(abs(a - b) for a, b in zip(p, r, strict=True)) / len(p), abs=1e-12
        )
        ratios = [a / b for a, b in zip(p, r, strict=True)]
        assert gap.ratios == pytest.approx(ratios, abs=1e-12)
        assert gap.min_ratio == pytest.approx(min(ratios)) and gap.max_ratio == pytest.approx(max(ratios))
        assert gap.ratios[gap.least] == gap.min_ratio and gap.ratios[gap.most] == gap.max_ratio
        assert gap.ratio == pytest.approx(min(ratios) / max(ratios), abs=1e-12)
        assert gap.below_four_fifths == (gap.ratio < FOUR_FIFTHS)


def test_identical_shares_have_no_gap() -> None:
    r = np.array([0.5, 0.3, 0.2])
    gap = representation_gap(r, Reference.explicit({"a": 0.5, "b": 0.3, "c": 0.2}, source="test"))
    assert (
        gap.tvd == 0.0 and gap.kl == pytest.approx(0.0, abs=1e-15) and gap.js == pytest.approx(0, abs=1e-15)
    )
    assert gap.ratio == pytest.approx(1.0) and not gap.below_four_fifths


def test_four_fifths_rule_example() -> None:
    # 40 % vs 60 % against parity: 0.8 and 1.2 of the reference; 0.8 / 1.2 = 2/3 < 0.8 flags
    gap = representation_gap([0.4, 0.6], Reference.uniform(["f", "m"]))
    assert gap.ratio == pytest.approx(2 / 3) and gap.below_four_fifths
    assert (gap.least, gap.most) == (0, 1)
    # 45 % vs 55 %: 0.9 / 1.1 = 0.818 passes
    assert not representation_gap([0.45, 0.55], [0.5, 0.5]).below_four_fifths


def test_zero_reference_share() -> None:
    # the reference rules out value 2, the generator produced it: KL is infinite, JS finite, and the
    # ratio uses only the values the reference expects
    gap = representation_gap([0.4, 0.4, 0.2], [0.5, 0.5, 0.0])
    assert gap.kl == np.inf == scipy.stats.entropy([0.4, 0.4, 0.2], [0.5, 0.5, 0.0])
    assert gap.js == pytest.approx(jensenshannon([0.4, 0.4, 0.2], [0.5, 0.5, 0.0], base=2) ** 2, abs=1e-12)
    assert gap.ratio == pytest.approx(1.0) and np.isnan(gap.ratios[2])
    d = gap.to_dict()
    assert d["kl"] is None and d["ratios"][2] is None
    json.dumps(d, allow_nan=False)  # JSON-safe
    # nothing the reference expects was generated: the ratio is 0, not undefined
    assert representation_gap([0.0, 0.0, 1.0], [0.5, 0.5, 0.0]).ratio == 0.0


def test_gap_input_errors() -> None:
    with pytest.raises(ConfigError, match="same attribute"):
        representation_gap([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(DataError, match="sum to 0.9"):
        representation_gap([0.5, 0.4], [0.5, 0.5])
    with pytest.raises(ConfigError, match="non-negative"):
        representation_gap([0.5, 0.5], [1.5, -0.5])


# ------------------------------------------------------------------------------------------ references


def test_reference_constructors() -> None:
    u = Reference.uniform(["r", "g", "b", "y"])
    assert u.kind == "uniform" and u.shares == (0.25,) * 4 and u.source
    t = Reference.from_counts(["r", "g"], np.array([30, 10]), source="Shapes(40, seed=0)")
    assert t.kind == "training" and t.shares == (0.75, 0.25) and t.n == 40
    e = Reference.explicit({"b": 0.2, "a": 0.8}, source="census 2021", values=["a", "b"])
    assert e.values == ("a", "b") and e.shares == (0.8, 0.2) and e.kind == "explicit"
    np.testing.assert_array_equal(e.aligned(["b", "a"]), [0.2, 0.8])
    # rounded percentages are accepted and renormalised
    third = Reference.explicit({"x": 0.333, "y": 0.333, "z": 0.333}, source="survey")
    assert sum(third.shares) == pytest.approx(1.0, abs=1e-15) and third.shares[0] == pytest.approx(1 / 3)
    for ref in (u, t, e):
        d = ref.to_dict()
        assert Reference.from_dict(json.loads(json.dumps(d, allow_nan=False))) == ref


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Reference.explicit({"a": 0.5, "b": 0.4}, source="s"), "sum to 0.9.*value left out"),
        (lambda: Reference.explicit({"a": 1.2, "b": -0.2}, source="s"), "non-negative"),
        (lambda: Reference.explicit({"a": 0.5, "b": 0.5}, source=""), "non-empty source"),
        (lambda: Reference.explicit({"a": 0.5, "c": 0.5}, source="s", values=["a", "b"]), r"missing \['b'\]"),
        (lambda: Reference.explicit({"a": 0.5, "c": 0.5}, source="s", values=["a", "b"]), r"unknown \['c'\]"),
        (lambda: Reference.explicit({}, source="s"), "non-empty mapping"),
        (lambda: Reference.explicit({"a": "half", "b": 0.5}, source="s"), "numbers"),
        (lambda: Reference.from_counts(["a", "b"], [0, 0], source="s"), "all zero"),
        (lambda: Reference.from_counts(["a", "b"], [1, 2, 3], source="s"), "one number per value"),
        (lambda: Reference.from_counts(["a", "b"], [1.5, 2], source="s"), "whole numbers"),
        (lambda: Reference.uniform(["a", "a"]), r"\['a'\] more than once"),
        (lambda: Reference.uniform("abc"), "list of value names"),
        (lambda: Reference.uniform([]), "at least one"),
        (lambda: Reference(("a",), (1.0,), "s", "census"), "kind must be"),
        (lambda: Reference.from_dict({"kind": "uniform"}), "kind, source, values and shares"),
    ],
)
def test_reference_errors(build, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_aligned_needs_the_same_names() -> None:
    ref = Reference.uniform(["red", "green"])
    with pytest.raises(ConfigError, match="build the reference over the attribute's own values"):
        ref.aligned(["red", "blue"])


# -------------------------------------------------------------------------------------------- counting


def test_shares_and_counts() -> None:
    labels = np.random.default_rng(3).integers(0, 4, 500)
    values, counts = np.unique(labels, return_counts=True)
    expected = np.zeros(5, dtype=np.int64)
    expected[values] = counts
    np.testing.assert_array_equal(label_counts(labels, 5), expected)  # value 4 never occurs
    np.testing.assert_allclose(shares(torch.from_numpy(labels), 5), expected / 500, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        (np.array([], dtype=np.int64), DataError, "empty sample"),
        (np.array([0, 3]), DataError, r"0…2"),
        (np.array([0, -1]), DataError, r"0…2"),
        (np.array([0.0, 1.0]), DataError, "integer"),
        (np.zeros((2, 2), dtype=np.int64), DataError, "1-D"),
    ],
)
def test_shares_errors(labels: np.ndarray, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        shares(labels, 3)


def test_intersections_are_row_major_and_named_in_order() -> None:
    rng = np.random.default_rng(4)
    sizes = (2, 3, 4)
    labels = np.stack([rng.integers(0, s, 200) for s in sizes], axis=1)
    joint = intersection_labels(labels, sizes)
    np.testing.assert_array_equal(joint, [a * 12 + b * 4 + c for a, b, c in labels])
    attrs = {"size": ["s", "l"], "colour": ["r", "g", "b"], "shape": ["o", "x", "t", "q"]}
    names = intersection_values(attrs)
    expected = [f"size={a}, colour={b}, shape={c}" for a, b, c in itertools.product(*attrs.values())]
    assert list(names) == expected
    a, b, c = labels[7]
    assert (
        names[joint[7]] == f"size={attrs['size'][a]}, colour={attrs['colour'][b]}, shape={attrs['shape'][c]}"
    )
    # a training reference over the intersection, from the joint counts
    ref = Reference.from_counts(names, label_counts(joint, 24), source="training labels")
    np.testing.assert_allclose(ref.array(), np.bincount(joint, minlength=24) / 200)
    with pytest.raises(DataError, match="column 1"):
        intersection_labels(np.array([[0, 3, 0]]), sizes)
    with pytest.raises(DataError, match="A = 3"):
        intersection_labels(labels[:, :2], sizes)


# ---------------------------------------------------------------------------------- bias amplification


def test_bias_amplification_definitions() -> None:
    parity = Reference.uniform(["a", "b"])
    amp = bias_amplification([0.8, 0.2], [0.7, 0.3], parity)  # data leans to a, generator leans further
    assert amp.training_tvd == pytest.approx(0.2) and amp.generated_tvd == pytest.approx(0.3)
    assert amp.difference == pytest.approx(0.1) and amp.directional == pytest.approx(0.1)
    assert amp.generated_ratio == pytest.approx(0.25) and amp.training_ratio == pytest.approx(3 / 7)
    flipped = bias_amplification([0.3, 0.7], [0.7, 0.3], parity)  # same disparity, opposite direction
    assert flipped.difference == pytest.approx(0.0, abs=1e-15) and flipped.directional == pytest.approx(-0.4)
    same = bias_amplification([0.7, 0.3], [0.7, 0.3], parity)
    assert same.difference == 0.0 and same.directional == 0.0
    json.dumps(amp.to_dict(), allow_nan=False)
    # k·directional / 2 ≤ difference: the directional view never claims more amplification than the TVDs
    rng = np.random.default_rng(5)
    for _ in range(200):
        k = int(rng.integers(2, 7))
        g, t, r = (rng.dirichlet(np.ones(k)) for _ in range(3))
        a = bias_amplification(g, t, r)
        assert k * a.directional / 2 <= a.difference + 1e-12
    with pytest.raises(ConfigError, match="same values"):
        bias_amplification([0.5, 0.5], [0.5, 0.5], [1 / 3] * 3)
