"""Attributions and their quality: Captum, SHAP and LIME on the judge, the discriminator and the generator.

:func:`explain` is the one entry point for pixel attributions; methods are chosen by name (:func:`methods`).
:mod:`~auditkit.explain.quality` says how far each method can be trusted, :mod:`~auditkit.explain.render`
draws the maps.
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
from auditkit.explain.latent import (
    LatentAttribution,
    LatentTraversal,
    latent_attribution,
    latent_traversal,
    traversal_figure,
)
from auditkit.explain.lime import LimeResult, lime_attribution
from auditkit.explain.quality import (
    QUALITY_THRESHOLDS,
    agreement,
    assess,
    deletion_curve,
    faithfulness_correlation,
    insertion_curve,
    random_attribution,
    randomization_check,
    stability,
    verdict,
)
from auditkit.explain.render import heatmap, method_panel, overlay, overlay_png

__all__ = [
    "BASELINES",
    "QUALITY_THRESHOLDS",
    "Attribution",
    "LatentAttribution",
    "LatentTraversal",
    "LimeResult",
    "Method",
    "agreement",
    "assess",
    "deletion_curve",
    "discriminator_score",
    "explain",
    "faithfulness_correlation",
    "get_method",
    "heatmap",
    "insertion_curve",
    "latent_attribution",
    "latent_traversal",
    "lime_attribution",
    "make_baseline",
    "method_panel",
    "methods",
    "overlay",
    "overlay_png",
    "random_attribution",
    "randomization_check",
    "register_method",
    "stability",
    "traversal_figure",
    "verdict",
]
