"""Generators behind one protocol: trainable families (dcgan, vae, ddpm) and wrappers for users' models.

Every generator returns float32 ``[0, 1]`` ``N×C×H×W`` images from ``sample(n, labels=..., seed=...)`` and
has a differentiable ``forward(z, labels)`` for latent attribution (except ONNX/diffusers wrappers).
"""

from auditkit.generators.base import BaseGenerator, Generator
from auditkit.generators.registry import (
    GENERATOR_FILE,
    Family,
    create_generator,
    generator_spec,
    get_family,
    known_families,
    load_generator,
    register_family,
    save_generator,
)
from auditkit.generators.wrappers import DiffusersGenerator, ModuleGenerator, OnnxGenerator

__all__ = [
    "GENERATOR_FILE",
    "BaseGenerator",
    "DiffusersGenerator",
    "Family",
    "Generator",
    "ModuleGenerator",
    "OnnxGenerator",
    "create_generator",
    "generator_spec",
    "get_family",
    "known_families",
    "load_generator",
    "register_family",
    "save_generator",
]
