"""``vae``: a convolutional variational autoencoder, optionally class-conditional.

The encoder halves the resolution with strided convolutions down to 4×4 and predicts the mean and
log-variance of ``q(z | x, y)``; the decoder mirrors the DCGAN generator (GroupNorm instead of BatchNorm,
so a step does not depend on how a batch is split across processes) and ends in ``tanh``. The class
condition enters both as a learned embedding. Training minimises the negative ELBO with a Gaussian
likelihood of fixed scale ``sigma`` in the ``[-1, 1]`` data space.

Prior. A VAE trained against ``N(0, I)`` does not fill it: on Shapes the codes cluster by the discrete
factors (colour, size, position), and prior draws between clusters decode to blends of two shapes or
colours, which the judge cannot name (about 67 % of samples read as the requested shape). With
``prior: mixture`` the trainer fits, after the last step, one Gaussian mixture per class to the aggregate
posterior (one draw of ``q(z | x, y)`` per training image), the *ex-post density estimation* of Ghosh et
al. (ICLR 2020); samples then come from ``p(z | y)`` = that mixture, and 99 % are recognised (see
``benchmarks/RESULTS.md``). The generator's latent gains one coordinate: ``z[:, :latent_dim]`` is the
standard-normal draw inside a component, ``z[:, -1]`` picks the component through ``Φ(z[:, -1])`` against
the cumulative mixture weights. Before fitting, every component is ``N(0, I)``, so the mixture *is* the
standard prior.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from auditkit.errors import ConfigError
from auditkit.generators.dcgan import check_image_size


class VAEConfig(BaseModel):
    """Architecture and loss of the ``vae`` family."""

    model_config = ConfigDict(extra="forbid")

    latent_dim: int = Field(32, ge=1)
    width: int = Field(32, ge=8, description="Channels at the highest resolution (multiple of 8).")
    embed_dim: int = Field(16, ge=1)
    sigma: float = Field(0.1, gt=0, description="Likelihood scale in [-1, 1] data units: smaller is sharper.")
    beta: float = Field(1.0, gt=0, description="Weight of the KL term.")
    prior: Literal["standard", "mixture"] = Field(
        "standard",
        description="Sampling prior: N(0, I), or per-class Gaussian mixtures fitted after training.",
    )
    prior_components: int = Field(32, ge=1, description="Components of each class's mixture prior.")


def _block(c_in: int, c_out: int, up: bool) -> list[nn.Module]:
    # No bias: GroupNorm right after removes it; its zero gradient would only feed Adam rounding noise.
    conv = (nn.ConvTranspose2d if up else nn.Conv2d)(c_in, c_out, 4, 2, 1, bias=False)
    return [conv, nn.GroupNorm(min(8, c_out), c_out), nn.SiLU()]


class ConditionalVAE(nn.Module):
    """``encode(x, y) -> (mu, logvar)``, ``decode(z, y) -> x`` in ``[-1, 1]``."""

    def __init__(self, cfg: VAEConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        size = check_image_size(image_shape, "vae")
        levels = (size // 4).bit_length() - 1
        if cfg.width % 8:
            raise ConfigError(f"vae width must be a multiple of 8 (GroupNorm groups); got {cfg.width}.")
        self.latent_dim = cfg.latent_dim
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, cfg.embed_dim) if num_classes else None
        extra = cfg.embed_dim if num_classes else 0
        enc: list[nn.Module] = []
        ch_in, ch = image_shape[0], cfg.width
        for _ in range(levels):
            enc += _block(ch_in, ch, up=False)
            ch_in, ch = ch, ch * 2
        top = ch_in
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.to_stats = nn.Linear(top * 16 + extra, 2 * cfg.latent_dim)
        self.project = nn.Sequential(
            nn.Linear(cfg.latent_dim + extra, top * 16), nn.Unflatten(1, (top, 4, 4)), nn.SiLU()
        )
        dec: list[nn.Module] = []
        ch = top
        for _ in range(levels - 1):
            dec += _block(ch, ch // 2, up=True)
            ch //= 2
        dec += [nn.ConvTranspose2d(ch, image_shape[0], 4, 2, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        self.mixture = cfg.prior == "mixture"
        if self.mixture:
            # One mixture per class (one in all when unconditional); starts as K copies of N(0, I).
            c, k, d = max(num_classes, 1), cfg.prior_components, cfg.latent_dim
            self.register_buffer("prior_weights", torch.full((c, k), 1.0 / k))
            self.register_buffer("prior_means", torch.zeros(c, k, d))
            self.register_buffer("prior_scale_tril", torch.eye(d).expand(c, k, d, d).clone())

    @property
    def sample_dim(self) -> int:
        """Size of the generator's latent: ``latent_dim``, plus the component selector with a mixture."""
        return self.latent_dim + int(self.mixture)

    def label_embedding(self) -> nn.Embedding | None:
        """The label embedding (``None`` when unconditional), for latent attribution of the decoder."""
        return self.embed

    def _condition(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return h
        if labels is None:
            raise ConfigError("this vae is class-conditional; pass labels.")
        return torch.cat([h, self.embed(labels)], dim=1)

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_stats(self._condition(self.encoder(x), labels)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.project(self._condition(z.flatten(1), labels)))

    def prior_sample(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Map the generator latent (standard normal, ``sample_dim`` wide) to a draw of ``p(z | y)``."""
        z = z.flatten(1)
        if not self.mixture:
            return z
        inner, selector = z[:, : self.latent_dim], z[:, self.latent_dim]
        cls = labels if labels is not None and self.embed is not None else torch.zeros_like(selector).long()
        cumulative = self.prior_weights[cls].cumsum(1)
        u = torch.special.ndtr(selector).unsqueeze(1) * cumulative[:, -1:]
        component = torch.searchsorted(cumulative, u).squeeze(1).clamp(max=cumulative.shape[1] - 1)
        mean = self.prior_means[cls, component]
        tril = self.prior_scale_tril[cls, component]
        return mean + (tril @ inner.unsqueeze(-1)).squeeze(-1)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, *, posterior: bool = False
    ) -> torch.Tensor:
        """The generator path: decode a prior draw made from ``z``; ``posterior=True`` decodes ``z`` as a
        code (training's reconstruction, which must go through ``forward`` for DDP)."""
        return self.decode(z if posterior else self.prior_sample(z, labels), labels)

    @torch.no_grad()
    def fit_prior(
        self, images: torch.Tensor, labels: torch.Tensor | None, *, seed: int = 0, batch_size: int = 512
    ) -> dict[str, float]:
        """Fit the per-class mixture prior to the aggregate posterior of ``images`` (``[-1, 1]``).

        One draw of ``q(z | x, y)`` per image (seeded), then scikit-learn's ``GaussianMixture`` (full
        covariances, k-means initialisation, ``random_state=seed``) per class. Returns the mean
        per-code log-likelihood of each class's fit.
        """
        from sklearn.mixture import GaussianMixture

        if not self.mixture:
            raise ConfigError("fit_prior needs a vae built with prior: mixture.")
        was_training = self.training
        self.eval()
        rng = torch.Generator(device=images.device).manual_seed(seed)
        conditional = labels is not None and self.embed is not None
        codes = []
        for start in range(0, len(images), batch_size):
            y = labels[start : start + batch_size] if conditional else None
            mu, logvar = self.encode(images[start : start + batch_size], y)
            eps = torch.randn(mu.shape, generator=rng, device=mu.device, dtype=mu.dtype)
            codes.append((mu + torch.exp(0.5 * logvar) * eps).double().cpu())
        self.train(was_training)
        z = torch.cat(codes).numpy()
        groups = labels.cpu().numpy() if conditional else np.zeros(len(z), int)
        fit: dict[str, float] = {}
        k_max = self.prior_weights.shape[1]
        for cls in range(self.prior_weights.shape[0]):
            members = z[groups == cls]
            k = min(k_max, len(members))
            if k < 1:
                continue  # no examples of this class: its prior stays N(0, I)
            gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed % 2**32).fit(
                members
            )
            weights = torch.zeros(k_max, dtype=torch.float64)
            weights[:k] = torch.from_numpy(gmm.weights_)
            means = torch.zeros(k_max, self.latent_dim, dtype=torch.float64)
            means[:k] = torch.from_numpy(gmm.means_)
            trils = torch.eye(self.latent_dim, dtype=torch.float64).repeat(k_max, 1, 1)
            trils[:k] = torch.linalg.cholesky(torch.from_numpy(gmm.covariances_))
            for buffer, value in (
                (self.prior_weights, weights),
                (self.prior_means, means),
                (self.prior_scale_tril, trils),
            ):
                buffer[cls].copy_(value.to(buffer.dtype))
            fit[str(cls)] = float(gmm.score(members))
        return fit


def vae_loss(
    net: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor | None,
    eps: torch.Tensor,
    cfg: VAEConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative ELBO per pixel (batch mean), and its parts; ``eps`` is the reparameterisation noise."""
    vae = net.module if hasattr(net, "module") else net
    mu, logvar = vae.encode(x, labels)
    z = mu + torch.exp(0.5 * logvar) * eps
    # Through the (possibly DDP-wrapped) module so gradients are synchronised.
    recon = net(z, labels, posterior=True)
    pixels = math.prod(x.shape[1:])
    rec = ((recon - x) ** 2).flatten(1).sum(1) / (2 * cfg.sigma**2)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    loss = (rec + cfg.beta * kl).mean() / pixels
    return loss, {"recon": rec.mean() / pixels, "kl": kl.mean()}


__all__ = ["ConditionalVAE", "VAEConfig", "vae_loss"]
