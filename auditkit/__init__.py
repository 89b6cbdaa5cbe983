"""auditkit: train and run image generators, and audit them.

Images cross module boundaries as ``torch.float32`` in ``[0, 1]``, shape ``N×C×H×W``.
"""

from importlib.metadata import PackageNotFoundError, version

from auditkit.data import Digits, ImageSet, Shapes
from auditkit.errors import AuditKitError, ConfigError, DataError, StoreError, WeightsError

try:
    __version__ = version("auditkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "AuditKitError",
    "ConfigError",
    "DataError",
    "Digits",
    "ImageSet",
    "Shapes",
    "StoreError",
    "WeightsError",
    "__version__",
]
