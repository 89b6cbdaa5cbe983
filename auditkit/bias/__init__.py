"""Bias auditing: the judge classifier that reads attributes of images, its measured error, representation
metrics against a cited reference, judge-error-corrected shares with bootstrap intervals, and the tests."""

from auditkit.bias.correction import CorrectedShares, bootstrap_shares, correct_shares, joint_confusion
from auditkit.bias.judge import Judge, JudgeReport, holdout_split, load_judge, train_judge
from auditkit.bias.representation import (
    FOUR_FIFTHS,
    BiasAmplification,
    Reference,
    RepresentationGap,
    bias_amplification,
    intersection_labels,
    intersection_values,
    label_counts,
    representation_gap,
    shares,
)
from auditkit.bias.stats import (
    BHResult,
    GoodnessOfFit,
    PowerCheck,
    benjamini_hochberg,
    cohens_w,
    goodness_of_fit,
    independence_test,
    power_warning,
    required_n,
)

__all__ = [
    "FOUR_FIFTHS",
    "BHResult",
    "BiasAmplification",
    "CorrectedShares",
    "GoodnessOfFit",
    "Judge",
    "JudgeReport",
    "PowerCheck",
    "Reference",
    "RepresentationGap",
    "benjamini_hochberg",
    "bias_amplification",
    "bootstrap_shares",
    "cohens_w",
    "correct_shares",
    "goodness_of_fit",
    "holdout_split",
    "independence_test",
    "intersection_labels",
    "intersection_values",
    "joint_confusion",
    "label_counts",
    "load_judge",
    "power_warning",
    "representation_gap",
    "required_n",
    "shares",
    "train_judge",
]
