"""The ``ddpm`` family: denoisers, noise schedule, loss, samplers, guidance and the generator.

Schedules are checked against the published formulas written out here in NumPy; the samplers against an
oracle denoiser (which must reproduce ``x0`` exactly) and against each other (DDIM with ``eta = 1`` is
the ancestral DDPM sampler).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from auditkit.errors import ConfigError
from auditkit.generators.diffusion import (
    DiffusionConfig,
    DiffusionGenerator,
    NoiseSchedule,
    build_denoiser,
    ddim_sample,
    ddpm_sample,
    diffusion_loss,
    guided_eps,
    sampling_timesteps,
)

SHAPE = (3, 8, 8)
UNET = {
    "backbone": "unet",
    "channels": 8,
    "channel_mult": (1, 2),
    "num_res_blocks": 1,
    "attention_resolutions": (4,),
    "attention_heads": 2,
}
DIT = {"backbone": "dit", "dit_dim": 16, "dit_depth": 1, "dit_heads": 2, "patch_size": 2}
TINY = {"timesteps": 20, "sample_steps": 5}


def _config(backbone: dict, **extra) -> DiffusionConfig:
    return DiffusionConfig.parse({**backbone, **TINY, **extra})


def _net(backbone: dict = UNET, num_classes: int = 3, shape=SHAPE, seed: int = 0, **extra) -> torch.nn.Module:
    """A tiny denoiser with every weight perturbed, so that no zero-initialised layer hides a path."""
    torch.manual_seed(seed)
    net = build_denoiser(_config(backbone, **extra), shape, num_classes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def _inputs(n: int = 4, shape=SHAPE, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, 20, (n,), generator=g), torch.arange(n) % 3


# -- denoisers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", [UNET, DIT], ids=["unet", "dit"])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_denoiser_shapes_and_conditioning(backbone, num_classes):
    fresh = build_denoiser(_config(backbone), SHAPE, num_classes)
    x, t, y = _inputs()
    labels = y if num_classes else None
    # Zero-initialised output layers: an untrained denoiser predicts eps = 0 exactly.
    assert torch.equal(fresh(x, t, labels), torch.zeros_like(x))

    net = _net(backbone, num_classes)
    with torch.no_grad():
        out = net(x, t, labels)
        assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
        assert out.abs().max() > 1e-3
        assert not torch.allclose(out, net(x, (t + 7) % 20, labels))  # the timestep matters
        if num_classes:
            assert not torch.allclose(out, net(x, t, (y + 1) % 3))  # the label matters
            # No label is the null class num_classes: the unconditional prediction.
            torch.testing.assert_close(net(x, t, None), net(x, t, torch.full_like(y, num_classes)))
            # Each image is independent of its batch (GroupNorm / LayerNorm, no BatchNorm).
            torch.testing.assert_close(net(x[:1], t[:1], y[:1]), out[:1], rtol=1e-5, atol=1e-5)
    if not num_classes:
        with pytest.raises(ConfigError, match="unconditional"):
            net(x, t, y)


def test_unet_channels_last_and_bf16_autocast():
    net = _net(UNET)
    x, t, y = _inputs()
    with torch.no_grad():
        ref = net(x, t, y)
        net_cl = net.to(memory_format=torch.channels_last)
        out = net_cl(x.contiguous(memory_format=torch.channels_last), t, y)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        for model in (net, _net(DIT)):
            ref = model(x, t, y)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x, t, y).float()
            assert torch.isfinite(low).all()
            # bf16 keeps 8 bits of mantissa: a few per cent of the output's scale.
            assert (low - ref).abs().max() < 0.05 * ref.abs().max()


def test_attention_appears_only_where_asked():
    net = build_denoiser(_config(UNET, attention_resolutions=(4,)), (3, 16, 16), 0)
    assert net.attention_levels == [] and type(net.mid_attn).__name__ == "AttentionBlock"
    net = build_denoiser(_config(UNET, attention_resolutions=(8,)), (3, 16, 16), 0)
    assert net.attention_levels == [8]
    net = build_denoiser(_config(UNET, attention_resolutions=()), (3, 16, 16), 0)
    assert not any(type(m).__name__ == "AttentionBlock" for m in net.modules())


def test_dit_position_embedding_is_not_saved():
    net = build_denoiser(_config(DIT), SHAPE, 3)
    assert "pos_embed" not in net.state_dict()
    assert net.pos_embed.shape == (1, 16, 16)


# -- schedule -------------------------------------------------------------------------------------------


def test_linear_schedule_matches_ho_et_al():
    s = NoiseSchedule(1000, "linear")
    betas = np.linspace(0.0001, 0.02, 1000)  # Ho et al. 2020, section 4
    alpha_bar = np.cumprod(1 - betas)
    assert s.betas.dtype == torch.float32 and s.alphas_cumprod.dtype == torch.float32
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), alpha_bar, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(s.alphas_cumprod64, alpha_bar, rtol=1e-12)
    # Other T: the same noise range, betas scaled by 1000 / T.
    np.testing.assert_allclose(
        NoiseSchedule(250, "linear").betas64, np.linspace(0.0004, 0.08, 250), rtol=1e-12
    )


def test_cosine_schedule_matches_nichol_dhariwal():
    T, s = 1000, 0.008
    sched = NoiseSchedule(T, "cosine")

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    # Training step i (0-based) is the paper's t = i + 1; the last beta is clipped to 0.999.
    reference = np.array([f(i + 1) / f(0) for i in range(T - 1)])
    np.testing.assert_allclose(sched.alphas_cumprod64[: T - 1], reference, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy()[: T - 1], reference, rtol=1e-5, atol=1e-9)
    assert sched.betas64[-1] == pytest.approx(0.999)
    assert np.all(np.diff(sched.alphas_cumprod64) < 0)


def test_q_sample_formula_and_moments():
    sched = NoiseSchedule(100, "cosine")
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand((6, 3, 4, 4), generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 10, 50, 90, 99, 3])
    a = sched.alphas_cumprod64[t.numpy()][:, None, None, None]
    expected = np.sqrt(a) * x0.double().numpy() + np.sqrt(1 - a) * noise.double().numpy()
    np.testing.assert_allclose(sched.q_sample(x0, t, noise).numpy(), expected, rtol=1e-5, atol=1e-6)

    n, step, c = 200_000, 40, 0.7
    xt = sched.q_sample(
        torch.full((n, 1, 1, 1), c), torch.full((n,), step), torch.randn((n, 1, 1, 1), generator=g)
    )
    abar = sched.alphas_cumprod64[step]
    sd = math.sqrt(1 - abar)
    assert abs(xt.mean().item() - math.sqrt(abar) * c) < 5 * sd / math.sqrt(n)
    assert abs(xt.std().item() - sd) < 5 * sd / math.sqrt(2 * n)


def test_sampling_timesteps():
    assert sampling_timesteps(20, 20) == list(range(19, -1, -1))
    assert sampling_timesteps(20, 4) == [15, 10, 5, 0]
    assert sampling_timesteps(20, 6) == [16, 13, 10, 6, 3, 0]
    assert sampling_timesteps(1000, 50)[:2] == [980, 960]
    with pytest.raises(ConfigError, match="steps"):
        sampling_timesteps(20, 21)


# -- loss -----------------------------------------------------------------------------------------------


def test_diffusion_loss_is_reproducible_from_the_generator_alone():
    net = _net(UNET).train()
    sched = NoiseSchedule(20, "cosine")
    x0 = torch.rand((4, *SHAPE)) * 2 - 1
    y = torch.tensor([0, 1, 2, 0])

    def loss_and_grads(seed: int, **kw):
        net.zero_grad()
        loss = diffusion_loss(net, x0, y, sched, torch.Generator().manual_seed(seed), **kw)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in net.parameters()]

    global_state = torch.get_rng_state()
    a, ga = loss_and_grads(3, cond_drop=0.5)
    torch.manual_seed(12345)  # the global RNG plays no part
    b, gb = loss_and_grads(3, cond_drop=0.5)
    c, _ = loss_and_grads(4, cond_drop=0.5)
    assert torch.equal(a, b) and all(torch.equal(p, q) for p, q in zip(ga, gb, strict=True))
    assert not torch.equal(a, c)
    torch.set_rng_state(global_state)
    diffusion_loss(net, x0, y, sched, torch.Generator().manual_seed(3), cond_drop=0.5)
    assert torch.equal(torch.get_rng_state(), global_state)

    # Dropping every label is training on the null class (t and noise are drawn before the dropout).
    g = torch.Generator().manual_seed(5)
    dropped = diffusion_loss(net, x0, y, sched, g, cond_drop=1.0)
    null = diffusion_loss(
        net, x0, torch.full_like(y, 3), sched, torch.Generator().manual_seed(5), cond_drop=0.0
    )
    torch.testing.assert_close(dropped, null, rtol=0, atol=0)


# -- guidance and samplers -----------------------------------------------------------------------------


class _Counting(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.num_classes, self.batches = net, net.num_classes, []

    def forward(self, x, t, labels):
        self.batches.append(x.shape[0])
        return self.net(x, t, labels)


def test_classifier_free_guidance():
    net = _net(UNET)
    x, _, y = _inputs()
    t = torch.full((4,), 7)
    with torch.no_grad():
        cond, uncond = net(x, t, y), net(x, t, torch.full_like(y, 3))
        torch.testing.assert_close(guided_eps(net, x, 7, y, 1.0), cond)
        torch.testing.assert_close(guided_eps(net, x, 7, y, 0.0), uncond)
        counting = _Counting(net)
        guided = guided_eps(counting, x, 7, y, 2.5)
        assert counting.batches == [8]  # one forward over the conditional and null halves
        torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-5)
        # The batched w ≠ 0, 1 path at w = 1 + tiny agrees with the conditional prediction.
        torch.testing.assert_close(guided_eps(net, x, 7, y, 1.0 + 1e-7), cond, rtol=1e-5, atol=1e-5)


class _Oracle(torch.nn.Module):
    """Predicts the exact noise of x_t for one known x0: every sampler must return that x0."""

    num_classes = 0

    def __init__(self, x0: torch.Tensor, schedule: NoiseSchedule) -> None:
        super().__init__()
        self.x0, self.abar = x0, schedule.alphas_cumprod64

    def forward(self, x, t, labels):
        a = float(self.abar[int(t[0])])
        return (x - math.sqrt(a) * self.x0) / math.sqrt(1 - a)


def test_samplers_recover_x0_with_an_oracle_denoiser():
    sched = NoiseSchedule(50, "linear")
    x0 = torch.rand((2, *SHAPE), dtype=torch.float64) * 1.8 - 0.9
    x_T = torch.randn(x0.shape, dtype=torch.float64)
    oracle = _Oracle(x0, sched)
    for steps in (50, 7):
        torch.testing.assert_close(ddim_sample(oracle, x_T, None, sched, steps), x0)
        out = ddpm_sample(oracle, x_T, None, sched, torch.Generator().manual_seed(0), steps=steps)
        torch.testing.assert_close(out, x0)
        out = ddim_sample(oracle, x_T, None, sched, steps, eta=0.5, rng=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, x0)


def test_ddim_eta0_is_deterministic_and_eta1_is_ancestral_ddpm():
    net = _net(UNET)
    sched = NoiseSchedule(20, "cosine")
    x_T, _, y = _inputs()
    with torch.no_grad():
        a = ddim_sample(net, x_T, y, sched, 5, eta=0.0, rng=None, guidance=2.0)
        b = ddim_sample(net, x_T, y, sched, 5, eta=0.0, rng=torch.Generator().manual_seed(9), guidance=2.0)
        assert torch.equal(a, b) and a.abs().max() <= 1.0
        for steps in (20, 6):
            ddim = ddim_sample(
                net, x_T, y, sched, steps, eta=1.0, rng=torch.Generator().manual_seed(1), guidance=2.0
            )
            ddpm = ddpm_sample(
                net, x_T, y, sched, torch.Generator().manual_seed(1), guidance=2.0, steps=steps
            )
            torch.testing.assert_close(ddim, ddpm, rtol=1e-4, atol=1e-4)
            other = ddpm_sample(
                net, x_T, y, sched, torch.Generator().manual_seed(2), guidance=2.0, steps=steps
            )
            assert (other - ddpm).abs().max() > 1e-2


# -- the generator ------------------------------------------------------------------------------------


def _generator(**extra) -> DiffusionGenerator:
    cfg = _config(UNET, **extra)
    return DiffusionGenerator(
        _net(UNET, **extra).train(),
        cfg,
        image_shape=SHAPE,
        class_names=("circle", "square", "triangle"),
        condition="shape",
        batch_size=4,
    )


@pytest.mark.parametrize(
    "sampler", [{"sampler": "ddim"}, {"sampler": "ddim", "eta": 1.0}, {"sampler": "ddpm"}]
)
def test_generator_sample_is_seeded(sampler):
    gen = _generator(**sampler)
    a = gen.sample(6, labels="square", seed=11)
    assert a.shape == (6, *SHAPE) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.05
    assert torch.equal(a, gen.sample(6, labels="square", seed=11))
    assert (a - gen.sample(6, labels="square", seed=12)).abs().max() > 1e-2
    assert gen.network.training  # eval while sampling, the caller's mode restored after
    assert gen.latent_shape == SHAPE and gen.describe()["sampler"] == sampler["sampler"]


def test_generator_forward_is_differentiable_and_matches_sample():
    gen = _generator(sample_steps=3)
    z = torch.randn((2, *SHAPE), requires_grad=True)
    labels = torch.tensor([0, 2])
    images = gen(z, labels)
    assert images.shape == (2, *SHAPE) and images.min() >= 0 and images.max() <= 1
    images.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    # sample() with the default deterministic DDIM is forward() on the seeded noise.
    seed_z = torch.randn((2, *SHAPE), generator=torch.Generator().manual_seed(5))
    sampled = gen.sample(2, labels=[0, 2], seed=5)
    torch.testing.assert_close(sampled, gen(seed_z, labels).detach())


def test_generator_through_the_registry_round_trip(tmp_path):
    from auditkit.generators.registry import create_generator, generator_spec, load_generator, save_generator

    options = {**DIT, **TINY}
    gen = create_generator(
        "ddpm", image_shape=SHAPE, class_names=("a", "b"), condition="c", seed=0, **options
    )
    assert isinstance(gen, DiffusionGenerator)
    with torch.no_grad():
        for p in gen.network.parameters():
            p.add_(0.1)
    spec = generator_spec("ddpm", gen.config, SHAPE, ("a", "b"), "c")
    loaded = load_generator(save_generator(gen.network, spec, tmp_path / "generator.safetensors"))
    torch.testing.assert_close(loaded.sample(3, seed=1), gen.sample(3, seed=1))


# -- configuration errors -------------------------------------------------------------------------------


def test_bad_configs_raise_config_error():
    with pytest.raises(ConfigError, match="divisible by 4"):
        build_denoiser(DiffusionConfig(), (3, 30, 30), 3)
    with pytest.raises(ConfigError, match="patch_size=4"):
        build_denoiser(DiffusionConfig(backbone="dit", patch_size=4), (3, 30, 30), 3)
    with pytest.raises(ConfigError, match="backbone"):
        DiffusionConfig.parse({"backbone": "vit"})
    with pytest.raises(ConfigError, match="unknown key 'chanels'"):
        DiffusionConfig.parse({"chanels": 32})
    with pytest.raises(ConfigError, match="sample_steps"):
        DiffusionConfig.parse({"timesteps": 10, "sample_steps": 50})
    with pytest.raises(ConfigError, match="dit_heads"):
        build_denoiser(DiffusionConfig(backbone="dit", dit_dim=20, dit_heads=3), SHAPE, 0)
    with pytest.raises(ConfigError, match="2 classes"):
        DiffusionGenerator(
            _net(UNET, num_classes=2), _config(UNET), image_shape=SHAPE, class_names=("a", "b", "c")
        )
    reduced = DiffusionConfig.reduced(guidance=3.0)
    assert (reduced.channels, reduced.guidance, reduced.sampler) == (16, 3.0, "ddpm")
