"""The families of q(z | x) (core/posteriors.py, core/made.py): MADE's masks by its Jacobian,
the IAF's log-determinant against torch.func's, the full-covariance Gaussian's density and KL
against the closed forms in float64, and every estimator and a training run on each family.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaelab import Config, VaelabError
from vaelab.build import build_model
from vaelab.checkpoint import load
from vaelab.cli import main
from vaelab.core.gaussian import DiagonalNormal
from vaelab.core.kl import kl_per_dim, kl_term
from vaelab.core.made import MADE
from vaelab.core.posteriors import FullNormal, IAFPosterior, full_normal, iaf_flow
from vaelab.evaluate import posterior_stats
from vaelab.evaluate.ais import ais_log_px
from vaelab.evaluate.likelihood import importance_sampled_log_px
from vaelab.objectives import elbo, iwae

FAMILIES = ("diagonal", "full", "iaf")


@pytest.mark.parametrize("reverse", [False, True])
def test_made_output_d_depends_on_exactly_the_inputs_before_d(reverse):
    torch.manual_seed(0)
    d = 5
    order = torch.arange(d, 0, -1) if reverse else None
    made = MADE(d, [12, 12], context=3, n_out=2, order=order).double()
    z, h = torch.randn(d, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    jac = torch.func.jacrev(made)(z, h)  # (2, D, D): d out[k, i] / d z[j]
    if reverse:  # in the order D .. 1: flip both axes to see it as 1 .. D
        jac = jac.flip(-1).flip(-2)
    for k in range(2):
        assert (jac[k].triu() == 0).all()  # never on itself or a later input
        below = jac[k][torch.tril_indices(d, d, -1).unbind()]
        assert (below != 0).all()  # every earlier input reaches it
    # the context reaches every output, the first dimension's too
    assert (torch.func.jacrev(made, argnums=1)(z, h).abs().sum(-1) > 0).all()


def _iaf(d=4, steps=3, batch=3, seed=0):
    torch.manual_seed(seed)
    posterior = IAFPosterior(d, steps, [16]).double()
    loc, log_var, h = torch.randn(3, batch, d, dtype=torch.float64)
    return posterior, posterior(loc, log_var, h)


def test_the_iaf_log_density_is_the_base_minus_jacrevs_log_det():
    posterior, q = _iaf()
    torch.manual_seed(1)
    z = q.rsample((2,))  # (2, B, D)
    torch.manual_seed(1)
    z0 = q.base.rsample((2,))  # the same eps
    expected = q.base.log_prob(z0)  # (2, B), log N(z0 ; mu, diag sigma^2)
    for s in range(2):
        for b in range(3):

            def flow(v, b=b):
                return iaf_flow(v, q.context[b], posterior.steps)[0]

            _, log_det = torch.linalg.slogdet(torch.func.jacrev(flow)(z0[s, b]))
            expected[s, b] -= log_det
    torch.testing.assert_close(z, iaf_flow(z0, q.context, posterior.steps)[0])
    torch.testing.assert_close(q.log_prob(z), expected)
    # the per-dimension terms sum to it; the log-det is the flow's own sum of log sigmoids
    torch.testing.assert_close(q.log_prob_per_dim(z).sum(-1), expected)


def test_iaf_gives_log_q_with_its_draws_and_refuses_other_points():
    _, q = _iaf()
    torch.manual_seed(2)
    z, log_q = q.sample_and_log_prob((6,))
    torch.manual_seed(2)
    same = q.rsample((6,))
    torch.testing.assert_close(z, same)
    torch.testing.assert_close(log_q, q.log_prob(same))  # rsample's own tensor is known
    with pytest.raises(VaelabError, match="posterior iaf"):
        q.log_prob(z + 1e-3)
    with pytest.raises(VaelabError, match="sample_and_log_prob"):
        q.log_prob(z.clone())  # a copy: an estimator takes log q with its draws instead


def test_the_full_gaussians_log_prob_and_kl_are_the_closed_forms():
    torch.manual_seed(0)
    d, b = 4, 3
    loc, log_var = torch.randn(2, b, d, dtype=torch.float64)
    lower = torch.randn(b, d * (d - 1) // 2, dtype=torch.float64)
    q = full_normal(loc, log_var, lower)
    tril = torch.diag_embed(torch.exp(0.5 * log_var))
    rows, cols = torch.tril_indices(d, d, -1)
    for i in range(b):
        tril[i, rows, cols] = lower[i]
    cov = tril @ tril.mT
    z = q.sample((5,))  # (5, B, D)
    diff = z - loc
    maha = (diff.unsqueeze(-2) @ torch.linalg.inv(cov) @ diff.unsqueeze(-1))[..., 0, 0]
    log_det = torch.logdet(2 * math.pi * cov)
    torch.testing.assert_close(q.log_prob(z), -0.5 * (maha + log_det))
    torch.testing.assert_close(q.covariance_matrix, cov)
    # KL against a diagonal p, by torch's two multivariate normals
    p_loc, p_scale = torch.randn(d, dtype=torch.float64), torch.rand(d, dtype=torch.float64) + 0.5
    p = DiagonalNormal(p_loc, p_scale)
    as_full = MultivariateNormal(p_loc, scale_tril=torch.diag(p_scale))
    torch.testing.assert_close(kl_term(q, p, z), kl_divergence(q, as_full))
    # per dimension: the marginals N(mu_j, Sigma_jj) against p_j
    marginal = Normal(loc, cov.diagonal(dim1=-2, dim2=-1).sqrt())
    torch.testing.assert_close(kl_per_dim(q, p), kl_divergence(marginal, p.base_dist))
    # a noise source draws loc + L eps with its eps
    eps = torch.randn(7, b, d, dtype=torch.float64)
    with_noise = FullNormal(q.loc, q.scale_tril, noise=lambda shape, dtype, device: eps)
    torch.testing.assert_close(with_noise.rsample((7,)), loc + (tril @ eps.unsqueeze(-1))[..., 0])


def _tiny(family: str):
    torch.manual_seed(0)
    config = Config(latent_dim=3, hidden=[16], likelihood="bernoulli", posterior=family)
    return build_model(config, (1, 8, 8))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_estimator_runs_on_every_family(family):
    model = _tiny(family)
    assert model.posterior.family == family
    x = torch.bernoulli(torch.full((6, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    for terms in (elbo(model, x, k=3), iwae(model, x, k=4)):
        terms.loss.backward()
        assert torch.isfinite(terms.elbo).all()
    grads = [p.grad for p in model.encoder.parameters()] + [
        p.grad for p in model.posterior.parameters()
    ]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if family == "iaf":  # no closed-form KL: the one-sample ELBO is the one-sample IWAE bound
        torch.manual_seed(3)
        one = elbo(model, x).elbo
        torch.manual_seed(3)
        torch.testing.assert_close(iwae(model, x, k=1).elbo, one)
    log_px, ess = importance_sampled_log_px(model, x, k=300, batch_size=4, chunk=7)
    with torch.no_grad():
        bound = torch.stack([model.elbo(x, k=50) for _ in range(4)]).mean(0)
    assert (log_px > bound.double() - 0.5).all() and (ess >= 1).all()
    assert torch.isfinite(ais_log_px(model, x[:2], steps=10, chains=3)).all()
    means, stds, kls = posterior_stats(model, x)
    assert means.shape == stds.shape == kls.shape == (6, 3) and (stds > 0).all()
    if family == "iaf":
        with pytest.raises(VaelabError, match="posterior iaf"):
            ais_log_px(model, x[:2], steps=2, chains=2, start="encoder")
    else:
        assert torch.isfinite(ais_log_px(model, x[:2], steps=5, chains=2, start="encoder")).all()


@pytest.mark.parametrize(("family", "latent"), [("full", "2"), ("iaf", "3")])
def test_a_run_with_each_family_trains_plots_saves_and_scores(tmp_path, family, latent):
    run = tmp_path / family
    args = ["train", "--data", "digits", "--posterior", family, "--epochs", "1"]
    args += ["--hidden", "32", "--latent-dim", latent, "--out", str(run), "--quiet"]
    if family == "iaf":
        args += ["--flow-steps", "2", "--flow-hidden", "24"]
    assert main(args) == 0
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(record["valid_elbo"]) and len(record["valid_kl_per_dim"]) == int(latent)
    assert (run / "plots" / "reconstructions.png").is_file()
    model = load(run)
    assert model.posterior.family == family
    assert main(["eval", str(run), "--k", "20", "--json"]) == 0
    assert (run / "report.html").is_file()


def test_flow_options_and_incompatible_options_are_refused_in_one_line():
    with pytest.raises(VaelabError, match="--flow-steps and --flow-hidden are for --posterior"):
        Config(flow_steps=3)
    with pytest.raises(VaelabError, match="--prior vamp needs --posterior diagonal"):
        Config(posterior="full", prior="vamp")
    with pytest.raises(VaelabError, match="--free-bits needs --posterior diagonal"):
        Config(posterior="iaf", free_bits=0.5)
    with pytest.raises(VaelabError, match="flow_steps must be >= 1"):
        Config(posterior="iaf", flow_steps=0)
    assert main(["train", "--posterior", "iaf", "--inference", "local", "--epochs", "1"]) == 2
