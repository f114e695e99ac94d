"""Importance-sampled log-likelihood, IWAE and pPCA against closed forms.

The model under test is a linear-Gaussian VAE built by hand (P = 5 data dimensions, D = 2
latents, float64): decoder x = W z + b, p(x | z) = N(W z + b, sigma^2 I), p(z) = N(0, I).
Its log p(x), posterior and ELBO are exact (vaelab.core.baselines). W has orthogonal columns, so
the exact posterior is diagonal and a linear encoder can represent it: with that encoder
every importance weight equals p(x), and with a deliberately wrong one the estimators are
bounds whose gaps are checked against their standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA
from torch import nn

from vaelab import baselines, objectives
from vaelab.core.likelihoods import GaussianLikelihood
from vaelab.core.model import VAE
from vaelab.core.priors import StandardNormal
from vaelab.errors import VaelabError
from vaelab.evaluate import (
    active_units,
    bits_per_dim,
    importance_sampled_log_px,
    log_likelihood,
)
from vaelab.evaluate.sampling import samples_from_q

P, D, SIGMA = 5, 2, 0.5


class LinearEncoder(nn.Module):
    """x (B, P) -> Linear -> (loc, log_var), each (B, D)."""

    def __init__(self, loc_weight, loc_bias, log_var):
        super().__init__()
        self.net = nn.Linear(P, 2 * D).double()
        with torch.no_grad():
            self.net.weight.copy_(torch.cat([loc_weight, torch.zeros(D, P, dtype=torch.float64)]))
            self.net.bias.copy_(torch.cat([loc_bias, log_var]))

    def forward(self, x):
        loc, log_var = self.net(x).chunk(2, dim=-1)
        return loc, log_var


def generative_parameters():
    """W (P, D) with orthogonal columns of lengths 1.5 and 0.7, and b (P,)."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    return torch.from_numpy(q[:, :D] * [1.5, 0.7]), torch.from_numpy(rng.standard_normal(P))


def make_vae(exact: bool) -> VAE:
    """The linear-Gaussian VAE with q(z | x) the exact posterior, or a shrunk, shifted, wide one.

    The poor q has loc = 0.7 loc_post + 0.2 and variance 2 var_post: KL(q || posterior) is
    about a nat, and q is wider than the posterior so the weights have finite variance.
    """
    weight, bias = generative_parameters()
    decoder = nn.Linear(D, P).double()  # z (*batch, D) -> loc (*batch, P): x_shape is (P,)
    with torch.no_grad():
        decoder.weight.copy_(weight)
        decoder.bias.copy_(bias)
    # loc_post = A (x - b) and cov_post = diag(var_post): read them off at x = b and x = b + e_i
    eye = torch.eye(P, dtype=torch.float64)
    loc0, cov = baselines.linear_gaussian_posterior(bias[None], weight, bias, SIGMA)
    a = baselines.linear_gaussian_posterior(bias + eye, weight, bias, SIGMA)[0].T - loc0.T
    var = torch.diagonal(cov)
    assert torch.allclose(cov, torch.diag(var), atol=1e-12)  # the posterior is mean-field
    if exact:
        encoder = LinearEncoder(a, -a @ bias, var.log())
    else:
        encoder = LinearEncoder(0.7 * a, -0.7 * a @ bias + 0.2, (2 * var).log())
    likelihood = GaussianLikelihood((P,), sigma=SIGMA).double()
    likelihood.log_scale.fill_(math.log(SIGMA))  # built in float32: restore the float64 value
    return VAE(encoder, decoder, StandardNormal(D).double(), likelihood, (P,))


def sample_data(n: int, seed: int) -> torch.Tensor:
    """n draws of x from the linear-Gaussian model, ``(n, P)`` float64.

    Drawn with numpy's generator, never torch's: a torch seed shared with a test's own
    ``torch.manual_seed`` would make the encoder's noise replay the data's z (it did once).
    """
    weight, bias = generative_parameters()
    rng = np.random.default_rng(seed)
    z, noise = torch.from_numpy(rng.standard_normal((n, D))), rng.standard_normal((n, P))
    return z @ weight.T + bias + SIGMA * torch.from_numpy(noise)


def exact_log_px(x: torch.Tensor) -> torch.Tensor:
    weight, bias = generative_parameters()
    return baselines.linear_gaussian_log_px(x, weight, bias, SIGMA)


def exact_elbo(model: VAE, x: torch.Tensor) -> torch.Tensor:
    weight, bias = generative_parameters()
    with torch.no_grad():
        loc, log_var = model.encoder(x)
    return baselines.linear_gaussian_elbo(x, weight, bias, SIGMA, loc, log_var.exp())


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    return values.mean().item(), (values.std() / math.sqrt(len(values))).item()


# --- the closed forms themselves ------------------------------------------------------------


def test_linear_gaussian_log_px_matches_scipy_with_per_dimension_sigma():
    weight, bias = generative_parameters()
    sigma = torch.linspace(0.3, 0.9, P, dtype=torch.float64)
    x = sample_data(20, seed=2)
    cov = weight @ weight.T + torch.diag(sigma**2)
    expected = multivariate_normal(bias.numpy(), cov.numpy()).logpdf(x.numpy())
    got = baselines.linear_gaussian_log_px(x, weight, bias, sigma)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_bayes_rule_ties_log_px_posterior_and_likelihood():
    # log p(x) = log p(z) + log p(x | z) - log p(z | x) for every z
    weight, bias = generative_parameters()
    weight = weight + 0.3  # columns no longer orthogonal: a full posterior covariance
    x = sample_data(10, seed=3)
    z = torch.randn(10, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    loc, cov = baselines.linear_gaussian_posterior(x, weight, bias, SIGMA)
    log_joint = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(
        -1
    ) + torch.distributions.Normal(z @ weight.T + bias, SIGMA).log_prob(x).sum(-1)
    log_post = torch.distributions.MultivariateNormal(loc, cov).log_prob(z)
    torch.testing.assert_close(
        log_joint - log_post, baselines.linear_gaussian_log_px(x, weight, bias, SIGMA)
    )


def test_exact_elbo_is_log_px_minus_kl_to_posterior():
    model = make_vae(exact=False)
    x = sample_data(50, seed=5)
    weight, bias = generative_parameters()
    post_loc, post_cov = baselines.linear_gaussian_posterior(x, weight, bias, SIGMA)
    with torch.no_grad():
        qz = model.q_z(x)
    post = torch.distributions.MultivariateNormal(post_loc, post_cov)
    q_full = torch.distributions.MultivariateNormal(qz.mean, torch.diag_embed(qz.variance))
    kl = torch.distributions.kl_divergence(q_full, post)
    assert kl.mean() > 0.5  # the poor encoder is poor
    torch.testing.assert_close(exact_elbo(model, x), exact_log_px(x) - kl)
    torch.testing.assert_close(exact_elbo(make_vae(exact=True), x), exact_log_px(x))


# --- (a) the importance-sampled estimate against exact log p(x) -----------------------------


@pytest.mark.parametrize("k", [1, 7, 200])
def test_exact_posterior_gives_exact_log_px_and_ess_k(k):
    # every weight equals p(x): the estimate is exact for any K, and the ESS is K exactly
    x = sample_data(30, seed=6)
    log_px, ess = importance_sampled_log_px(make_vae(exact=True), x, k=k, batch_size=16, chunk=3)
    torch.testing.assert_close(log_px, exact_log_px(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(ess, torch.full_like(ess, float(k)), rtol=1e-10, atol=0)


@pytest.mark.parametrize("k", [100, 1000, 5000])
def test_poor_posterior_estimate_agrees_with_exact_log_px(k):
    x = sample_data(100, seed=7)
    log_px, ess = importance_sampled_log_px(make_vae(exact=False), x, k=k, chunk=1000)
    gap, se = mean_and_se(exact_log_px(x) - log_px)
    assert abs(gap) < 3 * se, (gap, se)
    assert se < 0.05 / math.sqrt(k / 100)  # and the agreement is tight, not vacuous
    assert 1 < ess.min() and ess.max() < k


def test_poor_posterior_estimate_is_a_lower_bound_at_small_k():
    # E[log p^(x)] = L_K < log p(x): at K = 2 the gap is many standard errors
    x = sample_data(2000, seed=8)
    log_px, _ = importance_sampled_log_px(make_vae(exact=False), x, k=2, batch_size=500)
    gap, se = mean_and_se(exact_log_px(x) - log_px)
    assert gap > 5 * se, (gap, se)


def test_log_likelihood_summary_matches_per_example_values():
    model, x = make_vae(exact=False), sample_data(40, seed=9)
    summary = log_likelihood(model, x, k=300, batch_size=16, chunk=64, seed=3)
    log_px, ess = importance_sampled_log_px(model, x, k=300, batch_size=16, chunk=64, seed=3)
    assert summary["nll_nats"] == pytest.approx(-log_px.mean().item(), rel=1e-12)
    assert summary["nll_se"] == pytest.approx(log_px.std().item() / math.sqrt(40), rel=1e-12)
    assert summary["ess_mean"] == pytest.approx(ess.mean().item(), rel=1e-12)
    assert summary["n"] == 40 and summary["k"] == 300


# --- (b) ELBO <= IWAE_K <= log p(x), tightening with K ---------------------------------------


def test_iwae_bound_sits_between_elbo_and_log_px_and_tightens_with_k():
    model, x = make_vae(exact=False), sample_data(2000, seed=10)
    truth, elbo = exact_log_px(x), exact_elbo(model, x)
    torch.manual_seed(0)
    with torch.no_grad():
        l1, l10, l100 = (objectives.iwae(model, x, k=k).elbo for k in (1, 10, 100))
    # paired differences over the same examples: L_1 = ELBO in expectation, then each step
    # up in K gains many standard errors, and L_100 is still below log p(x)
    diff, se = mean_and_se(l1 - elbo)
    assert abs(diff) < 3 * se, (diff, se)
    for lower, upper in [(elbo, l10), (l10, l100)]:
        gain, se = mean_and_se(upper - lower)
        assert gain > 5 * se, (gain, se)
    gap, se = mean_and_se(truth - l100)
    elbo_gap = (truth - elbo).mean().item()  # about 1 nat
    assert -3 * se < gap < 0.1 * elbo_gap, (gap, se, elbo_gap)


def test_iwae_with_exact_posterior_is_exact_for_every_sample():
    model, x = make_vae(exact=True), sample_data(20, seed=11)
    with torch.no_grad():
        terms = objectives.iwae(model, x, k=5)
    torch.testing.assert_close(terms.elbo, exact_log_px(x))


# --- (c) chunking and seeding ----------------------------------------------------------------


def test_estimate_does_not_depend_on_chunk_size():
    # sample j comes from a seeded block of SAMPLE_BLOCK draws, whatever the chunk: the same
    # z, so only the float64 order of the running logsumexp differs
    model, x = make_vae(exact=False), sample_data(24, seed=12)
    k = 300  # spans three blocks of 128, the last one partial
    reference, ref_ess = importance_sampled_log_px(model, x, k=k, batch_size=10, chunk=k)
    for chunk in (1, 7, 128, 129, 1000):
        log_px, ess = importance_sampled_log_px(model, x, k=k, batch_size=10, chunk=chunk)
        torch.testing.assert_close(log_px, reference, rtol=0, atol=1e-12)
        torch.testing.assert_close(ess, ref_ess, rtol=1e-12, atol=0)


def test_estimate_is_repeatable_and_leaves_the_global_rng_alone():
    model, x = make_vae(exact=False), sample_data(24, seed=13)
    state = torch.get_rng_state()
    first = log_likelihood(model, x, k=50, chunk=16)
    assert torch.equal(torch.get_rng_state(), state)
    assert log_likelihood(model, x, k=50, chunk=16) == first
    assert log_likelihood(model, x, k=50, chunk=16, seed=1)["nll_nats"] != first["nll_nats"]


def test_samples_are_nested_in_k():
    # the first K' of the K samples are the samples a K'-sample run draws
    qz = make_vae(exact=False).q_z(sample_data(3, seed=17))
    cpu = torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        chunks = list(samples_from_q(qz, 300, 7, 0, 0, cpu))
        long, log_q = (torch.cat(t) for t in zip(*chunks, strict=True))
        short = torch.cat([z for z, _ in samples_from_q(qz, 130, 1000, 0, 0, cpu)])
        other_batch = torch.cat([z for z, _ in samples_from_q(qz, 130, 1000, 0, 1, cpu)])
    assert long.shape == (300, 3, D) and short.shape == (130, 3, D)
    assert torch.equal(log_q, qz.log_prob(long))  # each chunk's z with its log q
    assert torch.equal(long[:130], short)
    assert not torch.equal(other_batch, short)


@pytest.mark.parametrize("bad", [{"k": 0}, {"chunk": 0}, {"batch_size": -1}, {"k": 2.5}])
def test_bad_sizes_raise_vaelab_error(bad):
    with pytest.raises(VaelabError):
        log_likelihood(make_vae(exact=True), sample_data(4, seed=14), **{"k": 10, **bad})


# --- (d) IWAE at K = 1 is the ELBO in expectation ---------------------------------------------


def test_iwae_at_k1_equals_elbo_in_expectation_and_its_fields_are_documented():
    model, x = make_vae(exact=False), sample_data(4000, seed=15)
    torch.manual_seed(1)
    terms = objectives.iwae(model, x, k=1)
    diff, se = mean_and_se((terms.elbo - exact_elbo(model, x)).detach())
    assert abs(diff) < 3 * se and se < 0.05, (diff, se)
    # reconstruction - kl is the ordinary one-sample ELBO, also unbiased for the ELBO
    ordinary = (terms.reconstruction - terms.kl).detach()
    diff, se = mean_and_se(ordinary - exact_elbo(model, x))
    assert abs(diff) < 3 * se, (diff, se)
    torch.testing.assert_close(terms.loss, -terms.elbo.mean())
    terms.loss.backward()  # reparameterized: gradients reach the encoder
    assert model.encoder.net.weight.grad.abs().sum() > 0


def test_iwae_beta_reweights_only_the_loss():
    model, x = make_vae(exact=False), sample_data(8, seed=16)
    torch.manual_seed(2)
    terms = objectives.iwae(model, x, k=1, beta=0.5)
    torch.manual_seed(2)
    z = model.q_z(x).rsample((1,))
    log_ratio = model.p_z().log_prob(z) - model.q_z(x).log_prob(z)
    log_px_z = model.p_x(z).log_prob(x)
    torch.testing.assert_close(terms.elbo, (log_px_z + log_ratio)[0])
    torch.testing.assert_close(terms.loss, -(log_px_z + 0.5 * log_ratio).mean())


# --- (e) pPCA: the maximum-likelihood fit against scikit-learn and Tipping & Bishop -----------


def ppca_data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(6, 2)) * [2.0, 1.0]
    return rng.normal(size=(n, 2)) @ weight.T + 0.3 * rng.normal(size=(n, 6)) + 1.5


def test_ppca_fit_matches_sklearn_pca_score():
    train, test = ppca_data(500, seed=0), ppca_data(300, seed=1)[:, ::-1]  # a different model
    fit = baselines.fit_ppca(train, n_latent=2, ddof=1)  # sklearn divides by N - 1
    pca = PCA(n_components=2).fit(train)
    for data in (train, test):
        assert fit.score(data) == pytest.approx(pca.score(data), rel=1e-6)
    assert fit.noise_variance == pytest.approx(pca.noise_variance_, rel=1e-10)


def test_ppca_ml_fit_attains_the_closed_form_maximum():
    # Tipping & Bishop (1999) eq. 8: at the ML fit the mean log-likelihood of the training data is
    # -1/2 [P log 2 pi + sum_{j <= D} log l_j + (P - D) log sigma^2 + P]
    train = ppca_data(400, seed=2)
    fit = baselines.fit_ppca(train, n_latent=2)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(train.T, bias=True)))[::-1]
    sigma2 = eigenvalues[2:].mean()
    expected = -0.5 * (
        6 * math.log(2 * math.pi) + np.log(eigenvalues[:2]).sum() + 4 * math.log(sigma2) + 6
    )
    assert fit.score(train) == pytest.approx(expected, rel=1e-10)
    # and it is a maximum: the N - 1 fit (a slightly different model) scores lower on train
    assert baselines.fit_ppca(train, n_latent=2, ddof=1).score(train) < fit.score(train)


def test_ppca_rejects_impossible_latent_dims():
    with pytest.raises(VaelabError):
        baselines.fit_ppca(ppca_data(50, seed=3), n_latent=6)


# --- (f) active units and bits per dimension --------------------------------------------------


def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    g = torch.Generator().manual_seed(0)
    columns = torch.randn(1000, 5, generator=g, dtype=torch.float64)
    columns = (columns - columns.mean(0)) / columns.std(0)  # unit sample variance exactly
    # variances 1, 0.02, 0.005 (std 0.07 > 0.01: a std-for-variance mix-up would count it),
    # 0 around a large mean, 1e-4
    means = columns * torch.tensor([1.0, 0.02, 0.005, 0.0, 1e-4]).sqrt() + torch.tensor(
        [0.0, 0.0, 0.0, 5.0, 0.0]
    )
    assert active_units(means) == 2
    assert active_units(means, threshold=0.001) == 3
    assert active_units(means, threshold=1e-5) == 4
    assert active_units(means.float()) == 2


def test_bits_per_dim():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0, rel=1e-15)
    assert bits_per_dim(100.0, 10) == pytest.approx(10 / math.log(2), rel=1e-15)


def test_k_50000_on_mnist_sized_images_stays_in_bounded_memory():
    # unchunked, the decoder's logits alone would be 50,000 x 10 x 784 floats: 1.5 GB
    script = """
import resource, torch
from vaelab import VAE, Config
from vaelab.evaluate import log_likelihood
from vaelab.build import build_model
config = Config(likelihood="bernoulli", hidden=[64], latent_dim=8)
model = build_model(config, (1, 28, 28)).eval()
x = (torch.rand(10, 1, 28, 28) < 0.2).float()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = log_likelihood(model, x, k=50_000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result["nll_nats"], result["k"], (after - before) / 1024)
"""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    nll, k, grown_mb = out.stdout.split()
    assert math.isfinite(float(nll)) and int(k) == 50_000
    assert float(grown_mb) < 400, f"peak memory grew by {grown_mb} MB"
