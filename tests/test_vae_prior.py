"""The VAE's mixture prior: sampling from the fitted per-class mixtures, the fit itself, and the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from auditkit.errors import ConfigError
from auditkit.generators import load_generator
from auditkit.generators.vae import ConditionalVAE, VAEConfig
from auditkit.store import RunStore
from auditkit.training import train

SHAPE = (3, 16, 16)


def _vae(prior: str = "mixture", classes: int = 3, k: int = 2) -> ConditionalVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(latent_dim=4, width=8, embed_dim=4, prior=prior, prior_components=k)
    return ConditionalVAE(cfg, SHAPE, classes).eval()


def test_an_unfitted_mixture_is_the_standard_prior():
    mixture, standard = _vae("mixture"), _vae("standard")
    assert mixture.sample_dim == 5 and standard.sample_dim == 4
    z, y = torch.randn(10, 5), torch.arange(10) % 3
    # Same weights (same seed); every unfitted component is N(0, I), so the selector changes nothing.
    torch.testing.assert_close(mixture(z, y), standard(z[:, :4], y), rtol=0, atol=0)


def test_mixture_draws_follow_the_weights_means_and_covariances():
    vae = _vae(k=2)
    cls = 1
    vae.prior_weights[cls] = torch.tensor([0.25, 0.75])
    vae.prior_means[cls] = torch.tensor([[20.0, 0, 0, 0], [-20.0, 1, 2, 3]])
    tril = torch.tensor([[2.0, 0, 0, 0], [0.5, 1, 0, 0], [0, 0, 0.5, 0], [0, 0, 0.3, 1]])
    vae.prior_scale_tril[cls, 1] = tril
    n = 20000
    z = torch.randn(n, 5, generator=torch.Generator().manual_seed(1))
    draws = vae.prior_sample(z, torch.full((n,), cls))
    first = draws[:, 0] > 0  # component 0 sits at x0 = +20, component 1 at -20 (10 sd): separable
    # The component share is binomial(n, 0.25): within 4 standard errors.
    assert abs(float(first.float().mean()) - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5
    # The selector picks component 0 exactly when Φ(selector) < 0.25.
    assert torch.equal(first, torch.special.ndtr(z[:, 4]) < 0.25)
    second = draws[~first].double()
    # Mean and covariance of component 1 against L Lᵀ, to sampling error (about 2 % at 15 000 draws).
    torch.testing.assert_close(second.mean(0), torch.tensor([-20.0, 1, 2, 3]).double(), atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(second.T), (tril @ tril.T).double(), atol=0.08, rtol=0.05)
    # Each coordinate of component 0 is normal around its mean (Kolmogorov–Smirnov, identity scale).
    assert stats.kstest(draws[first, 1].numpy(), "norm").pvalue > 1e-3


def test_fit_prior_is_scikit_learns_mixture_of_one_posterior_draw_per_image():
    from sklearn.mixture import GaussianMixture

    vae = _vae(k=3)
    g = torch.Generator().manual_seed(2)
    images = torch.rand(240, *SHAPE, generator=g) * 2 - 1
    labels = torch.arange(240) % 3
    fit = vae.fit_prior(images, labels, seed=7)
    assert set(fit) == {"0", "1", "2"}
    # The reference: the same posterior draws (same seed, same batches), fitted by scikit-learn directly.
    with torch.no_grad():
        mu, logvar = vae.encode(images, labels)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
        codes = (mu + torch.exp(0.5 * logvar) * eps).double().numpy()
    for cls in range(3):
        ref = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=7).fit(
            codes[labels.numpy() == cls]
        )
        np.testing.assert_allclose(vae.prior_weights[cls].numpy(), ref.weights_, rtol=1e-5)
        np.testing.assert_allclose(vae.prior_means[cls].numpy(), ref.means_, rtol=1e-4, atol=1e-5)
        cov = vae.prior_scale_tril[cls].double() @ vae.prior_scale_tril[cls].double().transpose(1, 2)
        np.testing.assert_allclose(cov.numpy(), ref.covariances_, rtol=1e-4, atol=1e-5)
        assert fit[str(cls)] == pytest.approx(ref.score(codes[labels.numpy() == cls]), rel=1e-6)


def test_fit_prior_needs_a_mixture_vae():
    with pytest.raises(ConfigError, match="prior: mixture"):
        _vae("standard").fit_prior(torch.zeros(4, *SHAPE), torch.zeros(4, dtype=torch.long))


def test_training_fits_the_prior_and_the_generator_samples_from_it(tmp_path):
    config = {
        "family": "vae",
        "data": {"source": "shapes", "n": 120, "size": 16, "seed": 0, "condition": "shape"},
        "model": {"latent_dim": 4, "width": 8, "embed_dim": 4, "prior": "mixture", "prior_components": 3},
        "steps": 4,
        "batch_size": 16,
        "sample_every": 100,
        "checkpoint_every": 100,
        "device": "cpu",
    }
    result = train(config, store=RunStore(tmp_path), progress=False)
    assert set(result.summary["prior_loglik_per_class"]) == {"0", "1", "2"}
    gen = load_generator(result.run_dir)
    assert gen.latent_shape == (5,)
    weights = gen.model.prior_weights
    assert torch.allclose(weights.sum(1), torch.ones(3))
    assert not torch.allclose(weights, torch.full_like(weights, 1 / 3))  # fitted, not the initial weights
    images = gen.sample(6, labels=["circle", "square", "triangle"] * 2, seed=3)
    assert images.shape == (6, *SHAPE) and float(images.min()) >= 0 and float(images.max()) <= 1
    assert torch.equal(images, gen.sample(6, labels=["circle", "square", "triangle"] * 2, seed=3))


def test_the_audit_ranks_a_mixture_vae_by_occlusion_when_ig_cannot_be_complete(trained_judge, monkeypatch):
    import auditkit.audit as audit_module
    from auditkit.explain import latent as latent_module
    from auditkit.generators.wrappers import ModuleGenerator

    calls = []
    real = latent_module.latent_attribution

    def spy(*args, **kwargs):
        calls.append((kwargs.get("method", "ig"), kwargs.get("n_steps")))
        return real(*args, **kwargs)

    monkeypatch.setattr(latent_module, "latent_attribution", spy)
    torch.manual_seed(0)
    cfg = VAEConfig(latent_dim=4, width=8, embed_dim=4, prior="mixture", prior_components=2)
    vae = ConditionalVAE(cfg, (3, 32, 32), 3).eval()
    # Two far-apart components: the selector coordinate switches the decoded image discontinuously.
    vae.prior_means[:, 0, :], vae.prior_means[:, 1, :] = 6.0, -6.0
    gen = ModuleGenerator(
        vae,
        latent_shape=(vae.sample_dim,),
        image_shape=(3, 32, 32),
        output_range=(-1.0, 1.0),
        class_names=("circle", "square", "triangle"),
        condition="shape",
    )
    found, note = audit_module._complete_latent_ig(gen, trained_judge, "shape", n=8, seed=0)
    assert calls[:3] == [("ig", 32), ("ig", 64), ("ig", 128)], calls
    assert calls[-1][0] == "occlusion", f"IG looked complete through a discrete component choice: {calls}"
    assert found.method == "occlusion" and note["ig_relative_delta"] > 0.5 and "occlusion" in note["fallback"]


def test_a_smooth_generator_keeps_integrated_gradients(trained_judge):
    import auditkit.audit as audit_module
    from auditkit.generators.wrappers import ModuleGenerator

    torch.manual_seed(0)
    vae = ConditionalVAE(VAEConfig(latent_dim=4, width=8, embed_dim=4), (3, 32, 32), 3).eval()
    gen = ModuleGenerator(
        vae,
        latent_shape=(4,),
        image_shape=(3, 32, 32),
        output_range=(-1.0, 1.0),
        class_names=("circle", "square", "triangle"),
        condition="shape",
    )
    found, note = audit_module._complete_latent_ig(gen, trained_judge, "shape", n=8, seed=0)
    assert found.method == "ig" and note == {}
    # Steps stop growing once completeness holds (5 %, or a miss below 0.01 nats), 128 at most.
    mean_miss = float(found.deltas.abs().mean())
    assert found.relative_delta <= 0.05 or mean_miss <= 0.01 or found.n_steps == 128
