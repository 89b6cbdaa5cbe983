"""Attributions and their quality: Captum, SHAP and LIME on the judge, the discriminator and the generator.

:func:`explain` is the one entry point for pixel attributions; methods are chosen by name (:func:`methods`).
"""

from auditkit.explain.baselines import BASELINES, make_baseline
from auditkit.explain.core import (
    Attribution,
    Method,
    discriminator_score,
    explain,
    get_method,
    methods,
    register_method,
)

__all__ = [
    "BASELINES",
    "Attribution",
    "Method",
    "discriminator_score",
    "explain",
    "get_method",
    "make_baseline",
    "methods",
    "register_method",
]
