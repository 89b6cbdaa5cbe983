"""Latent attribution against a stand-in generator whose ground truth is known, and against Captum itself.

The stand-in renders Shapes-like 32×32 images differentiably: the class condition goes through an
``nn.Embedding`` and decides the shape (a blend of soft circle/square/triangle masks weighted by a softmax of
a projection of the embedding vector), latent dims 0 and 1 decide the colour, dim 2 the horizontal position,
and dims 3..5 nothing. The session judge (trained on real Shapes) reads its images; the first test checks it.

Colour: red, green and blue own three directions 120° apart in the ``(z0, z1)`` plane; the fill mixes the
Shapes palette and a dark grey by a softmax of ``8·(z·u_c) - 4`` and ``0``, so a latent near the origin is
dark grey. Why not a plain mixture of the palette: its centre (the baseline ``z = 0``) is about the grey of
the background, so the baseline shape is invisible and integrated gradients rightly credit the colour dims
with making any shape readable at all; with the first design tried that way, colour shared the shape's
attribution with the condition. A dark baseline keeps the shape visible, so what the condition decides
(which shape) is separated from what the colour decides.
"""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients
from PIL import Image
from torch import nn

from auditkit.data.shapes import ATTRIBUTES, BACKGROUND, PALETTE
from auditkit.errors import ConfigError, ExplainError
from auditkit.explain.latent import (
    LatentAttribution,
    latent_attribution,
    latent_traversal,
    traversal_figure,
)
from auditkit.generators.registry import create_generator
from auditkit.generators.wrappers import ModuleGenerator

torch.set_num_threads(1)

SHAPES = ATTRIBUTES["shape"]
LATENT = 6
DARK = (0.1, 0.1, 0.1)


class ShapeRenderer(nn.Module):
    """``(z, labels) -> images`` in ``[0, 1]``; ``render(z, e)`` takes the embedding vector directly."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.size = size
        self.embed = nn.Embedding(3, 4)
        self.to_shape = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([[1.0, 0, 0, 0.5], [0, 1, 0, -0.5], [0, 0, 1, 0.25]]))
            self.to_shape.weight.copy_(8 * torch.eye(3, 4))
        palette = [PALETTE[c] for c in ATTRIBUTES["colour"]] + [DARK]
        self.register_buffer("palette", torch.tensor(palette))
        angles = torch.tensor([90.0, 210.0, 330.0]).deg2rad()  # red, green, blue
        self.register_buffer("directions", torch.stack([angles.cos(), angles.sin()], dim=1))

    def colour_weights(self, z: torch.Tensor) -> torch.Tensor:
        """Weights of red, green, blue and dark grey (``N × 4``)."""
        logits = 8 * z[:, :2] @ self.directions.T - 4
        return F.softmax(torch.cat([logits, torch.zeros_like(logits[:, :1])], dim=1), dim=1)

    def render(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        s = self.size
        shape_weights = F.softmax(self.to_shape(e), dim=1)
        fill = self.colour_weights(z) @ self.palette
        cx = s * (0.5 + 0.2 * torch.tanh(1.5 * z[:, 2]))
        r = 0.26 * s  # Shapes' "large"
        coords = torch.arange(s, dtype=torch.float32) + 0.5
        dx = (coords.view(1, 1, s) - cx.view(-1, 1, 1)).expand(-1, s, s)
        dy = (coords - 0.5 * s).view(1, s, 1).expand_as(dx)
        circle = r - torch.sqrt(dx * dx + dy * dy + 1e-6)
        square = r - torch.maximum(dx.abs(), dy.abs())
        triangle = torch.minimum(r - dy, (dy + r - 2 * dx.abs()) / math.sqrt(5))  # apex up, as Shapes
        masks = torch.sigmoid(2 * torch.stack([circle, square, triangle], dim=1))
        mask = (shape_weights.view(-1, 3, 1, 1) * masks).sum(1, keepdim=True)
        return BACKGROUND * (1 - mask) + fill.view(-1, 3, 1, 1) * mask

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.render(z, self.embed(labels))


class NoGradRenderer(ShapeRenderer):
    """The same images, computed without gradients (as an exported graph would be)."""

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().forward(z, labels)


def stand_in(*, embedding: bool = True, cls: type[ShapeRenderer] = ShapeRenderer) -> ModuleGenerator:
    net = cls()
    return ModuleGenerator(
        net,
        latent_shape=(LATENT,),
        image_shape=(3, 32, 32),
        class_names=SHAPES,
        condition="shape",
        name="stand-in",
        label_embedding=net.embed if embedding else None,
    )


def log_prob(judge, attribute: str, images: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(judge.head(attribute)(images), dim=1)


@pytest.fixture(scope="module")
def results(trained_judge) -> dict[str, LatentAttribution]:
    gen = stand_in()
    return {
        a: latent_attribution(gen, trained_judge, a, n=64, seed=0) for a in ("shape", "colour", "position")
    }


def test_judge_reads_the_stand_in(trained_judge) -> None:
    gen = stand_in()
    rng = torch.Generator().manual_seed(5)
    z, y = torch.randn(200, LATENT, generator=rng), torch.randint(0, 3, (200,), generator=rng)
    with torch.no_grad():
        pred = trained_judge.predict(gen.forward(z, y))
    colour = gen.model.colour_weights(z).argmax(1)
    coloured = colour < 3  # not the dark grey near z = 0, which has no colour in Shapes
    t = torch.tanh(1.5 * z[:, 2])
    position = torch.where(t < -0.5, 0, torch.where(t > 0.5, 2, 1))
    assert coloured.sum() > 100
    assert (pred[:, 0] == y).float().mean() >= 0.95
    assert (pred[coloured, 1] == colour[coloured]).float().mean() >= 0.95
    assert (pred[:, 3] == position).float().mean() >= 0.9


def test_condition_is_the_top_driver_of_shape(results) -> None:
    res = results["shape"]
    assert res.condition_method == "ig" and res.method == "ig"
    ranking = res.ranking()
    assert ranking[0]["input"] == "condition"
    assert ranking[0]["share"] > 0.5  # more than all latent dims together
    assert math.isclose(sum(r["share"] for r in ranking), 1.0, rel_tol=1e-6)
    # the generator ignores dims 3..5: their gradient is exactly zero
    # ignored dims change nothing up to float rounding of the batched network (~4e-8 on Intel oneDNN)
    assert res.latent_mean_abs[3:].max() < 1e-6


def test_colour_and_position_dims_rank_top(results) -> None:
    colour = results["colour"]
    assert {r["input"] for r in colour.ranking(2)} == {"z[0]", "z[1]"}
    assert set(colour.top_dims(2)) == {0, 1}
    position = results["position"]
    assert position.top_input == "z[2]" and position.top_dims(1) == [2]
    assert position.ranking(1)[0]["share"] > 0.5
    for res in (colour, position):
        # ignored dims change nothing up to float rounding of the batched network (~4e-8 on Intel oneDNN)
        assert res.latent_mean_abs[3:].max() < 1e-6


def test_completeness_and_json(results) -> None:
    for res in results.values():
        total = res.latent.sum(1) + res.condition
        torch.testing.assert_close(total - (res.scores - res.baseline_scores), res.deltas)
        # 32 Gauss-Legendre steps: the integral misses f(x) - f(x0) by under 5 % on average
        assert res.relative_delta < 0.05, res.relative_delta
        data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
        assert data["ranking"][0]["input"] == res.top_input
        assert len(data["latent_mean_abs"]) == LATENT and len(data["samples"]["scores"]) == 64


def test_ig_equals_direct_captum_on_the_relaxed_generator(trained_judge) -> None:
    gen = stand_in()
    net: ShapeRenderer = gen.model  # type: ignore[assignment]
    res = latent_attribution(gen, trained_judge, "shape", n=8, seed=3, n_steps=32, memory_budget="4MiB")
    # the same latents and labels as sample(8, seed=3)
    rng = torch.Generator().manual_seed(3)
    z = torch.randn(8, LATENT, generator=rng)
    y = torch.randint(0, 3, (8,), generator=rng)
    assert torch.equal(res.labels, y)
    head = trained_judge.head("shape")

    def score(z_: torch.Tensor, e_: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(head(net.render(z_, e_)), dim=1)

    e_y = net.embed(y).detach()
    e0 = net.embed.weight.detach().mean(0, keepdim=True)
    with torch.no_grad():
        lp = score(z, e_y)
    target = lp.argmax(1)
    torch.testing.assert_close(res.targets, target)
    attr_z, attr_e = IntegratedGradients(score).attribute(
        (z, e_y), baselines=(torch.zeros(1, LATENT), e0), target=target, n_steps=32
    )
    torch.testing.assert_close(res.latent, attr_z, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.condition, attr_e.sum(1), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        base = score(torch.zeros(8, LATENT), e0.expand(8, -1))
    torch.testing.assert_close(res.scores, lp[torch.arange(8), target])
    torch.testing.assert_close(res.baseline_scores, base[torch.arange(8), target], atol=1e-5, rtol=1e-5)
    gap = (res.scores - res.baseline_scores).abs()
    assert (res.deltas.abs() < 0.05 * gap + 0.02).all()  # completeness within 5 % (+0.02 nats)


def test_explicit_target_and_mean_baseline(trained_judge) -> None:
    gen = stand_in()
    res = latent_attribution(
        gen, trained_judge, "shape", n=6, seed=1, n_steps=64, target="square", baseline="mean"
    )
    assert res.targets.tolist() == [1] * 6 and res.baseline == "mean"
    rng = torch.Generator().manual_seed(1)
    z = torch.randn(6, LATENT, generator=rng)  # the labels drawn next do not matter: e0 replaces them
    net: ShapeRenderer = gen.model  # type: ignore[assignment]
    with torch.no_grad():
        base = log_prob(
            trained_judge,
            "shape",
            net.render(
                z.mean(0, keepdim=True).expand(6, -1), net.embed.weight.mean(0, keepdim=True).expand(6, -1)
            ),
        )
    torch.testing.assert_close(res.baseline_scores, base[:, 1], atol=1e-5, rtol=1e-5)


def test_tensor_baseline_equals_zero_baseline(trained_judge) -> None:
    gen = stand_in()
    zero = latent_attribution(gen, trained_judge, "position", n=4, seed=6, n_steps=32, baseline="zero")
    given = latent_attribution(
        gen, trained_judge, "position", n=4, seed=6, n_steps=32, baseline=torch.zeros(6)
    )
    assert given.baseline == "tensor"
    torch.testing.assert_close(given.latent, zero.latent)
    torch.testing.assert_close(given.condition, zero.condition)


def test_ablation_fallback_without_embedding(trained_judge) -> None:
    gen = stand_in(embedding=False)
    assert gen.label_embedding() is None
    res = latent_attribution(gen, trained_judge, "shape", n=8, seed=2, n_steps=32)
    assert res.condition_method == "ablation"
    rng = torch.Generator().manual_seed(2)
    z, y = torch.randn(8, LATENT, generator=rng), torch.randint(0, 3, (8,), generator=rng)
    net: ShapeRenderer = gen.model  # type: ignore[assignment]
    with torch.no_grad():
        lp = log_prob(trained_judge, "shape", net(z, y))
        t = lp.argmax(1)
        idx = torch.arange(8)
        per_class = torch.stack(
            [log_prob(trained_judge, "shape", net(z, torch.full_like(y, k)))[idx, t] for k in range(3)], 1
        )
    torch.testing.assert_close(res.condition, lp[idx, t] - per_class.mean(1), atol=1e-5, rtol=1e-5)
    # the latent part is integrated gradients at the fixed label, from z0 = 0
    head = trained_judge.head("shape")
    attr = IntegratedGradients(lambda z_, y_: F.log_softmax(head(net(z_, y_)), 1)).attribute(
        z, baselines=torch.zeros(1, LATENT), target=t, additional_forward_args=(y,), n_steps=32
    )
    torch.testing.assert_close(res.latent, attr, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.latent.sum(1) - (res.scores - res.baseline_scores), res.deltas)


def test_occlusion_needs_no_gradients(trained_judge) -> None:
    frozen = stand_in(cls=NoGradRenderer)
    with pytest.raises(ExplainError, match="gradients are unavailable.*occlusion"):
        latent_attribution(frozen, trained_judge, "colour", n=4)
    res = latent_attribution(frozen, trained_judge, "colour", n=8, seed=4, method="occlusion")
    assert res.method == "occlusion" and res.condition_method == "ablation"
    assert torch.isnan(res.deltas).all()
    # occlusion of dim i: f(z, y) - f(z with z_i = 0, y)
    rng = torch.Generator().manual_seed(4)
    z, y = torch.randn(8, LATENT, generator=rng), torch.randint(0, 3, (8,), generator=rng)
    net = frozen.model
    idx = torch.arange(8)
    lp = log_prob(trained_judge, "colour", net(z, y))
    t = lp.argmax(1)
    for i in range(LATENT):
        zi = z.clone()
        zi[:, i] = 0.0
        expected = lp[idx, t] - log_prob(trained_judge, "colour", net(zi, y))[idx, t]
        torch.testing.assert_close(res.latent[:, i], expected.detach(), atol=1e-5, rtol=1e-5)
    # ignored dims change nothing up to float rounding of the batched network (~4e-8 on Intel oneDNN)
    assert res.latent_mean_abs[3:].max() < 1e-6


def test_traversal_moves_position_left_to_right(trained_judge, tmp_path) -> None:
    gen = stand_in()
    tr = latent_traversal(gen, trained_judge, "position", dims=[2, 4], seed=0, label="square")
    assert tr.images.shape == (2, 9, 3, 32, 32) and tr.probabilities.shape == (2, 9, 3)
    p = tr.probabilities
    assert p.min() >= 0 and p.max() <= 1
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 9), atol=1e-5, rtol=0)
    along = p[0]
    assert along[0, 0] > 0.9 and along[-1, 2] > 0.9  # left at -3, right at +3
    assert along[4].argmax() == 1  # z[2] = 0: centred
    reading = along.argmax(1).tolist()
    assert reading == sorted(reading)  # left ... center ... right, never back
    assert torch.allclose(p[1], p[1, :1].expand(9, -1), atol=1e-6)  # dim 4 is ignored: nothing moves
    png = traversal_figure(tr)
    path = tmp_path / "traversal.png"
    path.write_bytes(png)
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        assert im.format == "PNG" and im.width >= 1000 and 300 <= im.height <= 1200
    json.dumps(tr.to_dict(), allow_nan=False)


def test_traversal_from_an_attribution(results, trained_judge) -> None:
    tr = latent_traversal(
        stand_in(), trained_judge, "colour", dims=results["colour"], seed=1, values=[-2.0, 0.0, 2.0]
    )
    assert set(tr.dims[:2]) == {0, 1} and tr.steps.tolist() == [-2.0, 0.0, 2.0]
    assert tr.label in SHAPES


def test_dcgan_uses_its_label_embedding(trained_judge) -> None:
    gen = create_generator(
        "dcgan", class_names=SHAPES, condition="shape", seed=0, latent_dim=8, width=8, embed_dim=4
    )
    net = gen.network  # type: ignore[attr-defined]
    assert gen.label_embedding() is net.embed and net.training
    res = latent_attribution(gen, trained_judge, "shape", n=8, seed=0, n_steps=32)
    assert net.training  # restored after running in eval mode
    assert res.condition_method == "ig"
    assert torch.isfinite(res.latent).all() and torch.isfinite(res.condition).all()
    # scores are those of the images sample() gives for the same seed
    images = gen.sample(8, seed=0)
    lp = log_prob(trained_judge, "shape", images).detach()
    torch.testing.assert_close(res.scores, lp[torch.arange(8), res.targets], atol=1e-5, rtol=1e-5)
    # the baseline is z0 = 0 with every label's embedding replaced by the mean one
    mean_net = copy.deepcopy(net).eval()
    with torch.no_grad():
        mean_net.embed.weight[:] = net.embed.weight.mean(0)
        base = (mean_net(torch.zeros(8, 8), res.labels) + 1) / 2
    lp0 = log_prob(trained_judge, "shape", base).detach()
    torch.testing.assert_close(res.baseline_scores, lp0[torch.arange(8), res.targets], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        res.latent.sum(1) + res.condition - (res.scores - res.baseline_scores), res.deltas
    )


def test_diffusion_hooks_only_the_class_rows(trained_judge) -> None:
    gen = create_generator(
        "ddpm",
        class_names=SHAPES,
        seed=0,
        channels=8,
        channel_mult=(1, 2),
        attention_resolutions=(),
        timesteps=10,
        sample_steps=2,
        guidance=2.0,
    )
    table = gen.label_embedding()
    assert table is gen.network.class_embed and table.num_embeddings == 4  # 3 classes + "no label"
    with pytest.warns(UserWarning, match="raise n_steps"):  # 4 steps are too few, and it says so
        res = latent_attribution(gen, trained_judge, "shape", n=3, seed=0, n_steps=4)
    assert res.condition_method == "ig" and res.latent.shape == (3, 3 * 32 * 32)
    assert torch.isfinite(res.latent).all() and torch.isfinite(res.condition).all()
    # baseline by hand: class rows replaced by their mean, the null row (used by guidance) kept
    net = copy.deepcopy(gen.network)
    with torch.no_grad():
        net.class_embed.weight[:3] = table.weight[:3].mean(0)
    gen.network = net
    with torch.no_grad():
        base = gen.forward(torch.zeros(3, 3, 32, 32), res.labels)
    lp0 = log_prob(trained_judge, "shape", base).detach()
    torch.testing.assert_close(res.baseline_scores, lp0[torch.arange(3), res.targets], atol=1e-5, rtol=1e-5)


def test_errors(trained_judge) -> None:
    gen = stand_in()
    with pytest.raises(ConfigError, match=r"unknown attribute 'hue'.*'shape'.*'position'"):
        latent_attribution(gen, trained_judge, "hue")
    with pytest.raises(ConfigError, match="not a value"):
        latent_attribution(gen, trained_judge, "shape", target="hexagon", n=2)
    with pytest.raises(ConfigError, match="baseline"):
        latent_attribution(gen, trained_judge, "shape", baseline="median", n=2)
    with pytest.raises(ConfigError, match="dims"):
        latent_traversal(gen, trained_judge, "shape", dims=[LATENT])
    net = ShapeRenderer()
    with pytest.raises(ConfigError, match="nn.Embedding"):
        ModuleGenerator(
            net, latent_shape=(6,), image_shape=(3, 32, 32), class_names=SHAPES, label_embedding=net.to_shape
        )
    with pytest.raises(ConfigError, match="conditional"):
        ModuleGenerator(net, latent_shape=(6,), image_shape=(3, 32, 32), label_embedding=net.embed)


def test_vae_exposes_its_label_embedding() -> None:
    gen = create_generator("vae", class_names=SHAPES, seed=0, latent_dim=4, width=8, embed_dim=4)
    assert gen.label_embedding() is gen.network.embed  # type: ignore[attr-defined]
    assert create_generator("vae", seed=0, latent_dim=4, width=8).label_embedding() is None


def test_nan_attributions_name_the_samples(trained_judge) -> None:
    class Overflow(ShapeRenderer):
        def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            poison = torch.where(labels == 2, math.nan, 1.0)  # NaN images for class 2
            return super().forward(z, labels) * poison.view(-1, 1, 1, 1)

    gen = stand_in(cls=Overflow)
    with pytest.raises(ExplainError, match=r"not finite for 2 sample\(s\) \(indices 1, 3\)"):
        latent_attribution(gen, trained_judge, "shape", n=4, labels=[0, 2, 1, 2], n_steps=4)
