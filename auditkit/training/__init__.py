"""Training: one loop for every family, with EMA, exact checkpoints/resume and torchrun/DDP scale-out."""

from auditkit.training.checkpoint import load_checkpoint, save_checkpoint
from auditkit.training.config import DataConfig, TrainConfig, load_config
from auditkit.training.trainer import Trainer, TrainResult, derive_seed, train

__all__ = [
    "DataConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "derive_seed",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "train",
]
