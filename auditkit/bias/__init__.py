"""Bias auditing: the judge classifier that reads attributes of images, and its measured error."""

from auditkit.bias.judge import Judge, JudgeReport, holdout_split, load_judge, train_judge

__all__ = ["Judge", "JudgeReport", "holdout_split", "load_judge", "train_judge"]
