"""Training configuration: one validated object from a YAML file, a dict or CLI flags.

Unknown keys, wrong types and out-of-range values are a ``ConfigError`` that names the key and the fix, so a
typo in a config never trains the wrong model silently. The ``model:`` section is validated by the family's
own config class (``DCGANConfig``, ``VAEConfig``, ``DiffusionConfig``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from auditkit._config import describe_parse_error, validate
from auditkit.errors import ConfigError


class DataConfig(BaseModel):
    """Where the training images come from."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field("shapes", description="'shapes', 'digits', or a folder of images.")
    n: int = Field(20000, ge=1, description="Number of Shapes images.")
    size: int = Field(32, ge=8, description="Image side in pixels.")
    seed: int = Field(0, ge=0, description="Seed of the Shapes data.")
    skew: str | dict[str, Any] | None = Field(
        None, description="Planted Shapes skew (preset, file or mapping)."
    )
    noise: float = Field(0.0, ge=0, le=1)
    attributes_file: str | None = None
    channels: int | None = Field(None, description="Digits: 1 or 3 channels (default 1).")
    condition: str | None = Field(
        "shape", description="Attribute the generator is conditioned on; null for an unconditional model."
    )


class TrainConfig(BaseModel):
    """Everything that defines a training run (and, with the seed, its exact result on CPU)."""

    model_config = ConfigDict(extra="forbid")

    family: str = Field(..., description="Generator family: dcgan, vae or ddpm.")
    name: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: dict[str, Any] = Field(default_factory=dict, description="Family-specific architecture options.")
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    seed: int = Field(0, ge=0)
    log_every: int = Field(25, ge=1)
    sample_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'...")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool | None = Field(None, description="Default: on for CUDA, off on CPU.")
    compile: bool = False
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice).")

    @field_validator("family")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


def load_config(source: TrainConfig | Mapping[str, Any] | str | Path) -> TrainConfig:
    """A ``TrainConfig`` from an object, a mapping, or a YAML/JSON file path.

    The family name and its ``model:`` section are checked too (unknown family, unknown model keys).
    """
    if isinstance(source, TrainConfig):
        config = source
    else:
        if isinstance(source, str | Path):
            path = Path(source)
            if not path.is_file():
                raise ConfigError(f"training config {path} does not exist; pass a YAML file (see configs/).")
            try:
                text = path.read_text(encoding="utf-8")
                values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (OSError, UnicodeDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
                raise ConfigError(
                    f"cannot read training config {path}: {describe_parse_error(exc)}"
                ) from None
            what = f"training config {path}"
        else:
            values, what = source, "training config"
        config = validate(TrainConfig, values, what)
    from auditkit.generators.registry import family_config

    family_config(config.family, config.model)  # raises on an unknown family or model key
    return config


__all__ = ["DataConfig", "TrainConfig", "load_config", "validate"]
