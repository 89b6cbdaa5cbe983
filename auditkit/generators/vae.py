"""``vae``: a convolutional variational autoencoder, optionally class-conditional.

The encoder halves the resolution with strided convolutions down to 4×4 and predicts the mean and
log-variance of ``q(z | x, y)``; the decoder mirrors the DCGAN generator (GroupNorm instead of BatchNorm,
so a step does not depend on how a batch is split across processes) and ends in ``tanh``. The class
condition enters both as a learned embedding. Training minimises the negative ELBO with a Gaussian
likelihood of fixed scale ``sigma`` in the ``[-1, 1]`` data space.
"""

from __future__ import annotations

import math

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

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The generator path: decode ``z``."""
        return self.decode(z, labels)


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
    recon = net(z, labels)  # through the (possibly DDP-wrapped) module so gradients are synchronised
    pixels = math.prod(x.shape[1:])
    rec = ((recon - x) ** 2).flatten(1).sum(1) / (2 * cfg.sigma**2)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    loss = (rec + cfg.beta * kl).mean() / pixels
    return loss, {"recon": rec.mean() / pixels, "kl": kl.mean()}


__all__ = ["ConditionalVAE", "VAEConfig", "vae_loss"]
