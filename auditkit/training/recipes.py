"""What one training step means for each family; the trainer owns everything around it.

A recipe holds its networks and optimizers by name (the trainer may wrap networks in DDP, checkpoints
them and keeps an EMA of ``recipe.ema_name``) and implements ``step``: forward, backward and optimizer
updates for one batch. All randomness of a step comes from ``noise``, which draws for the *global* batch
from the step's own generator and keeps this process's slice: a run on 2 processes sees exactly the noise
a single process would, so the world size changes only the order of floating-point sums.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from auditkit.errors import ConfigError
from auditkit.generators.registry import Family, family_config, get_family
from auditkit.training import distributed
from auditkit.training.config import TrainConfig


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(net, "_orig_mod"):
            net = net._orig_mod
        elif isinstance(net, nn.parallel.DistributedDataParallel):
            net = net.module
        else:
            return net


class StepNoise:
    """Random draws for one step: global-batch sized, from one generator, sliced to this process.

    Parameters
    ----------
    rng
        The step's generator (on the training device).
    global_batch
        Images per step over all processes.
    rank, world
        This process and the number of processes (``global_batch`` is divisible by ``world``).
    """

    def __init__(self, rng: torch.Generator, global_batch: int, rank: int = 0, world: int = 1) -> None:
        self.rng = rng
        self.local = global_batch // world
        self.global_batch = global_batch
        self.slice = slice(rank * self.local, (rank + 1) * self.local)

    def randn(self, *shape: int) -> torch.Tensor:
        """Standard normal draws of shape ``(local batch, *shape)``."""
        full = torch.randn((self.global_batch, *shape), generator=self.rng, device=self.rng.device)
        return full[self.slice]

    def rand(self, *shape: int) -> torch.Tensor:
        """Uniform ``[0, 1)`` draws of shape ``(local batch, *shape)``."""
        full = torch.rand((self.global_batch, *shape), generator=self.rng, device=self.rng.device)
        return full[self.slice]

    def randint(self, high: int) -> torch.Tensor:
        """Integers in ``[0, high)``, one per local image."""
        full = torch.randint(0, high, (self.global_batch,), generator=self.rng, device=self.rng.device)
        return full[self.slice]


def _adam(
    params, config: TrainConfig, device: torch.device, lr: float | None = None
) -> torch.optim.Optimizer:
    # Fused Adam is one kernel per step on CUDA; on CPU the default (foreach) path is the fast one.
    fused = device.type == "cuda"
    return torch.optim.Adam(
        params, lr=lr or config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused
    )


class Recipe:
    """Base of the family recipes: networks, optimizers, the EMA target and an optimisation helper."""

    family: str
    ema_name: str

    def __init__(
        self, config: TrainConfig, image_shape: tuple[int, int, int], num_classes: int, device: torch.device
    ):
        self.config = config
        self.model_config = family_config(config.family, config.model)
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.device = device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.autocast: Callable[[], Any] = contextlib.nullcontext

    @property
    def family_spec(self) -> Family:
        return get_family(self.config.family)

    def _optimize(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(unwrap(self.networks[name]).parameters(), self.config.grad_clip)
        opt.step()

    def step(self, x: torch.Tensor, y: torch.Tensor | None, noise: StepNoise) -> dict[str, torch.Tensor]:
        """One optimisation step on ``x`` (``[-1, 1]``) with labels ``y``; returns detached losses."""
        raise NotImplementedError

    def losses(self, x: torch.Tensor, y: torch.Tensor | None, noise: StepNoise) -> torch.Tensor:
        """The loss whose gradient a single-network family's step follows (for the DDP equality test)."""
        raise NotImplementedError

    def finish(
        self, generator: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, seed: int
    ) -> dict[str, Any]:
        """Work on the final (EMA) generator after the last step, given the training images as the trainer
        holds them (``[0, 1]``); returns what to record in the run summary. Nothing by default."""
        return {}


class GANRecipe(Recipe):
    """``dcgan``: one discriminator update, then one generator update, per step."""

    family = "dcgan"
    ema_name = "G"

    def __init__(self, config, image_shape, num_classes, device):
        super().__init__(config, image_shape, num_classes, device)
        from auditkit.generators.dcgan import DCGANDiscriminator, DCGANGenerator

        cfg = self.model_config
        self.networks = {
            "G": DCGANGenerator(cfg, image_shape, num_classes).to(device),
            "D": DCGANDiscriminator(cfg, image_shape, num_classes).to(device),
        }
        self.optimizers = {
            "G": _adam(self.networks["G"].parameters(), config, device),
            "D": _adam(self.networks["D"].parameters(), config, device, lr=cfg.lr_d),
        }

    def step(self, x, y, noise):
        from auditkit.generators.dcgan import (
            aux_classifier_loss,
            discriminator_loss,
            generator_loss,
            mode_seeking_loss,
            pair_labels,
        )

        G, D = self.networks["G"], self.networks["D"]
        kind = self.model_config.loss
        latent = self.model_config.latent_dim
        # AC-GAN: a class head on D learns the real labels; G is rewarded when the head reads its class.
        aux = self.model_config.aux_classifier if y is not None and self.num_classes else 0.0
        z_d, z_g = noise.randn(latent), noise.randn(latent)
        with torch.no_grad(), self.autocast():
            fake = G(z_d, y)
        # One discriminator call on real and fake together: DDP expects one forward per backward.
        both_y = torch.cat([y, y]) if y is not None else None
        sigma = self.model_config.instance_noise
        both = torch.cat([x, fake.to(x.dtype)])
        if sigma > 0:
            # Instance noise (Sønderby et al. 2017): overlapping supports keep D's gradients informative.
            both = both + sigma * torch.cat([noise.randn(*x.shape[1:]), noise.randn(*x.shape[1:])]).to(
                x.dtype
            )
        out: dict[str, torch.Tensor] = {}
        with self.autocast():
            if aux > 0:
                logits, class_logits = D(both, both_y, groups=2, with_classes=True)
                # Only the real half trains the head: fakes carry the requested, not the drawn, class.
                aux_real = aux_classifier_loss(class_logits[: x.shape[0]], y)
                out["aux_real"] = aux_real.detach()
            else:
                logits = D(both, both_y, groups=2)
            real_logits, fake_logits = logits.float().chunk(2)
            loss_d = discriminator_loss(real_logits, fake_logits, kind)
            if aux > 0:
                loss_d = loss_d + aux * aux_real
        self._optimize("D", loss_d)

        d_plain = unwrap(D)
        d_plain.requires_grad_(False)  # G's step must not touch D's gradients (or its DDP reducer)
        weight = self.model_config.mode_seeking
        paired = weight > 0 and x.shape[0] >= 2
        if y is not None and paired:
            # Pairs (2j, 2j + 1) share a class, so the mode-seeking ratio compares like with like.
            y = pair_labels(y)
        try:
            with self.autocast():
                fake = G(z_g, y)
                seen = fake + sigma * noise.randn(*x.shape[1:]).to(fake.dtype) if sigma > 0 else fake
                if aux > 0:
                    fake_logits_g, class_logits_g = d_plain(seen, y, with_classes=True)
                    aux_fake = aux_classifier_loss(class_logits_g, y)
                    out["aux_fake"] = aux_fake.detach()
                    loss_g = generator_loss(fake_logits_g.float(), kind) + aux * aux_fake
                else:
                    loss_g = generator_loss(d_plain(seen, y).float(), kind)
                if paired:
                    ms = mode_seeking_loss(fake.float(), z_g, mean=distributed.global_mean)
                    loss_g = loss_g + weight * ms
            self._optimize("G", loss_g)
        finally:
            d_plain.requires_grad_(True)
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": real_logits.detach().mean(),
            "d_fake": fake_logits.detach().mean(),
            **out,
        }


class VAERecipe(Recipe):
    """``vae``: one ELBO step."""

    family = "vae"
    ema_name = "vae"

    def __init__(self, config, image_shape, num_classes, device):
        super().__init__(config, image_shape, num_classes, device)
        from auditkit.generators.vae import ConditionalVAE

        self.networks = {"vae": ConditionalVAE(self.model_config, image_shape, num_classes).to(device)}
        self.optimizers = {"vae": _adam(self.networks["vae"].parameters(), config, device)}

    def _loss(self, x, y, noise):
        from auditkit.generators.vae import vae_loss

        net = self.networks["vae"]
        eps = noise.randn(self.model_config.latent_dim).to(x.dtype)
        with self.autocast():
            return vae_loss(net, x, y, eps, self.model_config)

    def losses(self, x, y, noise):
        return self._loss(x, y, noise)[0]

    def step(self, x, y, noise):
        loss, parts = self._loss(x, y, noise)
        self._optimize("vae", loss)
        return {"loss": loss.detach(), **{k: v.detach() for k, v in parts.items()}}

    def finish(self, generator, images, labels, seed):
        if self.model_config.prior != "mixture":
            return {}
        # The [-1, 1] copy only here: the other families' finish must not pay for one.
        fit = generator.fit_prior(images.mul(2).sub(1), labels, seed=seed)
        return {"prior": "mixture", "prior_loglik_per_class": fit}


class DiffusionRecipe(Recipe):
    """``ddpm``: one denoising step (epsilon prediction, label dropout for classifier-free guidance)."""

    family = "ddpm"
    ema_name = "denoiser"

    def __init__(self, config, image_shape, num_classes, device):
        super().__init__(config, image_shape, num_classes, device)
        from auditkit.generators.diffusion import NoiseSchedule, build_denoiser

        cfg = self.model_config
        self.networks = {"denoiser": build_denoiser(cfg, image_shape, num_classes).to(device)}
        self.optimizers = {"denoiser": _adam(self.networks["denoiser"].parameters(), config, device)}
        self.schedule = NoiseSchedule(cfg.timesteps, cfg.schedule).to(device)

    def _loss(self, x, y, noise):
        cfg = self.model_config
        t = noise.randint(cfg.timesteps)
        eps = noise.randn(*x.shape[1:]).to(x.dtype)
        if y is not None and cfg.cond_drop > 0:
            # The extra class index num_classes is the "no label" input classifier-free guidance uses.
            drop = noise.rand() < cfg.cond_drop
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        x_t = self.schedule.q_sample(x, t, eps)
        with self.autocast():
            pred = self.networks["denoiser"](x_t, t, y)
        return torch.nn.functional.mse_loss(pred.float(), eps.float())

    def losses(self, x, y, noise):
        return self._loss(x, y, noise)

    def step(self, x, y, noise):
        loss = self._loss(x, y, noise)
        self._optimize("denoiser", loss)
        return {"loss": loss.detach()}


RECIPES: dict[str, type[Recipe]] = {"dcgan": GANRecipe, "vae": VAERecipe, "ddpm": DiffusionRecipe}


def make_recipe(
    config: TrainConfig, image_shape: tuple[int, int, int], num_classes: int, device: torch.device
) -> Recipe:
    """The recipe of ``config.family``."""
    get_family(config.family)  # unknown names get the registry's did-you-mean message
    if config.family not in RECIPES:
        raise ConfigError(
            f"generator family {config.family!r} can be loaded but has no training recipe; "
            f"trainable families: {sorted(RECIPES)}."
        )
    return RECIPES[config.family](config, image_shape, num_classes, device)


__all__ = [
    "RECIPES",
    "DiffusionRecipe",
    "GANRecipe",
    "Recipe",
    "StepNoise",
    "VAERecipe",
    "make_recipe",
    "unwrap",
]
