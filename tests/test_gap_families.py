"""q* fitted per datapoint in the model's own family of q (diagonal, full, IAF), the gap and
AIS on each: the full-covariance q* closes a linear-Gaussian model's approximation gap, which
the diagonal q* cannot; an IAF q* fits a flow per datapoint, each on its own; `vaelab gap`
on full and IAF runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaelab import Config, VaelabError, load, train
from vaelab.build import build_model
from vaelab.cli import main
from vaelab.core.baselines import linear_gaussian_elbo, linear_gaussian_posterior
from vaelab.core.inference import Amortized, fit_local, init_local
from vaelab.core.made import free_parameters
from vaelab.evaluate.ais import ais_log_px
from vaelab.evaluate.gap import elbo_per_example
from vaelab.evaluate.likelihood import exact_log_px, importance_sampled_log_px

from .linear_gaussian import one_thread  # noqa: F401

P, D, SIGMA = 6, 2, 0.5
COSINE = 0.7  # between W's two columns: the posterior's correlation is then -0.67


def correlated_linear_gaussian(family: str, n: int = 10, seed: int = 0):
    """(model, x): a linear-Gaussian VAE with q of ``family`` and data x = W z + b + noise,
    float64, W's columns (lengths 3 and 2) at cosine 0.7, so that the exact posterior
    p(z | x) = N(loc, (I + W^T W / sigma^2)^-1) is a correlated Gaussian (correlation -0.67):
    inside the full family, outside the diagonal one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the encoder's initial weights
        torch.manual_seed(seed)
        config = Config(
            arch="linear", likelihood="gaussian", latent_dim=D, sigma=SIGMA, posterior=family
        )
        model = build_model(config, (1, 1, P)).double()
    basis, _ = torch.linalg.qr(torch.randn(P, D, generator=gen, dtype=torch.float64))
    tilted = COSINE * basis[:, 0] + math.sqrt(1 - COSINE**2) * basis[:, 1]
    weight = torch.stack([3.0 * basis[:, 0], 2.0 * tilted], 1)
    bias = torch.randn(P, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        model.decoder.output.weight.copy_(weight)
        model.decoder.output.bias.copy_(bias)
    z = torch.randn(n, D, generator=gen, dtype=torch.float64)
    x = z @ weight.T + bias + SIGMA * torch.randn(n, P, generator=gen, dtype=torch.float64)
    return model.eval(), x.view(n, 1, 1, P)


def gaussian_elbo(model, x, loc, cov) -> torch.Tensor:
    """The ELBO of q = N(loc, cov) ``(N, D)``, ``(N, D, D)`` under the linear-Gaussian model,
    in closed form, ``(N,)``:

        E_q[log p(x | z)] = -1/2 sum_p [log 2 pi sigma_p^2
                                        + ((x - W loc - b)_p^2 + (W cov W^T)_pp) / sigma_p^2]
        KL(q || N(0, I)) = 1/2 [tr cov + |loc|^2 - D - log det cov]
    """
    w, b = model.decoder.output.weight.detach(), model.decoder.output.bias.detach()
    s2 = model.likelihood.log_scale.detach().exp().flatten() ** 2
    residual = x.flatten(1) - loc @ w.T - b
    spread = torch.einsum("pd,nde,pe->np", w, cov, w)
    reconstruction = -0.5 * (torch.log(2 * math.pi * s2) + (residual**2 + spread) / s2).sum(-1)
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    kl = 0.5 * (trace + (loc**2).sum(-1) - loc.shape[-1] - torch.logdet(cov))
    return reconstruction - kl


def fit_closely(model, x):
    """q* by Adam from the encoder's q, the step shrunk twice to settle Adam's jitter (the
    protocol's 1e-3 would take thousands of steps)."""
    fit = fit_local(model, x, steps=300, lr=0.05, samples=50)
    for lr in (0.01, 0.002):
        fit = fit_local(model, x, steps=150, lr=lr, samples=50, posteriors=fit.posteriors)
    return fit


def test_full_q_star_closes_a_linear_gaussian_approximation_gap_and_diagonal_does_not():
    model, x = correlated_linear_gaussian("full")
    exact = exact_log_px(model, x)["log_px"]
    q = fit_closely(model, x).posteriors.q_z()
    assert q.covariance_matrix.shape == (10, D, D)
    elbo_full = gaussian_elbo(model, x, q.mean, q.covariance_matrix).mean().item()
    assert exact - 0.01 < elbo_full <= exact  # ELBO(q*) = log p(x), to 0.01 nats

    diagonal, x_diagonal = correlated_linear_gaussian("diagonal")
    assert torch.equal(x_diagonal, x)
    q = fit_closely(diagonal, x).posteriors.q_z()
    w, b = diagonal.decoder.output.weight.detach(), diagonal.decoder.output.bias.detach()
    elbo_diagonal = gaussian_elbo(diagonal, x, q.mean, torch.diag_embed(q.variance))
    torch.testing.assert_close(
        elbo_diagonal, linear_gaussian_elbo(x.flatten(1), w, b, SIGMA, q.mean, q.variance)
    )
    # the best diagonal Gaussian misses by 1/2 log(prod_d Lambda_dd det Sigma) nats, Lambda
    # the posterior's precision: -1/2 log(1 - rho^2) = 0.30 here, for every x
    _, cov = linear_gaussian_posterior(x.flatten(1), w, b, SIGMA)
    mean_field = 0.5 * (torch.linalg.inv(cov).diagonal().log().sum() + torch.logdet(cov))
    gap = exact - elbo_diagonal.mean().item()
    assert gap > 0.25 and gap == pytest.approx(mean_field.item(), abs=0.01)


def _tiny(family: str):
    torch.manual_seed(0)
    flow = {"flow_steps": 2, "flow_hidden": [16]} if family == "iaf" else {}
    config = Config(latent_dim=3, hidden=[16], likelihood="bernoulli", posterior=family, **flow)
    return build_model(config, (1, 8, 8)).eval()


def _bits(n: int, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(
        torch.full((n, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(seed)
    )


def test_q_star_starts_as_the_amortized_q_in_each_richer_family():
    x = _bits(5)
    for family, numbers in (("full", 3 + 3 + 3), ("iaf", 3 + 3 + 3)):
        model = _tiny(family)
        start = init_local(model, x)
        assert start.family == family
        with torch.no_grad():
            q, q_star = model.q_z(x), start.q_z(x)
            torch.manual_seed(1)
            z = q.rsample((4,))
            torch.manual_seed(1)
            z_star = q_star.rsample((4,))
            torch.testing.assert_close(z_star, z)
            torch.testing.assert_close(q_star.log_prob(z_star), q.log_prob(z))
            torch.testing.assert_close(q_star.mean, q.mean)
            torch.testing.assert_close(q_star.stddev, q.stddev)
            # a subset of rows answers for those rows
            rows = torch.tensor([3, 1])
            torch.testing.assert_close(start.q_z(x[rows], rows).mean, q.mean[rows])
        # what is fitted per datapoint: loc, log_var, L's entries or the context, and for
        # the IAF a copy of the flow's free weights
        flow = free_parameters(model.posterior)
        assert start.num_parameters == 5 * (numbers + flow)
        assert Amortized(model).num_parameters == flow + sum(
            p.numel() for p in model.encoder.parameters()
        )
        assert (flow > 0) == (family == "iaf")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """1-epoch digits runs with --posterior full and iaf, trained through the public API."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family in ("full", "iaf"):
        flow = {"flow_steps": 2, "flow_hidden": [24]} if family == "iaf" else {}
        config = Config(
            data="digits", latent_dim=3, epochs=1, hidden=[32], posterior=family,
            out=str(root / family), **flow,
        )  # fmt: skip
        out[family] = train(config, progress=False, log=lambda _: None)
    return out


def test_iaf_q_star_raises_the_elbo_with_a_flow_of_its_own_per_datapoint(runs):
    model = load(runs["iaf"]).eval()
    x = _bits(8, seed=1)
    fit = fit_local(model, x, steps=150, lr=1e-2, samples=10)
    q_star = fit.posteriors
    assert q_star.family == "iaf" and len(q_star.steps) == 2
    amortized = elbo_per_example(model, x, Amortized(model), samples=500)
    local = elbo_per_example(model, x, q_star, samples=500)
    gain = local - amortized
    assert gain.mean() > 3 * gain.std() / math.sqrt(len(gain)) and gain.mean() > 0.05
    # the flows moved from the trained one, each datapoint's its own way
    moved = q_star.steps[0].weights[0] - model.posterior.steps[0].layers[0].weight
    assert (moved.flatten(1).abs().sum(1) > 0).all()
    assert not torch.allclose(moved[0], moved[1])
    # importance sampling under q* runs with the flow's own log q at its own draws
    log_px, ess = importance_sampled_log_px(model, x, k=50, q=q_star, batch_size=3, chunk=7)
    assert torch.isfinite(log_px).all() and (log_px > local - 1.0).all() and (ess >= 1).all()

    # independent fits: datapoint 0's ELBO has no gradient in any other datapoint's numbers
    start = init_local(model, x)
    start.requires_grad_(True)
    torch.manual_seed(0)
    elbo = model.elbo(x, k=4, qz=start.q_z())
    grads = torch.autograd.grad(elbo[0], list(start.parameters()))
    assert all(g[1:].abs().max() == 0 for g in grads)
    assert all(g[0].abs().max() > 0 for g in grads[:3])  # loc, log_var, context
    assert sum(g[0].abs().sum() for g in grads[3:]) > 0  # its flow's weights
    # and changing datapoint 7's image leaves the others' fits as they were
    other = x.clone()
    other[7] = 1 - other[7]
    refit = fit_local(model, other, steps=20, lr=1e-2, samples=10).posteriors
    again = fit_local(model, x, steps=20, lr=1e-2, samples=10).posteriors
    for a, b in zip(refit.parameters(), again.parameters(), strict=True):
        torch.testing.assert_close(a[:7], b[:7], rtol=0, atol=1e-6)
    assert not torch.equal(refit.loc[7], again.loc[7])


@pytest.mark.parametrize("family", ["full", "iaf"])
def test_vaelab_gap_prints_the_table_for_a_richer_family(runs, capsys, family):
    args = ["gap", str(runs[family]), "--n", "4", "--steps", "5", "--k", "20"]
    args += ["--samples", "5", "--ais-steps", "3", "--ais-chains", "2", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"q and q* in the family --posterior {family}" in out
    for row in ("log p^(x)", "ELBO, per-datapoint q*", "approximation gap", "amortization gap"):
        assert row in out
    # loc, log_var and L's 3 entries or the context's 3, and an IAF's copy of its flow
    flow = free_parameters(load(runs[family]).posterior)
    per_image = 3 + 3 + 3 + flow
    assert f"{per_image:,} per image ({family})" in out
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["family"] == family and result["local_steps"] == 5
    assert result["params_local"] == 4 * per_image
    total = result["approximation_gap"] + result["amortization_gap"]
    assert total == pytest.approx(result["log_px"] - result["elbo_amortized"], abs=1e-9)


def test_ais_from_the_encoder_runs_for_full_q_and_is_refused_in_one_line_for_iaf():
    x = _bits(3)
    log_px = ais_log_px(_tiny("full"), x, steps=5, chains=2, start="encoder")
    assert log_px.shape == (3,) and torch.isfinite(log_px).all()
    with pytest.raises(VaelabError) as caught:
        ais_log_px(_tiny("iaf"), x, steps=5, chains=2, start="encoder")
    message = str(caught.value)
    assert "\n" not in message and "start='prior'" in message and "--posterior iaf" in message
    # the prior start needs no log q: every family takes it
    assert torch.isfinite(ais_log_px(_tiny("iaf"), x, steps=5, chains=2)).all()
