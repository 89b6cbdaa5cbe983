"""``dcgan``: a DCGAN-style generator and discriminator, optionally class-conditional.

The generator maps ``z`` (plus a learned label embedding, concatenated) through a linear layer to a 4×4
map, then doubles the resolution with transposed convolutions (BatchNorm, ReLU) up to the image size, and
ends in ``tanh``: its output lies in ``[-1, 1]``, the data space the trainer uses. The discriminator mirrors
it with strided convolutions and LeakyReLU, optionally spectrally normalised (Miyato et al. 2018), and
conditions by projection (Miyato & Koyama 2018): ``D(x, y) = ψ(φ(x)) + <embed(y), φ(x)>``.

Two options make a class-conditional model follow its condition more closely (both off by default, so
generators saved before they existed load unchanged):

- ``cond_bn``: conditional batch norm in the generator (de Vries et al. 2017; shared-embedding form of
  BigGAN, Brock et al. 2019). Every BatchNorm's gain and bias are linear functions of the one label
  embedding, so the class shapes every layer rather than only the input. All condition information still
  flows through that one embedding lookup, which latent attribution relies on.
- ``aux_classifier``: an auxiliary class head on the discriminator's features (AC-GAN, Odena et al. 2017),
  trained with cross-entropy on the real images' labels; the generator is trained so that the head reads
  its images as the requested class. The option is the weight of both cross-entropy terms.

Supported image sizes are powers of two from 16 to 128.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from auditkit.errors import ConfigError


class DCGANConfig(BaseModel):
    """Architecture and loss of the ``dcgan`` family (the ``model:`` section of a training config)."""

    model_config = ConfigDict(extra="forbid")

    latent_dim: int = Field(64, ge=1, description="Size of z.")
    width: int = Field(64, ge=4, description="Channels of the highest-resolution feature map.")
    embed_dim: int = Field(32, ge=1, description="Size of the generator's label embedding.")
    spectral_norm: bool = Field(True, description="Spectral normalisation in the discriminator.")
    d_batchnorm: bool = Field(
        False,
        description="BatchNorm in the discriminator, with real and fake normalised as separate batches.",
    )
    loss: Literal["hinge", "nonsaturating"] = "hinge"
    minibatch_std: int = Field(
        4,
        ge=0,
        description="Group size of the discriminator's minibatch-std feature (0: off); see MinibatchStd.",
    )
    mode_seeking: float = Field(
        0.0,
        ge=0,
        description="Weight of the mode-seeking term (Mao et al. 2019) against collapse within a class.",
    )
    instance_noise: float = Field(
        0.0,
        ge=0,
        description="Std of Gaussian noise added to every image the discriminator sees ([-1, 1] units).",
    )
    lr_d: float | None = Field(None, gt=0, description="Discriminator learning rate (default: lr).")
    cond_bn: bool = Field(
        False,
        description="Conditional batch norm in the generator: class-dependent gain and bias in every layer.",
    )
    aux_classifier: float = Field(
        0.0,
        ge=0,
        description="Weight of the AC-GAN auxiliary classification loss (0: no class head on D).",
    )


def check_image_size(image_shape: tuple[int, int, int], family: str) -> int:
    """The side of a square, power-of-two image in [16, 128]; ``ConfigError`` otherwise."""
    c, h, w = image_shape
    if h != w or h < 16 or h > 128 or h & (h - 1):
        raise ConfigError(
            f"the {family} family supports square images with a power-of-two side from 16 to 128; got "
            f"{h}×{w}. Resize the data (data.size: 32) or pick a supported size."
        )
    return h


def _levels(size: int) -> int:
    return (size // 4).bit_length() - 1  # number of ×2 steps from 4×4


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose gain and bias depend on a per-sample condition vector ``e``.

    ``y = BN(x) · (1 + W_g e + b_g) + (W_b e + b_b)``, with ``BN`` the affine-free batch norm. When every
    sample has the same ``e`` this is plain ``nn.BatchNorm2d`` with weight ``1 + W_g e + b_g`` and bias
    ``W_b e + b_b``.
    """

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels)
        self.bias = nn.Linear(cond_dim, channels)
        # Start as plain BN with unit gain and zero bias (the unconditional layer's init); the class
        # dependence grows from there instead of starting as random per-class scales.
        for layer in (self.gain, self.bias):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gain = 1 + self.gain(e)
        return self.bn(x) * gain[:, :, None, None] + self.bias(e)[:, :, None, None]


class DCGANGenerator(nn.Module):
    """``(z, labels) -> images`` in ``[-1, 1]``."""

    def __init__(self, cfg: DCGANConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        size = check_image_size(image_shape, "dcgan")
        levels = _levels(size)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, cfg.embed_dim) if num_classes else None
        in_dim = cfg.latent_dim + (cfg.embed_dim if num_classes else 0)
        ch = cfg.width * 2 ** (levels - 1)
        self.project = nn.Sequential(nn.Linear(in_dim, ch * 16, bias=False), nn.Unflatten(1, (ch, 4, 4)))

        def norm(channels: int) -> nn.Module:
            if cfg.cond_bn and num_classes:
                return ConditionalBatchNorm2d(channels, cfg.embed_dim)
            return nn.BatchNorm2d(channels)

        # Without cond_bn the modules (and state-dict keys) are exactly those of earlier versions.
        blocks: list[nn.Module] = [norm(ch), nn.ReLU()]
        for _ in range(levels - 1):
            blocks += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                norm(ch // 2),
                nn.ReLU(),
            ]
            ch //= 2
        blocks += [nn.ConvTranspose2d(ch, image_shape[0], 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def label_embedding(self) -> nn.Embedding | None:
        """The label embedding (``None`` when unconditional), for latent attribution."""
        return self.embed

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = z.flatten(1)
        e = None
        if self.embed is not None:
            if labels is None:
                raise ConfigError("this dcgan generator is class-conditional; pass labels.")
            e = self.embed(labels)  # the one lookup: conditional BN reuses it
            h = torch.cat([h, e], dim=1)
        x = self.project(h)
        for layer in self.body:
            x = layer(x, e) if isinstance(layer, ConditionalBatchNorm2d) else layer(x)
        return x


class MinibatchStd(nn.Module):
    """Append the mean feature standard deviation over groups of ``group`` consecutive samples as a channel.

    From Karras et al. (2018): the discriminator sees how varied a group of images is, so a generator that
    collapses onto few images is caught. Groups are consecutive samples, so a batch of reals followed by
    fakes (sizes multiples of ``group``) never mixes the two in one group.
    """

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.group if n % self.group == 0 else 1
        if g == 1:
            stat = x.new_zeros(n, 1, h, w)
        else:
            std = x.view(n // g, g, c, h, w).float().var(dim=1, unbiased=False).add(1e-8).sqrt()
            stat = (
                std.mean(dim=(1, 2, 3)).to(x.dtype).repeat_interleave(g).view(n, 1, 1, 1).expand(n, 1, h, w)
            )
        return torch.cat([x, stat], dim=1)


class DCGANDiscriminator(nn.Module):
    """``(images, labels) -> realness logits`` (shape ``N``); with ``with_classes``, also class logits."""

    def __init__(self, cfg: DCGANConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        size = check_image_size(image_shape, "dcgan")
        levels = _levels(size)
        norm = _spectral_norm if cfg.spectral_norm else (lambda m: m)
        ch = cfg.width
        layers: list[nn.Module] = [norm(nn.Conv2d(image_shape[0], ch, 4, 2, 1)), nn.LeakyReLU(0.2)]
        for _ in range(levels - 1):
            layers += [norm(nn.Conv2d(ch, ch * 2, 4, 2, 1))]
            layers += [nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2)] if cfg.d_batchnorm else [nn.LeakyReLU(0.2)]
            ch *= 2
        if cfg.minibatch_std:
            layers += [
                MinibatchStd(cfg.minibatch_std),
                norm(nn.Conv2d(ch + 1, ch, 3, 1, 1)),
                nn.LeakyReLU(0.2),
            ]
        self.features = nn.Sequential(*layers, nn.Flatten())
        feat = ch * 16
        self.out = norm(nn.Linear(feat, 1))
        self.embed = norm(nn.Embedding(num_classes, feat)) if num_classes else None
        # AC-GAN head; not spectrally normalised, so its logits can grow as confident as the data allows.
        self.classify = nn.Linear(feat, num_classes) if num_classes and cfg.aux_classifier > 0 else None

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        groups: int = 1,
        with_classes: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Realness logits; ``groups > 1`` runs the trunk on that many equal chunks of the batch separately
        (so BatchNorm and minibatch-std never mix real and fake), in one call (one DDP forward).

        ``with_classes`` also returns the auxiliary head's class logits (``N × num_classes``); it needs a
        discriminator built with ``aux_classifier > 0``.
        """
        h = torch.cat([self.features(chunk) for chunk in x.chunk(groups)]) if groups > 1 else self.features(x)
        score = self.out(h).squeeze(1)
        if self.embed is not None:
            score = score + (self.embed(labels) * h).sum(1)
        if not with_classes:
            return score
        if self.classify is None:
            raise ConfigError(
                "this discriminator has no class head; build it with model.aux_classifier > 0 and classes."
            )
        return score, self.classify(h)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of D on real and fake logits (hinge or the standard non-saturating one)."""
    if kind == "hinge":
        return torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()
    return nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()


def generator_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of G on D's logits for its images."""
    if kind == "hinge":
        return -fake.mean()
    return nn.functional.softplus(-fake).mean()


def aux_classifier_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """AC-GAN term: mean cross-entropy of the class head's logits against the (requested) labels."""
    return nn.functional.cross_entropy(class_logits.float(), labels)


def mode_seeking_ratios(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per pair of consecutive samples ``(2j, 2j + 1)``: mean image distance over mean latent distance.

    Pairs of neighbours (not ``(i, i + n/2)``) so that slicing a batch across processes at even offsets
    keeps every pair on one process.
    """
    pairs = fake.shape[0] // 2
    images = (fake[0 : 2 * pairs : 2] - fake[1 : 2 * pairs : 2]).abs().flatten(1).mean(1)
    latents = (z[0 : 2 * pairs : 2] - z[1 : 2 * pairs : 2]).abs().flatten(1).mean(1)
    return images / latents


def mode_seeking_loss(
    fake: torch.Tensor, z: torch.Tensor, mean: Callable[[torch.Tensor], torch.Tensor] = torch.mean
) -> torch.Tensor:
    """Mode-seeking regulariser (Mao et al. 2019, MSGAN): small when distant latents give distant images.

    The inverse of the mean ratio of image distance to latent distance over pairs of consecutive samples
    (see :func:`mode_seeking_ratios`), so a generator that maps different ``z`` to one image is penalised.
    ``mean`` averages the ratios; training under DDP passes the all-process mean, because the inverse of a
    mean is not the mean of per-process inverses.
    """
    return 1.0 / (mean(mode_seeking_ratios(fake, z)) + 1e-5)


def pair_labels(labels: torch.Tensor) -> torch.Tensor:
    """``labels`` with each odd position given its even neighbour's label, so mode-seeking pairs share a
    class (an odd last sample keeps its own)."""
    index = torch.arange(labels.shape[0], device=labels.device)
    return labels[index - index % 2]


__all__ = [
    "ConditionalBatchNorm2d",
    "DCGANConfig",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "aux_classifier_loss",
    "check_image_size",
    "discriminator_loss",
    "generator_loss",
    "mode_seeking_loss",
    "mode_seeking_ratios",
    "pair_labels",
]
