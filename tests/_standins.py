"""Stand-in generators whose truth is known, shared by the audit and report tests."""

from __future__ import annotations

import hashlib

import torch

from auditkit.data import Shapes
from auditkit.generators.base import BaseGenerator

SHAPE_SKEW = {"shape": {"circle": 0.5, "square": 0.3, "triangle": 0.2}}

# A full audit (every stage) that takes about 10 s: for tests that need a realistic AuditResult.
SMALL_AUDIT = {
    "n": 300,
    "seed": 5,
    "progress": False,
    "explain_methods": ("saliency",),
    "explain_per_value": 1,
    "n_boot": 50,
    "quality_bootstrap": 10,
    "intersections": [("shape", "colour")],
}


class ShapesStandIn(BaseGenerator):
    """Real Shapes images with a planted skew; each batch's images are seeded by its latents.

    The true shares of what it makes are the skew's. ``nan_batch``: from that batch on, every batch has a
    NaN pixel (a broken generator).
    """

    def __init__(self, skew=None, nan_batch: int | None = None) -> None:
        super().__init__(name="shapes-stand-in", latent_shape=(1,), image_shape=(3, 32, 32), batch_size=250)
        self.skew = skew
        self.nan_batch = nan_batch
        self.calls = 0

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        seed = int(hashlib.sha256(z.detach().numpy().tobytes()).hexdigest()[:8], 16)
        images = Shapes(z.shape[0], seed=seed, skew=self.skew).images
        self.calls += 1
        if self.nan_batch is not None and self.calls > self.nan_batch:
            images[0, 0, 0, 0] = float("nan")
        return images
