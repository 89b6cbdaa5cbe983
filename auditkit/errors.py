"""The errors users can cause.

Every error a user can provoke (bad input, bad config, missing weights, a damaged store) is an
``AuditKitError``. Its message says what was wrong, with which input, and what to do about it; the CLI
prints that message without a traceback and exits with status 2.
"""

from __future__ import annotations


class AuditKitError(Exception):
    """Base class of every error a user can cause; the message names the input and the fix."""


class DataError(AuditKitError):
    """An image, label file or data set is unreadable, inconsistent or out of range."""


class ConfigError(AuditKitError):
    """A configuration value (skew spec, option, CLI argument) is invalid."""


class WeightsError(AuditKitError):
    """Model weights are missing, have the wrong hash or the wrong keys."""


class StoreError(AuditKitError):
    """The run store is missing, damaged, locked or from a newer auditkit."""


class GeneratorError(AuditKitError):
    """A generator produced unusable output (NaN, infinities, wrong shape)."""


class TrainingError(AuditKitError):
    """Training diverged (a loss became NaN or infinite) or cannot continue."""


class ExplainError(AuditKitError):
    """An attribution cannot be computed as asked (a non-differentiable model, NaN maps, a bad target)."""


__all__ = [
    "AuditKitError",
    "ConfigError",
    "DataError",
    "ExplainError",
    "GeneratorError",
    "StoreError",
    "TrainingError",
    "WeightsError",
]
