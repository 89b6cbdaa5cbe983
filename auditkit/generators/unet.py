"""A time- and class-conditioned UNet that predicts the noise ``eps`` of a noised image (Ho et al. 2020).

The layout follows the DDPM / improved-DDPM UNet (Nichol & Dhariwal 2021), shrunk for small images:

- the timestep goes through a sinusoidal embedding and a two-layer MLP; a learned class embedding is added
  to it. The class table has one extra row, index ``num_classes``, the "no label" input that
  classifier-free guidance (Ho & Salimans 2022) contrasts the conditional prediction with;
- residual blocks (GroupNorm, SiLU, 3×3 convolutions) take the embedding as a per-channel scale and shift
  after their second normalisation ("scale-shift norm"), which conditions more strongly than a plain sum;
- the resolution halves once per entry of ``channel_mult`` after the first, with optional multi-head
  self-attention at chosen resolutions, a middle block (res, attention, res), and a mirrored decoder fed
  by skip connections.

GroupNorm (no BatchNorm) keeps every image's output independent of the rest of its batch, so a sampled
image does not depend on the batch size and classifier-free guidance can batch the conditional and
unconditional passes together. The last layer of every residual branch and the output convolution start at
zero: an untrained network predicts ``eps = 0`` and every block starts as the identity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auditkit.errors import ConfigError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (integer or real) timesteps ``t`` (shape ``N``): float32 ``N×dim``.

    Frequencies fall geometrically from 1 to ``1/max_period`` as in the Transformer; the first half of
    the features are cosines, the second half sines (the guided-diffusion order).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _norm(channels: int) -> nn.GroupNorm:
    # 8 groups (fewer when the width does not divide): enough statistics per group at small widths.
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``x + F(x, emb)`` with GroupNorm/SiLU/conv and the embedding as scale and shift."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``emb`` is the already SiLU-activated embedding (``N×emb_dim``)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, as a residual branch."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each N×heads×HW×(C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Strided 3×3 convolution: half the resolution, same channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 convolution (no checkerboard artefacts of transposed convs)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """The residual blocks (each optionally followed by attention) of one resolution."""

    def __init__(self, blocks: Sequence[ResBlock], attentions: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attentions = nn.ModuleList(attentions)


class UNet(nn.Module):
    """``(x_t, t, labels) -> predicted eps``, same shape as ``x_t``.

    Parameters
    ----------
    cfg
        A ``DiffusionConfig`` (reads ``channels``, ``channel_mult``, ``num_res_blocks``,
        ``attention_resolutions``, ``attention_heads``, ``dropout``).
    image_shape
        ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mult) - 1)``.
    num_classes
        Number of classes (0: unconditional). Label ``num_classes`` means "no label".

    Notes
    -----
    Attention resolutions that the network never reaches (e.g. 8 for a 64×64 image with three levels) are
    ignored, so one config serves several image sizes; ``attention_levels`` lists where attention is.
    """

    def __init__(self, cfg: Any, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c_img, height, width = image_shape
        mult = tuple(cfg.channel_mult)
        factor = 2 ** (len(mult) - 1)
        if height % factor or width % factor:
            raise ConfigError(
                f"the UNet halves the resolution {len(mult) - 1} times (channel_mult={list(mult)}), so the "
                f"image height and width must be divisible by {factor}; got {height}×{width}. Resize the "
                "data or use fewer levels."
            )
        ch = cfg.channels
        for m in mult:
            if (ch * m) % cfg.attention_heads and cfg.attention_resolutions:
                raise ConfigError(
                    f"UNet widths {[ch * m for m in mult]} must be divisible by attention_heads="
                    f"{cfg.attention_heads}."
                )
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.model_channels = ch
        emb_dim = 4 * ch
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None

        attn_at = set(cfg.attention_resolutions)
        self.attention_levels: list[int] = []

        def attention(c: int, res: int) -> nn.Module:
            if res in attn_at:
                return AttentionBlock(c, cfg.attention_heads)
            return nn.Identity()

        self.conv_in = nn.Conv2d(c_img, ch, 3, padding=1)
        skips = [ch]
        c, res = ch, min(height, width)
        self.down = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for level, m in enumerate(mult):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, ch * m, emb_dim, cfg.dropout))
                c = ch * m
                attns.append(attention(c, res))
                skips.append(c)
            if res in attn_at:
                self.attention_levels.append(res)
            self.down.append(_Level(blocks, attns))
            if level < len(mult) - 1:
                self.downsamplers.append(Downsample(c))
                skips.append(c)
                res //= 2

        self.mid1 = ResBlock(c, c, emb_dim, cfg.dropout)
        self.mid_attn = AttentionBlock(c, cfg.attention_heads) if attn_at else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim, cfg.dropout)

        self.up = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(c + skips.pop(), ch * m, emb_dim, cfg.dropout))
                c = ch * m
                attns.append(attention(c, res))
            self.up.append(_Level(blocks, attns))
            if level > 0:
                self.upsamplers.append(Upsample(c))
                res *= 2

        self.norm_out = _norm(c)
        self.conv_out = _zero(nn.Conv2d(c, c_img, 3, padding=1))

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The SiLU-activated time (+ class) embedding every residual block reads."""
        emb = self.time_mlp(timestep_embedding(t, self.model_channels))
        emb = emb + _class_embedding(self.class_embed, labels, self.num_classes, t)
        return F.silu(emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise for ``x`` (``N×C×H×W``) at integer timesteps ``t`` (``N``).

        ``labels`` are class indices (``N``); ``None`` or ``num_classes`` ask for the unconditional
        prediction of a class-conditional network. An unconditional network takes no labels.
        """
        emb = self.embed(t, labels)
        h = self.conv_in(x)
        hs = [h]
        for level, stage in enumerate(self.down):
            for block, attn in zip(stage.blocks, stage.attentions, strict=True):
                h = attn(block(h, emb))
                hs.append(h)
            if level < len(self.downsamplers):
                h = self.downsamplers[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, stage in enumerate(self.up):
            for block, attn in zip(stage.blocks, stage.attentions, strict=True):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if level < len(self.upsamplers):
                h = self.upsamplers[level](h)
        return self.conv_out(F.silu(self.norm_out(h)))


def _class_embedding(
    table: nn.Embedding | None, labels: torch.Tensor | None, num_classes: int, t: torch.Tensor
) -> torch.Tensor | float:
    """The class embedding to add to the time embedding (shared by the UNet and the DiT)."""
    if table is None:
        if labels is not None:
            raise ConfigError("this denoiser is unconditional (num_classes=0); do not pass labels.")
        return 0.0
    if labels is None:
        # No label: the "null" class, i.e. the unconditional prediction classifier-free guidance needs.
        labels = torch.full_like(t, num_classes, dtype=torch.long)
    return table(labels)


__all__ = ["AttentionBlock", "ResBlock", "UNet", "timestep_embedding"]
