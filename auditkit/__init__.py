"""auditkit: train and run image generators, and audit them.

Images cross module boundaries as ``torch.float32`` in ``[0, 1]``, shape ``N×C×H×W``.

The public names below are imported on first use (PEP 562), so ``import auditkit``, the CLI's ``--help`` and
store-only tools do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from auditkit.errors import (
    AuditKitError,
    ConfigError,
    DataError,
    ExplainError,
    GeneratorError,
    StoreError,
    TrainingError,
    WeightsError,
)

if TYPE_CHECKING:
    from auditkit.bias import Judge, load_judge, train_judge
    from auditkit.data import Digits, ImageFolder, ImageSet, Shapes
    from auditkit.generators import Generator, ModuleGenerator, create_generator, load_generator
    from auditkit.policy import Policy
    from auditkit.report import verify
    from auditkit.report.bundle import write_reports
    from auditkit.result import AuditResult
    from auditkit.store import RunStore
    from auditkit.training import TrainConfig, train

try:
    __version__ = version("auditkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {
    "Digits": "auditkit.data",
    "ImageFolder": "auditkit.data",
    "ImageSet": "auditkit.data",
    "Shapes": "auditkit.data",
    "RunStore": "auditkit.store",
    "Generator": "auditkit.generators",
    "ModuleGenerator": "auditkit.generators",
    "create_generator": "auditkit.generators",
    "load_generator": "auditkit.generators",
    "TrainConfig": "auditkit.training",
    "train": "auditkit.training",
    "Judge": "auditkit.bias",
    "train_judge": "auditkit.bias",
    "load_judge": "auditkit.bias",
    "AuditResult": "auditkit.result",
    "Policy": "auditkit.policy",
    "write_reports": "auditkit.report.bundle",
    "verify": "auditkit.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'auditkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AuditKitError",
    "AuditResult",
    "Policy",
    "load_judge",
    "verify",
    "write_reports",
    "ConfigError",
    "DataError",
    "ExplainError",
    "Digits",
    "Generator",
    "GeneratorError",
    "ImageFolder",
    "ImageSet",
    "Judge",
    "ModuleGenerator",
    "RunStore",
    "Shapes",
    "StoreError",
    "TrainConfig",
    "TrainingError",
    "WeightsError",
    "__version__",
    "create_generator",
    "load_generator",
    "train",
    "train_judge",
]
