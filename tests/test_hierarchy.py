"""The two-stochastic-layer VAE: shapes, densities, its bounds' order, a run end to end."""

from __future__ import annotations

import torch

from vaelab import objectives as obj
from vaelab.build import build_model
from vaelab.config import Config
from vaelab.core import kl as kl_mod
from vaelab.core.hierarchy import HierarchicalVAE
from vaelab.evaluate import evaluate_elbo, importance_sampled_log_px


def _model(seed=0):
    torch.manual_seed(seed)
    config = Config(
        arch="hvae2", likelihood="bernoulli", latent_dim=6, latent_dim_2=3, hidden=[32],
        hidden_2=[16],
    )  # fmt: skip
    return build_model(config, (1, 8, 8))


def test_z_is_z1_then_z2_and_the_densities_factorise():
    model = _model()
    assert isinstance(model, HierarchicalVAE) and model.latent_dim == 9
    x = torch.bernoulli(torch.rand(5, 1, 8, 8))
    qz, pz = model.q_z(x), model.p_z()
    z = qz.rsample((4,))
    assert z.shape == (4, 5, 9) and qz.log_prob(z).shape == (4, 5)
    z1, z2 = z[..., :6], z[..., 6:]
    loc, log_var = model.encoder(x)
    q1 = torch.distributions.Normal(loc, torch.exp(0.5 * log_var)).log_prob(z1).sum(-1)
    assert torch.allclose(qz.log_prob(z), q1 + model.q_z2(z1).log_prob(z2).sum(-1), atol=1e-5)
    p2 = torch.distributions.Normal(0.0, 1.0).log_prob(z2).sum(-1)
    assert torch.allclose(pz.log_prob(z), p2 + model.prior.p_z1(z2).log_prob(z1).sum(-1))
    assert model.sample(7).shape == (7, 1, 8, 8)
    assert torch.allclose(qz.log_prob_per_dim(z).sum(-1), qz.log_prob(z))


def test_the_elbo_lies_below_the_importance_sampled_log_likelihood():
    model = _model(1)
    x = torch.bernoulli(torch.rand(4, 1, 8, 8))
    elbo = evaluate_elbo(model, x, k=2000)["elbo"]
    log_px, _ = importance_sampled_log_px(model, x, k=1000)
    assert elbo < log_px.mean().item()
    # the KL per unit sums, on average, to the KL
    torch.manual_seed(0)
    kl = obj.elbo(model, x, k=4000).kl
    per_dim = kl_mod.kl_per_dim(model.q_z(x), model.p_z(), samples=4000)
    assert torch.allclose(per_dim.sum(-1), kl, rtol=0.05, atol=0.2)


def test_an_hvae2_run_trains_loads_and_evaluates(tmp_path, capsys):
    from vaelab.cli import main

    run = tmp_path / "h"
    args = ["train", "--data", "digits", "--arch", "hvae2", "--latent-dim", "8"]
    args += ["--hidden", "32", "--epochs", "1", "--out", str(run), "--quiet"]
    assert main(args) == 0
    assert main(["eval", str(run), "--k", "20", "--json"]) == 0
    assert main(["sample", str(run), "--n", "4"]) == 0
    assert main(["eval", str(run), "--k", "20", "--ais", "5"]) == 0  # AIS from the prior
    assert main(["plot", str(run)]) == 0
    # q* is one diagonal Gaussian; the gap of a two-layer q is refused in one line
    capsys.readouterr()
    assert main(["gap", str(run), "--n", "2"]) == 2
    assert "hvae2" in capsys.readouterr().err
