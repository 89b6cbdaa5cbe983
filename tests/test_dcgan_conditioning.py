"""Class conditioning of the dcgan family: conditional batch norm in G, the AC-GAN class head on D."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from scipy.special import logsumexp

from auditkit.errors import ConfigError, WeightsError
from auditkit.generators import create_generator, load_generator
from auditkit.generators.dcgan import (
    ConditionalBatchNorm2d,
    DCGANConfig,
    DCGANDiscriminator,
    DCGANGenerator,
)
from auditkit.generators.registry import generator_spec, save_generator
from auditkit.store import RunStore
from auditkit.training import load_config, train
from auditkit.training.recipes import StepNoise, make_recipe

TINY = {"latent_dim": 8, "width": 8, "embed_dim": 4}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_conditional_bn_with_equal_class_embeddings_is_plain_batchnorm():
    cbn = ConditionalBatchNorm2d(5, 3)
    _randomise(cbn, 0)  # non-trivial gain and bias maps
    e0 = torch.tensor([0.3, -1.2, 0.7])
    plain = torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        plain.weight.copy_(1 + cbn.gain(e0))
        plain.bias.copy_(cbn.bias(e0))
    x = torch.randn(6, 5, 4, 4, generator=torch.Generator().manual_seed(1)) * 3 + 1
    e = e0.expand(6, 3)
    torch.testing.assert_close(cbn(x, e), plain(x), rtol=1e-5, atol=1e-6)  # batch statistics
    torch.testing.assert_close(cbn.bn.running_mean, plain.running_mean)
    torch.testing.assert_close(cbn.bn.running_var, plain.running_var)
    cbn.eval(), plain.eval()
    torch.testing.assert_close(cbn(x, e), plain(x), rtol=1e-5, atol=1e-6)  # running statistics
    # Different embeddings per sample do change the output (the layer is conditional at all).
    e_mixed = torch.stack([e0, -e0] * 3)
    assert not torch.allclose(cbn(x, e_mixed), plain(x), atol=1e-3)


def test_conditional_bn_generator_follows_only_its_embedding():
    cfg = DCGANConfig(**TINY, cond_bn=True)
    torch.manual_seed(0)
    gen = DCGANGenerator(cfg, (3, 16, 16), 3).eval()
    for module in gen.modules():
        if isinstance(module, ConditionalBatchNorm2d):
            _randomise(module.gain, 1)
            _randomise(module.bias, 2)
    z = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = gen(z, torch.tensor([0, 1, 2, 0]))
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
    assert float(out.abs().max()) <= 1.0
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in gen.modules()) == 2  # every BN: at 4×4 and 8×8
    with torch.no_grad():
        gen.embed.weight[:] = gen.embed.weight[0]  # all classes look alike now
        same = gen(z.repeat(3, 1), torch.arange(3).repeat_interleave(4))
    torch.testing.assert_close(same[:4], same[4:8], rtol=0, atol=0)
    torch.testing.assert_close(same[:4], same[8:], rtol=0, atol=0)
    # cond_bn on an unconditional model has nothing to condition on: plain BatchNorm, as before.
    uncond = DCGANGenerator(cfg, (3, 16, 16), 0)
    assert not any(isinstance(m, ConditionalBatchNorm2d) for m in uncond.modules())


def test_generators_saved_before_the_options_existed_still_load(tmp_path):
    gen = create_generator("dcgan", class_names=("a", "b"), condition="shape", seed=0, **TINY)
    net = gen.network.eval()
    old = generator_spec("dcgan", gen.model_config, (3, 32, 32), ("a", "b"), "shape")
    old["model"] = {k: v for k, v in old["model"].items() if k not in ("cond_bn", "aux_classifier")}
    path = tmp_path / "generator.safetensors"
    save_generator(net, old, path)
    with safe_open(str(path), framework="pt") as f:
        assert "cond_bn" not in json.loads(f.metadata()["spec"])["model"]
    loaded = load_generator(path)
    assert set(loaded.network.state_dict()) == set(net.state_dict())  # same keys as the default build
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded.network.eval()(z, labels), net(z, labels), rtol=0, atol=0)
    # A damaged spec that asks for cond_bn against old weights is a clear error, not a silent mismatch.
    spec = dict(old, model=dict(old["model"], cond_bn=True))
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "auditkit-generator/1", "spec": json.dumps(spec)})
    with pytest.raises(WeightsError, match="do not fit their own spec"):
        load_generator(path)


def test_discriminator_class_head_only_when_asked_for():
    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    plain = DCGANDiscriminator(DCGANConfig(**TINY), (3, 16, 16), 3)
    assert plain.classify is None and plain(x, y).shape == (4,)
    with pytest.raises(ConfigError, match="aux_classifier"):
        plain(x, y, with_classes=True)
    # eval: spectral norm's power iteration would otherwise move between the two calls
    with_head = DCGANDiscriminator(DCGANConfig(**TINY, aux_classifier=0.5), (3, 16, 16), 3).eval()
    score, classes = with_head(x, y, with_classes=True)
    assert score.shape == (4,) and classes.shape == (4, 3)
    torch.testing.assert_close(score, with_head(x, y))  # the head does not change the realness logit
    assert DCGANDiscriminator(DCGANConfig(**TINY, aux_classifier=0.5), (3, 16, 16), 0).classify is None
    with pytest.raises(ConfigError, match="aux_classifier"):
        load_config({"family": "dcgan", "model": {"aux_classifier": -1}})


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy in float64 NumPy/SciPy, independent of torch's implementation."""
    z = logits.detach().double().numpy()
    picked = z[np.arange(len(z)), labels.numpy()]
    return float(np.mean(logsumexp(z, axis=1) - picked))


def test_gan_step_adds_the_class_heads_cross_entropy_to_both_losses():
    weight = 0.7
    config = load_config(
        {
            "family": "dcgan",
            "model": {**TINY, "aux_classifier": weight, "mode_seeking": 0.0, "instance_noise": 0.1},
            "device": "cpu",
        }
    )
    torch.manual_seed(0)
    recipe = make_recipe(config, (3, 16, 16), 3, torch.device("cpu"))
    D = recipe.networks["D"]
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    D.register_forward_hook(lambda module, args, out: seen.append(tuple(t.detach().clone() for t in out)))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1])
    out = recipe.step(x, y, StepNoise(torch.Generator().manual_seed(2), 8))
    assert len(seen) == 2  # one D call for the D step (real and fake together), one for the G step
    (score_d, classes_d), (score_g, classes_g) = seen
    assert classes_d.shape == (16, 3) and classes_g.shape == (8, 3)

    aux_real = _cross_entropy(classes_d[:8], y)
    assert float(out["aux_real"]) == pytest.approx(aux_real, rel=1e-5)
    hinge = float(torch.relu(1 - score_d[:8]).double().mean() + torch.relu(1 + score_d[8:]).double().mean())
    assert float(out["loss_d"]) == pytest.approx(hinge + weight * aux_real, rel=1e-5)

    aux_fake = _cross_entropy(classes_g, y)
    assert float(out["aux_fake"]) == pytest.approx(aux_fake, rel=1e-5)
    assert float(out["loss_g"]) == pytest.approx(
        -float(score_g.double().mean()) + weight * aux_fake, rel=1e-5
    )
    # The D step reached the head (its gradient is kept until the next D step clears it).
    assert D.classify.weight.grad is not None and float(D.classify.weight.grad.abs().sum()) > 0


def test_conditioned_training_resumes_bit_for_bit(tmp_path):
    config = {
        "family": "dcgan",
        "data": {"source": "shapes", "n": 64, "size": 16, "seed": 0},
        "model": {**TINY, "cond_bn": True, "aux_classifier": 0.5},
        "steps": 4,
        "batch_size": 16,
        "log_every": 1,
        "sample_every": 100,
        "checkpoint_every": 2,
        "device": "cpu",
        "seed": 3,
    }
    store = RunStore(tmp_path)
    whole = train(config, store=store, progress=False)
    first = train(dict(config, steps=2), store=store, progress=False)
    resumed = train(store=store, resume=first.run_id, steps=4, progress=False)
    a = load_generator(whole.run_dir).network.state_dict()
    b = load_generator(resumed.run_dir).network.state_dict()
    assert a.keys() == b.keys() and any(".gain." in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    logged = [json.loads(line) for line in (whole.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["aux_real"]) and np.isfinite(row["aux_fake"]) for row in logged)
