"""A small Diffusion Transformer (DiT, Peebles & Xie 2023) that predicts the noise ``eps`` of a noised image.

The image is cut into ``patch_size``×``patch_size`` patches, each linearly embedded to a token, plus a
fixed 2-D sine-cosine position embedding. Transformer blocks (pre-LayerNorm self-attention and MLP) are
conditioned by adaLN-Zero: the time + class embedding regresses a shift, a scale and a gate for each of
the two branches, the regression starting at zero so that every block starts as the identity. A final
adaptively normalised linear layer (also zero-initialised) maps tokens back to patches of ``eps``.

The class table has one extra row, index ``num_classes``, the "no label" input of classifier-free
guidance. LayerNorm (no BatchNorm) keeps each image independent of its batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auditkit.errors import ConfigError
from auditkit.generators.unet import _class_embedding, timestep_embedding

_FREQ_DIM = 256  # width of the sinusoidal timestep features before the MLP (the DiT paper's value)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, ``(grid_h·grid_w)×dim`` (row-major tokens).

    The first half of the features encodes the row, the second half the column (as in MAE and DiT).
    """
    if dim % 4:
        raise ConfigError(f"the DiT width must be divisible by 4 for its 2-D position embedding; got {dim}.")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )

    def encode(pos: torch.Tensor) -> torch.Tensor:
        args = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).to(torch.float32)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head self-attention over tokens with ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class DiTBlock(nn.Module):
    """Self-attention and MLP branches, each modulated (shift, scale) and gated by the condition."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(_modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """``(x_t, t, labels) -> predicted eps``, same shape as ``x_t``.

    Parameters
    ----------
    cfg
        A ``DiffusionConfig`` (reads ``patch_size``, ``dit_dim``, ``dit_depth``, ``dit_heads``,
        ``dit_mlp_ratio``).
    image_shape
        ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``patch_size``.
    num_classes
        Number of classes (0: unconditional). Label ``num_classes`` means "no label".
    """

    def __init__(self, cfg: Any, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c_img, height, width = image_shape
        p, dim = cfg.patch_size, cfg.dit_dim
        if height % p or width % p:
            raise ConfigError(
                f"the DiT cuts images into {p}×{p} patches, so the image height and width must be divisible "
                f"by patch_size={p}; got {height}×{width}. Resize the data or change patch_size."
            )
        if dim % cfg.dit_heads:
            raise ConfigError(f"dit_dim={dim} must be divisible by dit_heads={cfg.dit_heads}.")
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.patch_size = p
        self.grid = (height // p, width // p)
        self.patch_embed = nn.Conv2d(c_img, dim, p, stride=p)
        # Fixed, rebuilt from the config: not part of the saved weights.
        self.register_buffer("pos_embed", sincos_2d(dim, *self.grid)[None], persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(_FREQ_DIM, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.class_embed = nn.Embedding(num_classes + 1, dim) if num_classes else None
        self.blocks = nn.ModuleList(
            DiTBlock(dim, cfg.dit_heads, cfg.dit_mlp_ratio) for _ in range(cfg.dit_depth)
        )
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, p * p * c_img)
        self._init_weights()

    def _init_weights(self) -> None:
        # The DiT recipe: Xavier linears, small embeddings, zero adaLN regressions and output layer.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for m in self.time_mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        for layer in (self.ada_out[-1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise for ``x`` (``N×C×H×W``) at integer timesteps ``t`` (``N``).

        ``labels`` are class indices (``N``); ``None`` or ``num_classes`` ask for the unconditional
        prediction of a class-conditional network. An unconditional network takes no labels.
        """
        n, c_img = x.shape[:2]
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        cond = self.time_mlp(timestep_embedding(t, _FREQ_DIM))
        cond = cond + _class_embedding(self.class_embed, labels, self.num_classes, t)
        for block in self.blocks:
            tokens = block(tokens, cond)
        shift, scale = self.ada_out(cond).chunk(2, dim=1)
        patches = self.out(_modulate(self.norm_out(tokens), shift, scale))
        gh, gw = self.grid
        p = self.patch_size
        patches = patches.reshape(n, gh, gw, p, p, c_img)
        return torch.einsum("nhwpqc->nchpwq", patches).reshape(n, c_img, gh * p, gw * p)


__all__ = ["DiT", "DiTBlock", "sincos_2d"]
