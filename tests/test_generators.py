"""The Generator protocol: every family and wrapper, sampling, seeding, labels, output checks, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auditkit.errors import ConfigError, GeneratorError, WeightsError
from auditkit.generators import (
    BaseGenerator,
    Generator,
    ModuleGenerator,
    create_generator,
    generator_spec,
    known_families,
    load_generator,
    save_generator,
)

SHAPE = (3, 16, 16)
CLASSES = ("circle", "square", "triangle")
SMALL = {
    "dcgan": {"latent_dim": 8, "width": 8, "embed_dim": 4},
    "vae": {"latent_dim": 8, "width": 8, "embed_dim": 4},
    "ddpm": {"channels": 8, "sample_steps": 3, "timesteps": 50},
}


class _Linear(nn.Module):
    """A tiny user generator: z (N×4) -> tanh images N×1×8×8, ignoring labels."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 64)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 1, 8, 8)


def _family(name: str, conditional: bool = True) -> BaseGenerator:
    if name == "ddpm":
        pytest.importorskip("auditkit.generators.diffusion")
    return create_generator(
        name, image_shape=SHAPE, class_names=CLASSES if conditional else (), seed=0, **SMALL[name]
    )


def test_registry_lists_the_trainable_families():
    assert {"dcgan", "vae", "ddpm"} <= set(known_families())


@pytest.mark.parametrize("family", ["dcgan", "vae", "ddpm"])
@pytest.mark.parametrize("conditional", [True, False])
def test_family_follows_the_protocol(family, conditional):
    gen = _family(family, conditional)
    assert isinstance(gen, Generator)
    assert gen.image_shape == SHAPE
    assert gen.num_classes == (3 if conditional else 0)
    images = gen.sample(5, seed=1, batch_size=2)
    assert images.dtype == torch.float32 and images.shape == (5, *SHAPE)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.equal(images, gen.sample(5, seed=1, batch_size=2))
    assert not torch.equal(images, gen.sample(5, seed=2, batch_size=2))


@pytest.mark.parametrize("family", ["dcgan", "vae"])
def test_one_shot_families_do_not_depend_on_batch_size(family):
    gen = _family(family)
    a = gen.sample(7, seed=3, batch_size=7)
    b = gen.sample(7, seed=3, batch_size=2)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # BLAS may split differently per batch size


@pytest.mark.parametrize("family", ["dcgan", "vae", "ddpm"])
def test_forward_is_differentiable_in_z(family):
    gen = _family(family)
    z = torch.randn(2, *gen.latent_shape, requires_grad=True)
    net = gen.network
    net.eval()
    out = gen.forward(z, torch.tensor([0, 2]))
    assert out.shape == (2, *SHAPE)
    out.sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_labels_by_name_index_and_sequence():
    gen = _family("dcgan")
    a = gen.sample(4, labels="square", seed=0)
    b = gen.sample(4, labels=1, seed=0)
    c = gen.sample(4, labels=["square"] * 4, seed=0)
    d = gen.sample(4, labels=torch.ones(4, dtype=torch.long), seed=0)
    assert torch.equal(a, b) and torch.equal(a, c) and torch.equal(a, d)
    assert not torch.equal(a, gen.sample(4, labels="circle", seed=0))
    batches = list(gen.sample_batches(5, labels="triangle", seed=0, batch_size=2))
    assert [tuple(y.tolist()) for _, y in batches] == [(2, 2), (2, 2), (2,)]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ("hexagon", "unknown class 'hexagon'"),
        (5, "out of range"),
        ([0, 1], "got 2 labels for 4 images"),
        (torch.zeros(4), "integer tensor"),
        (1.5, "class index or name"),
        ([0.5] * 4, "class index or name"),
    ],
)
def test_bad_labels_are_config_errors(labels, match):
    gen = _family("dcgan")
    with pytest.raises(ConfigError, match=match):
        gen.sample(4, labels=labels, seed=0)


def test_labels_on_an_unconditional_generator_are_refused():
    with pytest.raises(ConfigError, match="unconditional"):
        _family("dcgan", conditional=False).sample(2, labels=0)


def test_module_wrapper_converts_the_declared_range_once():
    net = _Linear()
    gen = ModuleGenerator(net, latent_shape=(4,), image_shape=(1, 8, 8), output_range=(-1, 1))
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(gen.forward(z), (net(z) + 1) / 2)
    assert isinstance(gen, Generator)
    images = gen.sample(6, seed=0, batch_size=4)
    assert images.shape == (6, 1, 8, 8)


def test_callable_wrapper_with_labels_and_255_range():
    def fn(z, labels):
        return (labels.float().view(-1, 1, 1, 1) * 100).expand(-1, 3, 4, 4) + 0 * z.sum()

    gen = ModuleGenerator(
        fn, latent_shape=(2,), image_shape=(3, 4, 4), output_range=(0, 255), class_names=["a", "b", "c"]
    )
    images = gen.sample(3, labels=[0, 1, 2], seed=0)
    torch.testing.assert_close(images[:, 0, 0, 0], torch.tensor([0.0, 100 / 255, 200 / 255]))


def _poisoned(bad_call: int, bad_index: int, value: float):
    """A wrapped callable whose ``bad_call``-th batch has ``value`` in image ``bad_index``."""
    calls = {"n": 0}

    def fn(z):
        out = torch.full((z.shape[0], 1, 4, 4), 0.5)
        if calls["n"] == bad_call:
            out[bad_index, 0, 2, 1] = value
        calls["n"] += 1
        return out

    return ModuleGenerator(fn, latent_shape=(1,), image_shape=(1, 4, 4))


def test_nan_and_inf_outputs_are_reported_with_their_batch():
    with pytest.raises(GeneratorError, match=r"batch 0 \(images 0\.\.3\) produced NaN \(first at image 1\)"):
        _poisoned(0, 1, float("nan")).sample(8, seed=0, batch_size=4)
    with pytest.raises(
        GeneratorError, match=r"batch 2 \(images 8\.\.11\) produced infinite values \(first at image 9\)"
    ):
        _poisoned(2, 1, float("inf")).sample(12, seed=0, batch_size=4)


def test_out_of_range_and_wrong_shape_outputs_are_errors():
    def over(z):
        return torch.full((z.shape[0], 1, 4, 4), 1.2)

    with pytest.raises(GeneratorError, match=r"outside \[0, 1\].*output_range"):
        ModuleGenerator(over, latent_shape=(1,), image_shape=(1, 4, 4)).sample(2, seed=0)
    clamped = ModuleGenerator(over, latent_shape=(1,), image_shape=(1, 4, 4), clamp=True).sample(2, seed=0)
    assert float(clamped.max()) == 1.0
    with pytest.raises(GeneratorError, match=r"returned shape \(2, 1, 4, 4\); expected \(2, 3, 4, 4\)"):
        ModuleGenerator(over, latent_shape=(1,), image_shape=(3, 4, 4), clamp=True).sample(2, seed=0)


def test_unknown_family_and_unsupported_size_are_config_errors():
    with pytest.raises(ConfigError, match="unknown generator family 'dcgann'.*Did you mean 'dcgan'"):
        create_generator("dcgann")
    with pytest.raises(ConfigError, match="power-of-two side"):
        create_generator("dcgan", image_shape=(3, 24, 24))
    with pytest.raises(ConfigError, match="unknown key 'widht'"):
        create_generator("dcgan", widht=3)


@pytest.mark.parametrize("family", ["dcgan", "vae", "ddpm"])
def test_export_and_load_give_the_same_images(tmp_path, family):
    gen = _family(family)
    spec = generator_spec(family, gen.model_config, SHAPE, CLASSES, "shape")
    path = save_generator(gen.network, spec, tmp_path / "generator.safetensors")
    loaded = load_generator(tmp_path)
    assert loaded.class_names == CLASSES and loaded.condition == "shape"
    gen.network.eval()
    torch.testing.assert_close(loaded.sample(4, seed=5), gen.sample(4, seed=5), rtol=0, atol=0)

    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="generator"):
        load_generator(path)


def test_missing_generator_file_names_the_path(tmp_path):
    with pytest.raises(WeightsError, match=str(tmp_path / "generator.safetensors")):
        load_generator(tmp_path)


def test_onnx_generator_equals_the_module_it_was_exported_from(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import warnings

    from auditkit.generators import OnnxGenerator

    gen = _family("dcgan")
    net = gen.network.eval()
    path = tmp_path / "g.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            net,
            (torch.randn(2, 8), torch.tensor([0, 1])),
            str(path),
            dynamo=False,
            input_names=["z", "labels"],
            output_names=["images"],
            dynamic_axes={"z": {0: "n"}, "labels": {0: "n"}, "images": {0: "n"}},
        )
    onnx_gen = OnnxGenerator(
        path, latent_shape=(8,), image_shape=SHAPE, output_range=(-1, 1), class_names=CLASSES, clamp=True
    )
    assert isinstance(onnx_gen, Generator)
    expected = gen.sample(5, labels=[0, 1, 2, 2, 1], seed=4, batch_size=2)
    got = onnx_gen.sample(5, labels=[0, 1, 2, 2, 1], seed=4, batch_size=2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    with pytest.raises(GeneratorError, match="not differentiable"):
        onnx_gen.forward(torch.zeros(1, 8, requires_grad=True), torch.tensor([0]))
    with pytest.raises(WeightsError, match="does not exist"):
        OnnxGenerator(tmp_path / "nope.onnx", latent_shape=(8,), image_shape=SHAPE)
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(WeightsError, match="cannot load ONNX generator"):
        OnnxGenerator(tmp_path / "bad.onnx", latent_shape=(8,), image_shape=SHAPE)


def test_diffusers_pipeline_behind_the_protocol():
    diffusers = pytest.importorskip("diffusers")
    from auditkit.generators import DiffusersGenerator

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )
    pipeline = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=10))
    gen = DiffusersGenerator(pipeline, image_shape=(3, 16, 16), num_inference_steps=3, batch_size=2)
    assert isinstance(gen, Generator)
    images = gen.sample(3, seed=7)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.equal(images, gen.sample(3, seed=7))
    assert not torch.equal(images, gen.sample(3, seed=8))
    with pytest.raises(GeneratorError, match="draws its own latents"):
        gen.forward(torch.zeros(1, 1))


def test_discriminator_groups_keep_real_and_fake_apart():
    from auditkit.generators.dcgan import DCGANConfig, DCGANDiscriminator

    cfg = DCGANConfig(width=8, d_batchnorm=True, minibatch_std=4, spectral_norm=False)
    disc = DCGANDiscriminator(cfg, (3, 16, 16), 3).train()
    real = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fake = 3 * torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1] * 2)
    joint = disc(torch.cat([real, fake]), y, groups=2)
    apart = torch.cat([disc(real, y[:8]), disc(fake, y[8:])])
    torch.testing.assert_close(joint, apart, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(joint, disc(torch.cat([real, fake]), y, groups=1))  # mixing would change it


def test_mode_seeking_loss_matches_its_definition():
    from auditkit.generators.dcgan import mode_seeking_loss

    g = torch.Generator().manual_seed(0)
    fake, z = torch.rand(7, 3, 4, 4, generator=g), torch.randn(7, 5, generator=g)
    # Pairs are neighbours (0, 1), (2, 3), (4, 5); the odd last sample is left out.
    ratios = [float((fake[i] - fake[i + 1]).abs().mean() / (z[i] - z[i + 1]).abs().mean()) for i in (0, 2, 4)]
    expected = 1 / (sum(ratios) / 3 + 1e-5)
    assert float(mode_seeking_loss(fake, z)) == pytest.approx(expected, rel=1e-6)
    # A custom mean (training under DDP passes the all-process one) replaces the batch mean.
    assert float(mode_seeking_loss(fake, z, mean=torch.max)) == pytest.approx(1 / (max(ratios) + 1e-5))


def test_pair_labels_gives_each_pair_one_class():
    from auditkit.generators.dcgan import pair_labels

    assert pair_labels(torch.tensor([3, 1, 4, 1, 5])).tolist() == [3, 3, 4, 4, 5]
