"""Annealed importance sampling against the exact log p(x) of a linear-Gaussian model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaelab import Config
from vaelab.build import build_model
from vaelab.cli import main
from vaelab.core.baselines import linear_gaussian_log_px
from vaelab.errors import VaelabError
from vaelab.evaluate import importance_sampled_log_px
from vaelab.evaluate.ais import _anneal, ais_log_px, sigmoid_schedule

from .linear_gaussian import decoder_params, linear_gaussian_model, one_thread  # noqa: F401


def test_schedule_runs_from_zero_to_one_increasing():
    betas = sigmoid_schedule(50)
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()


def test_ais_matches_the_exact_log_px():
    model, x = linear_gaussian_model(n=30, sigma=1.0)
    exact = linear_gaussian_log_px(x.flatten(1), *decoder_params(model))
    estimate = ais_log_px(model, x, steps=200, chains=16, leapfrog=3)
    assert estimate.dtype == torch.float64 and torch.isfinite(estimate).all()
    error = estimate - exact
    # each example within a nat (its own noise), the mean over examples within its s.e.
    assert error.abs().max() < 1.0
    assert error.mean().abs() < 4 * error.std() / math.sqrt(len(error)) + 0.05


def test_more_annealing_steps_tighten_the_estimate_started_at_the_encoder():
    model, x = linear_gaussian_model(n=30, sigma=1.0)
    exact = linear_gaussian_log_px(x.flatten(1), *decoder_params(model))
    short = ais_log_px(model, x, steps=5, chains=4, leapfrog=2, start="encoder")
    long = ais_log_px(model, x, steps=100, chains=4, leapfrog=3, start="encoder")
    assert (short - exact).abs().mean() > 2 * (long - exact).abs().mean()


def test_ais_leaves_the_global_generator_alone_and_is_seeded():
    model, x = linear_gaussian_model(n=5)
    state = torch.get_rng_state()
    a = ais_log_px(model, x, steps=10, chains=2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, ais_log_px(model, x, steps=10, chains=2, seed=3))


def test_bad_arguments_name_the_problem():
    model, x = linear_gaussian_model(n=2)
    with pytest.raises(VaelabError, match="start"):
        ais_log_px(model, x, start="posterior")
    with pytest.raises(VaelabError, match="chains"):
        ais_log_px(model, x, chains=0)


def test_vaelab_eval_ais_reports_the_ais_estimate_beside_importance_sampling(digits_run, capsys):
    assert main(["eval", str(digits_run), "--k", "100", "--ais", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert math.isfinite(result["ais_nll_se"])
    # two estimates of the same -log p(x), each an upper bound in expectation: close
    assert abs(result["ais_nll_nats"] - result["nll_nats"]) < 1.0


MEANS = [[-2.5, 1.0], [2.0, 2.0], [0.5, -3.0]]  # three components the posterior can tell apart
LOG_WEIGHTS = [0.0, -0.5, -1.0]


def mixture_prior_model(n: int = 30):
    """(model, x, exact log p(x)): the linear-Gaussian model of ``linear_gaussian`` with a
    3-component mixture prior, x drawn from it. Then p(x) = sum_k pi_k N(x ; W mu_k + b,
    W S_k W^T + sigma^2 I), each term the linear-Gaussian log p(x) of x - W mu_k with W S_k^1/2.
    The encoder gives the likelihood's own posterior N(W^+ (x - b), 2 sigma^2 (W^T W)^-1) (the
    variance doubled, so its tails cover the prior's pull): a good importance proposal."""
    base, _ = linear_gaussian_model(n=1, sigma=1.0)
    weight, bias, sigma = decoder_params(base)
    config = Config(
        arch="linear", likelihood="gaussian", latent_dim=2, sigma=1.0, prior="mog",
        prior_components=3,
    )  # fmt: skip
    model = build_model(config, (1, 1, len(bias))).double().eval()
    gen = torch.Generator().manual_seed(1)
    means = torch.tensor(MEANS, dtype=torch.float64)
    log_var = torch.tensor([[0.0, -0.5], [-1.0, 0.0], [-0.3, -0.3]], dtype=torch.float64)
    pinv = torch.linalg.pinv(weight)  # (D, P)
    post_var = 2 * sigma[0] ** 2 / (weight * weight).sum(0)  # the columns are orthogonal
    with torch.no_grad():
        model.decoder.output.weight.copy_(weight)
        model.decoder.output.bias.copy_(bias)
        model.prior.loc.copy_(means)
        model.prior.log_var.copy_(log_var)
        model.prior.logits.copy_(torch.tensor(LOG_WEIGHTS, dtype=torch.float64))
        encoder = model.encoder.net[-1]
        encoder.weight.copy_(torch.cat([pinv, torch.zeros_like(pinv)]))
        encoder.bias.copy_(torch.cat([-pinv @ bias, post_var.log()]))
    k = torch.multinomial(torch.softmax(model.prior.logits, 0), n, True, generator=gen)
    z = means[k] + torch.exp(0.5 * log_var[k]) * torch.randn(n, 2, generator=gen).double()
    x = z @ weight.T + bias + sigma[0] * torch.randn(n, len(bias), generator=gen).double()
    log_pi = torch.log_softmax(model.prior.logits.detach(), 0)
    exact = torch.logsumexp(
        torch.stack(
            [
                log_pi[j]
                + linear_gaussian_log_px(
                    x - means[j] @ weight.T, weight * torch.exp(0.5 * log_var[j]), bias, sigma
                )
                for j in range(3)
            ]
        ),
        0,
    )
    return model, x.view(n, 1, 1, -1), exact


def test_ais_of_a_mixture_prior_agrees_with_importance_sampling():
    model, x, exact = mixture_prior_model()
    sampled, ess = importance_sampled_log_px(model, x, k=20_000)
    # the reference: with this proposal (ESS in the thousands) importance sampling's error is
    # a few hundredths of a nat at most, and the exact mixture log p(x) confirms it
    assert ess.min() > 1000 and (sampled - exact).abs().max() < 0.02
    estimate = ais_log_px(model, x, steps=500, chains=32, leapfrog=3)
    error = estimate - sampled
    # the tolerance of test_ais_matches_the_exact_log_px, whose model this is but for the
    # prior: each example within a nat (AIS's own noise), the mean over examples within its
    # s.e. The posterior has up to three modes, so more annealing than there: at 200 steps x
    # 16 chains one example came out 2.5 nats low; at 500 x 32 the worst of 30 examples over
    # seeds 0..5 was 0.45..0.82 nats off and every mean within its s.e.
    assert error.abs().max() < 1.0
    assert error.mean().abs() < 4 * error.std() / math.sqrt(len(error)) + 0.05


def test_ais_from_a_mixture_prior_gives_the_numbers_of_the_expanded_prior():
    """The fast path (one unexpanded p(z) for all chains) against the old one, which expanded
    the mixture over the batch and evaluated log p(z) through torch's general path."""
    model, x, _ = mixture_prior_model(n=6)
    steps, chains, leapfrog, step_size, seed = 15, 4, 3, 0.05, 2
    fast = ais_log_px(model, x, steps, chains, leapfrog, step_size, seed=seed)
    with torch.random.fork_rng(devices=[]), model.fixed_prior():
        torch.manual_seed(seed)
        q0 = model.p_z().expand(torch.Size([len(x)]))  # the old q0: components (B, K, D)
        assert q0.component_distribution.base_dist.loc.dim() == 3
        z0 = q0.sample((chains,))
        betas = sigmoid_schedule(steps).tolist()
        slow = _anneal(model, x, q0, z0, betas, leapfrog, step_size)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-9)
