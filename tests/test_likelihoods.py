"""Each likelihood's log-density against a reference computed independently in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli, Independent

from vaelab.build import build_model
from vaelab.config import Config
from vaelab.core.likelihoods import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixture,
    GaussianLikelihood,
)
from vaelab.errors import VaelabError


def test_bernoulli_and_gaussian_match_scipy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6)) * 3
    x = (rng.random((4, 6)) < 0.5).astype(float)
    got = BernoulliLikelihood((6,))(torch.tensor(logits)).log_prob(torch.tensor(x))
    ref = stats.bernoulli(1 / (1 + np.exp(-logits))).logpmf(x).sum(-1)
    assert np.allclose(got.numpy(), ref)
    loc = rng.normal(size=(4, 6))
    y = rng.normal(size=(4, 6))
    got = GaussianLikelihood((6,), sigma=0.3).double()(torch.tensor(loc)).log_prob(torch.tensor(y))
    assert np.allclose(got.numpy(), stats.norm(loc, 0.3).logpdf(y).sum(-1))


def _cb_log_density(x, lam):
    """log CB(x ; lam) from its definition, float64; C(lam) by its series within 1e-4 of 1/2:
    2 atanh(t) / t = 2 (1 + t^2/3 + t^4/5 + ...), t = 1 - 2 lam."""
    t = 1 - 2 * lam
    series = 2 * (1 + t**2 / 3 + t**4 / 5 + t**6 / 7)
    with np.errstate(divide="ignore", invalid="ignore"):
        closed = 2 * np.arctanh(t) / t
    log_c = np.log(np.where(np.abs(t) < 2e-4, series, closed))
    return log_c + x * np.log(lam) + (1 - x) * np.log1p(-lam)


def test_bernoulli_log_density_and_gradient_equal_torchs_over_broadcast_samples():
    # BernoulliPixels' log-density (three passes) against torch's Independent(Bernoulli), in
    # float64, on logits of K samples x B images x an image's dims broadcast against x of
    # (B, *dims), with logits far in both tails where softplus switches to its linear branch
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 1, 4, 4, dtype=torch.float64) * 8
    logits[0, 0, 0, 0, :2] = torch.tensor([60.0, -60.0], dtype=torch.float64)
    x = (torch.rand(5, 1, 4, 4) < 0.5).double()
    fast_logits = logits.clone().requires_grad_()
    ref_logits = logits.clone().requires_grad_()
    fast = BernoulliLikelihood((1, 4, 4))(fast_logits).log_prob(x)
    ref = Independent(Bernoulli(logits=ref_logits, validate_args=False), 3).log_prob(x)
    assert fast.shape == ref.shape == (3, 5)
    assert torch.allclose(fast, ref, rtol=1e-12, atol=1e-10)
    weights = torch.randn(3, 5, dtype=torch.float64)
    (fast * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.allclose(fast_logits.grad, ref_logits.grad, rtol=1e-12, atol=1e-12)


def test_bernoulli_log_density_in_float32_is_as_accurate_as_torchs_for_confident_logits():
    # a decoder confident and right on every pixel (|l| from 8 to 20, x = 1[l > 0]): each
    # term is below 1e-3 nats, but the sums of x l and of softplus(l) run to thousands, and
    # their float32 difference would be off by ~1e-3. Per-pixel terms must do as well as torch
    torch.manual_seed(1)
    sign = torch.randint(0, 2, (50, 1, 28, 28)).float() * 2 - 1
    logits = sign * (8 + 12 * torch.rand(20, 50, 1, 28, 28))
    x = (sign > 0).float()
    exact = Independent(Bernoulli(logits=logits.double(), validate_args=False), 3)
    exact = exact.log_prob(x.double())
    ours = BernoulliLikelihood((1, 28, 28))(logits).log_prob(x)
    torchs = Independent(Bernoulli(logits=logits, validate_args=False), 3).log_prob(x)
    assert ours.dtype == torch.float32 and exact.abs().max() < 1
    ours_error = (ours.double() - exact).abs().max()
    torchs_error = (torchs.double() - exact).abs().max()
    assert ours_error <= 2 * torchs_error + 1e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_continuous_bernoulli_matches_the_direct_formula_also_near_one_half(dtype):
    rng = np.random.default_rng(1)
    lam = np.concatenate(
        [
            rng.uniform(0.02, 0.98, 200),
            0.5 + rng.uniform(-2e-3, 2e-3, 200),  # around torch's Taylor window (+-1e-3)
            [0.5, 0.5 - 1e-7, 0.5 + 1e-4, 0.499, 0.501, 0.4989, 0.5011],
        ]
    )
    x = rng.random(len(lam))
    logits = torch.tensor(np.log(lam) - np.log1p(-lam), dtype=dtype)
    got = ContinuousBernoulliLikelihood((1,))(logits[:, None]).log_prob(
        torch.tensor(x, dtype=dtype)[:, None]
    )
    ref = _cb_log_density(x, lam)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    assert np.abs(got.double().numpy() - ref).max() < tol


def _logistic_reference(x, logits, loc, scale):
    """log sum_m pi_m P_m(bin of x), CDF differences from scipy.stats.logistic in float64
    (from the survival function above the mean, so neither tail cancels)."""
    h = 0.5 / 255
    xm = x[..., None]
    dist = stats.logistic(loc, scale)
    upper = np.where(xm > 1 - h, 1.0, dist.cdf(xm + h))
    lower = np.where(xm < h, 0.0, dist.cdf(xm - h))
    upper_sf = np.where(xm > 1 - h, 0.0, dist.sf(xm + h))
    lower_sf = np.where(xm < h, 1.0, dist.sf(xm - h))
    mass = np.where(xm > loc, lower_sf - upper_sf, upper - lower)
    log_pi = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.log((np.exp(log_pi) * mass).sum(-1))


def test_discretized_logistic_mixture_matches_scipy_cdf_differences():
    rng = np.random.default_rng(2)
    n, m = 3000, 3
    x = rng.integers(0, 256, n) / 255
    x[:20], x[20:40] = 0.0, 1.0  # both edges
    logits = rng.normal(size=(n, m))
    loc = rng.uniform(-0.2, 1.2, (n, m))
    log_scale = rng.uniform(-6.5, 0.5, (n, m))
    dist = DiscretizedLogisticMixture(*(torch.tensor(a) for a in (logits, loc, log_scale)))
    got = dist.log_prob(torch.tensor(x)).numpy()
    ref = _logistic_reference(x, logits, loc, np.exp(log_scale))
    assert np.allclose(got, ref, rtol=1e-9, atol=1e-9)
    # one bin's probabilities over all 256 levels sum to 1
    levels = torch.arange(256, dtype=torch.float64) / 255
    first = (torch.tensor(a[:1]).expand(256, m) for a in (logits, loc, log_scale))
    one = DiscretizedLogisticMixture(*first)
    assert one.log_prob(levels).exp().sum().item() == pytest.approx(1.0, abs=1e-9)


def test_discretized_logistic_gradient_is_finite_far_in_the_tails():
    loc = torch.tensor([[5.0], [-5.0], [0.5]], requires_grad=True)
    log_scale = torch.full((3, 1), -7.0, requires_grad=True)
    dist = DiscretizedLogisticMixture(torch.zeros(3, 1), loc, log_scale)
    value = dist.log_prob(torch.tensor([0.3, 0.7, 0.5])).sum()
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(loc.grad).all()


def test_logistic_likelihood_shapes_samples_and_model():
    lik = DiscretizedLogisticLikelihood((1, 28, 28), n_components=5)
    assert lik.param_shape == (15, 28, 28)
    out = torch.randn(4, 2, 15, 28, 28)
    px = lik(out)
    assert px.batch_shape == (4, 2) and px.event_shape == (1, 28, 28)
    x = px.sample()
    assert torch.equal(x, torch.round(x * 255) / 255) and x.min() >= 0 and x.max() <= 1
    assert lik.mean(out).shape == (4, 2, 1, 28, 28)
    config = Config(likelihood="logistic", logistic_components=2, arch="conv", hidden=[32])
    model = build_model(config, (1, 28, 28))
    assert model.p_x(torch.randn(3, 10)).log_prob(torch.rand(3, 1, 28, 28)).shape == (3,)


def test_grey_level_likelihoods_refuse_binarization():
    with pytest.raises(VaelabError, match="binarize none"):
        Config(likelihood="continuous-bernoulli", binarize="dynamic")


def test_a_logistic_far_wider_than_a_bin_keeps_its_density_and_gradient():
    """log P(x) -> log(bin width) + log density at the centre, d/d log s -> -1: the
    difference of two CDFs that float32 cannot tell apart must not freeze at a floor."""
    from vaelab.core.likelihoods import BINS, DiscretizedLogisticMixture

    for log_s in (8.0, 12.0, 16.0):
        log_scale = torch.tensor([[log_s]], requires_grad=True)
        px = DiscretizedLogisticMixture(torch.zeros(1, 1), torch.full((1, 1), 0.5), log_scale)
        log_p = px.log_prob(torch.tensor([0.5])).sum()
        log_p.backward()
        # logistic density at its centre is 1 / (4 s); the bin is 1 / (BINS - 1) wide
        expected = -math.log(BINS - 1) - log_s - math.log(4.0)
        assert log_p.item() == pytest.approx(expected, abs=1e-4)
        assert log_scale.grad.item() == pytest.approx(-1.0, abs=1e-3)
