"""The ELBO and its two terms against closed forms."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from vaelab import VAE
from vaelab import objectives as obj
from vaelab.core import kl as kl_mod
from vaelab.core.likelihoods import GaussianLikelihood
from vaelab.core.priors import StandardNormal


def test_analytic_kl_equals_monte_carlo_within_its_standard_error():
    torch.manual_seed(0)
    qz = Independent(Normal(torch.randn(6, 3), torch.rand(6, 3) + 0.3), 1)
    pz = StandardNormal(3)()
    z = qz.sample((200_000,))
    log_ratio = qz.log_prob(z) - pz.log_prob(z)  # (K, B)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(z))
    analytic = kl_mod.kl_term(qz, pz, z)
    assert ((analytic - mc).abs() < 4 * se).all(), (analytic, mc, se)
    assert torch.allclose(kl_mod.kl_per_dim(qz, pz).sum(-1), analytic, atol=1e-5)


def _mixture(k: int, d: int) -> MixtureSameFamily:
    """K diagonal Gaussians in d dimensions, unequal weights, scales from 0.02 to 2.7."""
    g = torch.Generator().manual_seed(5)
    loc = 2 * torch.randn(k, d, generator=g)
    scale = torch.exp(0.5 * (torch.rand(k, d, generator=g) * 10 - 8))
    normal = Independent(Normal(loc, scale, validate_args=False), 1)
    return MixtureSameFamily(Categorical(logits=torch.randn(k, generator=g)), normal)


def _direct_marginal_log_prob(pz: MixtureSameFamily, z: torch.Tensor) -> torch.Tensor:
    """log p_j(z_j) = logsumexp_k [log pi_k + log N(z_j ; mu_kj, sigma_kj^2)], term by term
    in float64: a loop over the dimensions j and the components k."""
    normal = pz.component_distribution.base_dist
    loc, scale = normal.loc.double(), normal.scale.double()  # (K, D)
    log_pi = torch.log_softmax(pz.mixture_distribution.logits.double(), -1)
    z = z.double()
    out = torch.empty_like(z)
    for j in range(z.shape[-1]):
        terms = [
            log_pi[k]
            - 0.5 * ((z[..., j] - loc[k, j]) / scale[k, j]) ** 2
            - scale[k, j].log()
            - 0.5 * math.log(2 * math.pi)
            for k in range(len(loc))
        ]
        out[..., j] = torch.logsumexp(torch.stack(terms), 0)
    return out


# 1: one row at a time; 63 = 3 rows of (D, K) = (3, 7), which does not divide the 80 rows
@pytest.mark.parametrize("elements", [1, 63, 1 << 18])
def test_mixture_kl_per_dim_is_the_mean_log_ratio_to_each_direct_marginal(monkeypatch, elements):
    monkeypatch.setattr("vaelab.core.kl.MIXTURE_KL_ELEMENTS", elements)  # where it is read
    pz = _mixture(k=7, d=3)
    torch.manual_seed(0)
    qz = Independent(Normal(2 * torch.randn(5, 3), torch.rand(5, 3) + 0.1), 1)
    torch.manual_seed(1)
    kl = kl_mod.kl_per_dim(qz, pz)  # 16 samples: (16 x 5) rows
    torch.manual_seed(1)
    z = qz.base_dist.sample((16,))  # the same draws
    base = Normal(qz.base_dist.loc.double(), qz.base_dist.scale.double())
    expected = (base.log_prob(z.double()) - _direct_marginal_log_prob(pz, z)).mean(0)
    assert kl.shape == (5, 3) and kl.dtype == torch.float32
    assert torch.allclose(kl.double(), expected, rtol=1e-5, atol=1e-5), (kl, expected)


def test_mixture_marginal_log_prob_is_the_direct_formula_also_far_from_every_component():
    pz = _mixture(k=7, d=3)
    # up to 200 units out, where every exp(log N) underflows in float32: only a
    # logsumexp shifted by its maximum stays finite
    z = torch.tensor([[0.0, 1.0, -1.0], [5.0, -7.0, 3.0], [40.0, -60.0, 200.0]])
    got = kl_mod.mixture_marginal_log_prob(pz, z[:, None, :])
    assert got.shape == (3, 1, 3) and torch.isfinite(got).all()
    direct = _direct_marginal_log_prob(pz, z[:, None, :])
    assert torch.allclose(got.double(), direct, rtol=1e-6, atol=1e-5), (got, direct)


_KL_MEMORY = """
import torch
from torch.distributions import Independent, Normal
from vaelab.core import kl as kl_mod
from peak import peak_kib
from vaelab.core.priors import MixtureOfGaussians

torch.manual_seed(3)
pz = MixtureOfGaussians(40, 500)()
qz = Independent(Normal(torch.randn(1000, 40), torch.rand(1000, 40) + 0.1), 1)
before = peak_kib()
with torch.no_grad():
    kl = kl_mod.kl_per_dim(qz, pz)
assert kl.shape == (1000, 40) and torch.isfinite(kl).all()
print(peak_kib() - before)
"""


def test_mixture_kl_per_dim_memory_does_not_grow_with_the_rows():
    """A VampPrior's shape (K = 500, D = 40), 1,000 examples x 16 samples: 320 million
    (row, j, k) terms, 1.2 GiB if held at once; chunked, a few MiB (7 to 15 measured). In a
    fresh process, whose heap is not pytest's: a version that kept each chunk's small result
    in a list raised the peak by up to 1.2 GiB there (in some runs only: it depends on where
    the heap places them), by 16 MiB under pytest."""
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root / "benchmarks")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", _KL_MEMORY], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 50 * 1024  # KiB


class _Affine(nn.Module):
    """Encoder x -> (A x + c, fixed log_var), used to place q exactly where we want it."""

    def __init__(self, a, c, log_var):
        super().__init__()
        self.a, self.c, self.log_var = a, c, log_var

    def forward(self, x):
        return x @ self.a.T + self.c, self.log_var.expand(len(x), -1)


def _linear_gaussian(p=5, d=2, sigma=0.5, seed=0):
    torch.manual_seed(seed)
    decoder = nn.Linear(d, p).double()
    # orthogonal columns make W^T W diagonal, so the true posterior is a diagonal Gaussian
    # that the encoder's family holds exactly
    q, _ = torch.linalg.qr(torch.randn(p, d, dtype=torch.float64))
    with torch.no_grad():
        decoder.weight.copy_(q * torch.linspace(2.0, 0.7, d, dtype=torch.float64))
    likelihood = GaussianLikelihood((p,), sigma=sigma).double()
    w, b = decoder.weight.detach(), decoder.bias.detach()
    # exact posterior of z given x: N(M^-1 W^T (x - b) / s^2, M^-1), M = I + W^T W / s^2
    m = torch.eye(d, dtype=torch.float64) + w.T @ w / sigma**2
    cov = torch.linalg.inv(m)
    exact_encoder = _Affine(
        cov @ w.T / sigma**2, -(cov @ w.T @ b) / sigma**2, torch.log(torch.diagonal(cov))[None]
    )
    poor_encoder = _Affine(
        torch.zeros(d, p, dtype=torch.float64),
        torch.zeros(d, dtype=torch.float64),
        torch.zeros(1, d, dtype=torch.float64),
    )
    prior = StandardNormal(d).double()
    marginal = MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(p, dtype=torch.float64))
    return decoder, likelihood, prior, exact_encoder, poor_encoder, marginal, cov


def test_elbo_never_exceeds_the_exact_log_likelihood_of_a_linear_gaussian_model():
    decoder, likelihood, prior, exact_enc, poor_enc, marginal, _ = _linear_gaussian()
    x = marginal.sample((50,))
    log_px = marginal.log_prob(x)  # exact: N(b, W W^T + sigma^2 I)
    for encoder in (exact_enc, poor_enc):
        model = VAE(encoder, decoder, prior, likelihood, (5,))
        terms = obj.elbo(model, x, k=20_000)
        # Monte Carlo noise of the 20,000-sample average is < 0.01 nats here
        assert (terms.elbo <= log_px + 0.02).all()
        assert torch.allclose(terms.elbo, terms.reconstruction - terms.kl)
    # the poor encoder's bound is loose by a clear margin, the exact posterior's is tight
    poor = obj.elbo(VAE(poor_enc, decoder, prior, likelihood, (5,)), x, k=20_000).elbo
    assert (log_px - poor).mean() > 0.1


def test_elbo_is_tight_when_q_is_the_exact_posterior():
    decoder, likelihood, prior, exact_enc, _, marginal, _ = _linear_gaussian(seed=3)
    model = VAE(exact_enc, decoder, prior, likelihood, (5,))
    x = marginal.sample((20,))
    terms = obj.elbo(model, x, k=50_000)
    assert torch.allclose(terms.elbo, marginal.log_prob(x), atol=0.02)


def test_beta_weights_only_the_kl_and_beta_zero_is_a_reconstruction_loss():
    decoder, likelihood, prior, _, poor_enc, marginal, _ = _linear_gaussian()
    model = VAE(poor_enc, decoder, prior, likelihood, (5,))
    x = marginal.sample((8,))
    for beta in (0.0, 1.0, 4.0):
        torch.manual_seed(1)
        t = obj.elbo(model, x, beta=beta)
        expected = -(t.reconstruction - beta * t.kl).mean()
        assert torch.allclose(t.loss, expected)
    torch.manual_seed(1)
    t0 = obj.elbo(model, x, beta=0.0)
    assert torch.allclose(t0.loss, -t0.reconstruction.mean())


def _learnable_linear_vae(seed=0, p=5, d=2):
    """A linear VAE in float64 whose encoder is a learnable (imperfect) linear map."""
    from vaelab.core.networks import MLPEncoder

    decoder, likelihood, prior, _, _, marginal, _ = _linear_gaussian(p=p, d=d, seed=seed)
    torch.manual_seed(seed + 100)
    encoder = MLPEncoder((p,), [], d).double()
    return VAE(encoder, decoder, prior, likelihood, (p,)), marginal


def _grads(model, x, k, grad, seed):
    torch.manual_seed(seed)
    model.zero_grad()
    terms = obj.iwae(model, x, k=k, grad=grad)
    terms.loss.backward()
    enc = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])
    dec = torch.cat([p.grad.flatten() for p in model.decoder.parameters()])
    return terms, enc, dec


def test_dreg_keeps_the_bound_and_the_decoder_gradient_of_the_standard_estimator():
    model, marginal = _learnable_linear_vae()
    x = marginal.sample((16,))
    for seed in range(3):
        standard, _, dec_standard = _grads(model, x, 10, "standard", seed)
        dreg, _, dec_dreg = _grads(model, x, 10, "dreg", seed)
        assert torch.allclose(dreg.elbo, standard.elbo)  # the same z, the same L_K
        assert torch.allclose(dreg.loss, standard.loss)
        assert torch.allclose(dec_dreg, dec_standard)


def test_dreg_encoder_gradient_has_the_standard_mean_and_less_noise_at_large_k():
    model, marginal = _learnable_linear_vae(seed=1)
    x = marginal.sample((1,))
    # per-draw gradients of one example: their spread is each estimator's noise
    draws = {"standard": [], "dreg": []}
    for seed in range(200):
        for grad in draws:
            draws[grad].append(_grads(model, x, 64, grad, seed)[1])
    var = {g: torch.stack(d).var(0) for g, d in draws.items()}
    # DReG's variance is far lower (Tucker et al. 2018; Rainforth et al. 2018) ...
    assert var["dreg"].sum() < 0.25 * var["standard"].sum()
    # ... for the same expected gradient: the mean over m independent copies of x (each
    # with its own z) agrees within the Monte Carlo error of those means
    m = 20_000
    means = {g: _grads(model, x.expand(m, -1), 64, g, seed=7)[1] for g in draws}
    se = torch.sqrt((var["standard"] + var["dreg"]) / m)
    assert ((means["standard"] - means["dreg"]).abs() < 5 * se).all()
    assert (means["dreg"].abs() > 5 * se).any()  # a gradient that is there to be matched


def test_dreg_refuses_a_tempered_bound():
    model, marginal = _learnable_linear_vae()
    with pytest.raises(ValueError, match="beta must be 1"):
        obj.iwae(model, marginal.sample((2,)), k=4, beta=0.5, grad="dreg")


# --- beta-TCVAE: the KL split into MI, TC and dimension-wise KL (Chen et al. 2018) -----------


def _gaussian_batch(m=4, d=3, k=2, seed=0):
    """A diagonal Gaussian q(z|x_j) for each of ``m`` examples, and ``k`` samples of each."""
    torch.manual_seed(seed)
    loc = torch.randn(m, d, dtype=torch.float64)
    scale = torch.rand(m, d, dtype=torch.float64) + 0.5
    qz = Independent(Normal(loc, scale), 1)
    return qz, qz.sample((k,))


def _log_normal(z, loc, scale):
    return -0.5 * ((z - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def test_mi_tc_and_dimension_wise_kl_sum_to_the_log_ratio_exactly():
    qz, z = _gaussian_batch()
    pz = StandardNormal(3)().base_dist
    pz = Independent(Normal(pz.loc.double(), pz.scale.double()), 1)
    mi, tc, dim_kl = obj.tc_decomposition(qz, pz, z, n_data=1000)
    assert mi.shape == tc.shape == dim_kl.shape == (2, 4)
    log_ratio = qz.log_prob(z) - pz.log_prob(z)
    assert torch.allclose(mi + tc + dim_kl, log_ratio, rtol=0, atol=1e-12)


def test_minibatch_weighted_sampling_is_the_papers_formula_term_by_term():
    n_data, m, d = 1000, 4, 3
    qz, z = _gaussian_batch(m, d)
    pz = Independent(Normal(torch.zeros(d).double(), torch.ones(d).double()), 1)
    mi, tc, _ = obj.tc_decomposition(qz, pz, z, n_data)
    log_qz = qz.log_prob(z) - mi  # the estimate of log q(z) the decomposition used
    log_prod = log_qz - tc  # and of sum_d log q(z_d)
    loc, scale = qz.base_dist.loc.tolist(), qz.base_dist.scale.tolist()
    for k in range(2):
        for i in range(m):
            zi = z[k, i].tolist()
            # log (1 / (N M)) sum_j prod_d q(z_id | x_j), and per dimension, in plain floats
            joint = sum(
                math.exp(sum(_log_normal(zi[e], loc[j][e], scale[j][e]) for e in range(d)))
                for j in range(m)
            )
            marginals = [
                sum(math.exp(_log_normal(zi[e], loc[j][e], scale[j][e])) for j in range(m))
                for e in range(d)
            ]
            assert log_qz[k, i].item() == pytest.approx(math.log(joint / (n_data * m)), abs=1e-9)
            expected = sum(math.log(s / (n_data * m)) for s in marginals)
            assert log_prod[k, i].item() == pytest.approx(expected, abs=1e-9)


def test_with_the_whole_data_set_as_batch_the_estimate_is_the_aggregate_posterior_less_log_n():
    """N = M: q(z) = (1/N) sum_n q(z|x_n) is computable by brute force, and MWS's estimate of
    log q(z) (and of each log q(z_d)) is it minus log N exactly: the known bias, in constants."""
    n, d = 5, 3
    qz, z = _gaussian_batch(n, d, k=1)
    pz = Independent(Normal(torch.zeros(d).double(), torch.ones(d).double()), 1)
    mi, tc, dim_kl = obj.tc_decomposition(qz, pz, z, n_data=n)
    base = qz.base_dist
    true_qz = torch.stack([qz.log_prob(zi.expand(n, d)) for zi in z[0]]).exp().mean(1).log()
    true_qzd = torch.stack(
        [Normal(base.loc, base.scale).log_prob(zi.expand(n, d)) for zi in z[0]]
    ).exp().mean(1).log().sum(-1)  # fmt: skip
    true_mi = qz.log_prob(z)[0] - true_qz
    true_tc = true_qz - true_qzd
    true_dim_kl = true_qzd - pz.log_prob(z)[0]
    log_n = math.log(n)
    assert torch.allclose(mi[0], true_mi + log_n, atol=1e-10)
    assert torch.allclose(tc[0], true_tc + (d - 1) * log_n, atol=1e-10)
    assert torch.allclose(dim_kl[0], true_dim_kl - d * log_n, atol=1e-10)


def _tiny_vae(d=3, p=5):
    torch.manual_seed(0)
    encoder = _Affine(torch.randn(d, p), torch.zeros(d), torch.full((d,), -1.0))
    return VAE(encoder, nn.Linear(d, p), StandardNormal(d), GaussianLikelihood((p,)), (p,))


def test_beta_tc_at_tc_beta_one_is_the_negative_elbo_with_a_monte_carlo_kl():
    model, x = _tiny_vae(), torch.randn(8, 5)
    torch.manual_seed(1)
    terms = obj.beta_tc(model, x, tc_beta=1.0, n_data=100)
    torch.manual_seed(1)
    qz = model.q_z(x)
    z = qz.rsample((1,))
    reconstruction = model.p_x(z).log_prob(x).mean(0)
    log_ratio = (qz.log_prob(z) - model.p_z().log_prob(z)).mean(0)
    assert torch.allclose(terms.loss, -(reconstruction - log_ratio).mean(), atol=1e-5)
    # elbo and kl are the ordinary ones (closed-form KL): the logged numbers stay bounds
    kl = kl_mod.kl_term(qz, model.p_z(), z)
    assert torch.allclose(terms.reconstruction, reconstruction)
    assert torch.allclose(terms.kl, kl) and torch.allclose(terms.elbo, reconstruction - kl)


def test_beta_tc_loss_grows_by_the_extra_weight_on_tc():
    model, x = _tiny_vae(), torch.randn(8, 5)
    losses = []
    for tc_beta in (1.0, 6.0):
        torch.manual_seed(1)
        losses.append(obj.beta_tc(model, x, tc_beta=tc_beta, n_data=100, k=3).loss)
    torch.manual_seed(1)
    qz = model.q_z(x)
    _, tc, _ = obj.tc_decomposition(qz, model.p_z(), qz.rsample((3,)), 100)
    assert torch.allclose(losses[1] - losses[0], 5 * tc.mean(), atol=1e-4)


# --- objective options: beta = 0, free bits (issue 6) ---------------------------------------


def _tiny_mlp_vae(seed=0, d=3, p=6):
    from vaelab.core.networks import MLPDecoder, MLPEncoder

    torch.manual_seed(seed)
    encoder = MLPEncoder((p,), [8], d)
    decoder = MLPDecoder((p,), [8], d)
    return VAE(encoder, decoder, StandardNormal(d), GaussianLikelihood((p,), sigma=0.5), (p,))


def test_beta_zero_is_the_autoencoder_reconstruction_loss_on_the_same_noise():
    model = _tiny_mlp_vae()
    x = torch.randn(5, 6)
    torch.manual_seed(1)
    terms = obj.elbo(model, x, beta=0.0, k=3)
    torch.manual_seed(1)
    again = obj.elbo(model, x, beta=1.0, k=3)  # the same z, so the same reconstruction
    assert torch.equal(terms.reconstruction, again.reconstruction)
    assert torch.equal(terms.loss, -terms.reconstruction.mean())


def test_free_bits_value_is_the_floor_formula_and_elbo_is_unfloored():
    model = _tiny_mlp_vae()
    x = torch.randn(7, 6)
    lam, beta = 0.3, 0.7
    torch.manual_seed(2)
    terms = obj.free_bits_elbo(model, x, lam, beta=beta)
    torch.manual_seed(2)
    plain = obj.elbo(model, x)
    per_dim = kl_mod.kl_per_dim(model.q_z(x), model.p_z())
    floor = torch.clamp(per_dim.mean(0), min=lam).sum()
    assert torch.allclose(terms.loss, -plain.reconstruction.mean() + beta * floor)
    assert torch.allclose(terms.elbo, plain.elbo) and torch.allclose(terms.kl, plain.kl)


def test_free_bits_give_no_kl_gradient_to_dimensions_below_the_floor():
    model = _tiny_mlp_vae(d=3)
    x = torch.randn(16, 6)
    with torch.no_grad():  # dimension 0 far from the prior, 1 and 2 close to it
        out = model.encoder.net[-1]
        out.weight.zero_()
        out.bias.copy_(torch.tensor([3.0, 0.01, 0.0, 0.0, -0.01, 0.0]))
    per_dim = kl_mod.kl_per_dim(model.q_z(x), model.p_z()).mean(0)
    lam = 0.5
    below = per_dim < lam
    assert below.tolist() == [False, True, True]
    # the KL part of the loss alone: free_bits_elbo's loss minus its reconstruction part
    torch.manual_seed(3)
    terms = obj.free_bits_elbo(model, x, lam)
    kl_loss = terms.loss + terms.reconstruction.mean()
    grad = torch.autograd.grad(kl_loss, [out.weight, out.bias])
    d = 3  # rows j (loc_j) and d + j (log_var_j) of the encoder's last layer
    for j in range(d):
        rows = [j, d + j]
        g = torch.cat([grad[0][rows].flatten(), grad[1][rows]])
        assert (g == 0).all() == bool(below[j]), (j, g)
