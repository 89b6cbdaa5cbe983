"""Reference images for path and perturbation methods: what "absent" means for an image.

Integrated gradients attributes ``f(x) - f(x')`` along the straight path from a baseline ``x'``; occlusion,
deletion curves and SHAP's maskers replace pixels by one. The choice changes the answer, so it is named in
every attribution record. Three are offered:

``"black"``
    All zeros. Captum's default and the classic choice; on images whose content is dark it hides dark
    evidence (a black shape gets no attribution against a black baseline).
``"blurred"``
    The image itself under a Gaussian blur (sigma ``blur_sigma``, default one eighth of the shorter side):
    removes edges and shape while keeping colour and brightness, so attributions point at structure.
``"noise"``
    Uniform noise in ``[0, 1]`` drawn from ``seed``: no pixel is systematically favoured, at the price of a
    stochastic result (the seed is recorded).

A tensor of the images' shape (or one image, broadcast) is used as given.
"""

from __future__ import annotations

import torch
from torchvision.transforms.functional import gaussian_blur

from auditkit.errors import ConfigError

BASELINES = ("black", "blurred", "noise")


def make_baseline(
    images: torch.Tensor,
    baseline: str | float | torch.Tensor = "black",
    *,
    seed: int = 0,
    blur_sigma: float | None = None,
) -> torch.Tensor:
    """The baseline images for ``images`` (N×C×H×W), same shape, dtype and device.

    Parameters
    ----------
    images
        The images being explained.
    baseline
        ``"black"``, ``"blurred"``, ``"noise"``, a constant in ``[0, 1]``, or a tensor broadcastable to
        ``images``.
    seed
        Seeds the ``"noise"`` baseline (drawn on the CPU, so equal across devices).
    blur_sigma
        Standard deviation of the ``"blurred"`` baseline in pixels.
    """
    if isinstance(baseline, torch.Tensor):
        try:
            return torch.broadcast_to(baseline.to(images), images.shape).clone()
        except RuntimeError:
            raise ConfigError(
                f"a baseline tensor must broadcast to the images' shape {tuple(images.shape)}; "
                f"got {tuple(baseline.shape)}."
            ) from None
    if isinstance(baseline, int | float) and not isinstance(baseline, bool):
        if not 0.0 <= float(baseline) <= 1.0:
            raise ConfigError(f"a constant baseline must lie in [0, 1]; got {baseline}.")
        return torch.full_like(images, float(baseline))
    if baseline == "black":
        return torch.zeros_like(images)
    if baseline == "blurred":
        sigma = blur_sigma if blur_sigma is not None else min(images.shape[-2:]) / 8
        if sigma <= 0:
            raise ConfigError(f"blur_sigma must be positive; got {blur_sigma}.")
        kernel = 2 * int(3 * sigma) + 1  # ±3 sigma covers 99.7 % of the Gaussian's mass
        kernel = min(kernel, 2 * (min(images.shape[-2:]) // 2) - 1)  # torchvision's reflect padding limit
        return gaussian_blur(images, [kernel, kernel], [sigma, sigma])
    if baseline == "noise":
        rng = torch.Generator().manual_seed(int(seed))
        return torch.rand(images.shape, generator=rng).to(images)
    raise ConfigError(
        f"unknown baseline {baseline!r}; use one of {list(BASELINES)}, a constant in [0, 1] or a tensor."
    )


__all__ = ["BASELINES", "make_baseline"]
