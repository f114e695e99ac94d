"""Priors: the VampPrior's density against brute force, every prior's sample moments, and
runs with a learned prior trained, sampled and scored end to end."""

from __future__ import annotations

import json
import math

import torch

from peak import peak_kib
from vaelab.build import build_model
from vaelab.config import Config
from vaelab.core.gaussian import bounded_log_var
from vaelab.core.priors import MixtureOfGaussians, StandardNormal, VampPrior


def _vamp(k=7, d=3, shape=(1, 4, 4)):
    from vaelab.core.networks import MLPEncoder

    torch.manual_seed(0)
    encoder = MLPEncoder(shape, [16], d)
    return encoder, VampPrior(encoder, k, shape, d)


def test_vamp_log_prob_is_the_log_mean_exp_over_its_components():
    encoder, prior = _vamp()
    z = torch.randn(5, 2, 3)  # (K samples, B, D)
    loc, log_var = encoder(prior.pseudo_inputs)
    scale = torch.exp(0.5 * bounded_log_var(log_var)).double()
    zc = z.double()[..., None, :]  # against every component
    log_n = (
        -0.5 * ((zc - loc.double()) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)
    ).sum(-1)  # (5, 2, K)
    brute = torch.logsumexp(log_n, -1) - math.log(len(loc))
    assert torch.allclose(prior().log_prob(z).double(), brute, atol=1e-5)


def test_vamp_holds_the_encoder_by_reference_so_its_weights_are_saved_once():
    encoder, prior = _vamp()
    assert list(dict(prior.named_parameters())) == ["pseudo_inputs"]
    model = build_model(
        Config(prior="vamp", prior_components=5, hidden=[8], likelihood="bernoulli"), (1, 4, 4)
    )
    assert model.prior.encoder is model.encoder
    assert sum(k.startswith("prior.") for k in model.state_dict()) == 1


def _mixture_moments(pz):
    """Mean and covariance of a mixture of diagonal Gaussians, in closed form."""
    normal = pz.component_distribution.base_dist
    pi = torch.softmax(pz.mixture_distribution.logits, -1).double()
    mu, var = normal.loc.double(), normal.scale.double() ** 2
    mean = pi @ mu
    centred = mu - mean
    cov = torch.diag(pi @ var) + (pi[:, None] * centred).T @ centred
    return mean, cov


def test_samples_of_each_prior_have_its_mean_and_covariance():
    torch.manual_seed(1)
    n = 200_000
    mog = MixtureOfGaussians(3, 4)
    with torch.no_grad():
        mog.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
        mog.log_var.copy_(torch.randn(4, 3) * 0.5)
    _, vamp = _vamp(k=6, d=3)
    cases = [(StandardNormal(3)(), torch.zeros(3).double(), torch.eye(3).double())]
    with torch.no_grad():
        for prior in (mog, vamp):
            pz = prior()
            cases.append((pz, *_mixture_moments(pz)))
        for pz, mean, cov in cases:
            z = pz.sample((n,)).double()
            sd = cov.diagonal().sqrt()
            # 5 standard errors: sample mean se = sd / sqrt(n); covariance se ~ var sqrt(2/n)
            assert ((z.mean(0) - mean).abs() < 5 * sd / math.sqrt(n)).all()
            emp = torch.cov(z.T)
            tol = 5 * torch.outer(sd, sd) * math.sqrt(2 / n) * 2
            assert ((emp - cov).abs() < tol).all(), (emp, cov)


def test_a_mixture_draws_one_component_per_sample_not_all_k():
    """5,000 draws of a VampPrior-sized mixture (K = 500, D = 40): torch's MixtureSameFamily
    draws (5000, 500, 40) numbers, 400 MB, where (5000, 40) are needed."""
    torch.manual_seed(2)
    pz = MixtureOfGaussians(40, 500)()
    before = peak_kib()
    with torch.no_grad():
        z = pz.sample((5000,))
    assert z.shape == (5000, 40) and torch.isfinite(z).all()
    assert peak_kib() - before < 100 * 1024  # KiB
    assert pz.sample().shape == (40,) and pz.sample((2, 3)).shape == (2, 3, 40)


def test_a_vamp_run_trains_samples_and_evaluates(tmp_path):
    from vaelab.cli import main

    run = tmp_path / "vamp"
    args = ["train", "--data", "digits", "--prior", "vamp", "--prior-components", "20"]
    args += ["--epochs", "1", "--hidden", "32", "--out", str(run), "--quiet"]
    assert main(args) in (None, 0)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert len(record["valid_kl_per_dim"]) == 10
    assert main(["sample", str(run), "--n", "16"]) in (None, 0)
    assert (run / "plots" / "samples_grid.png").is_file()
    assert main(["eval", str(run), "--k", "20", "--json"]) in (None, 0)


def test_a_mixture_prior_run_plots_and_estimates_log_px_with_ais(tmp_path):
    from vaelab.checkpoint import load
    from vaelab.cli import main
    from vaelab.evaluate import importance_sampled_log_px
    from vaelab.evaluate.ais import ais_log_px

    run = tmp_path / "mog"
    args = ["train", "--data", "digits", "--prior", "mog", "--prior-components", "3"]
    args += ["--epochs", "1", "--hidden", "32", "--latent-dim", "2", "--out", str(run)]
    assert main([*args, "--quiet"]) == 0
    assert main(["plot", str(run)]) == 0
    model = load(run)
    x = torch.bernoulli(torch.rand(3, *model.x_shape))
    log_px, _ = importance_sampled_log_px(model, x, k=200)
    ais = ais_log_px(model, x, steps=20, chains=4, start="encoder")
    assert torch.isfinite(log_px).all() and torch.isfinite(ais).all()
    assert model.__dict__.get("_fixed_pz") is None  # the cache ends with the evaluation


def test_the_fast_mixture_log_prob_equals_torchs_also_with_narrow_components():
    from torch.distributions import MixtureSameFamily

    torch.manual_seed(4)
    mog = MixtureOfGaussians(40, 50)
    with torch.no_grad():
        mog.log_var.copy_(torch.empty(50, 40).uniform_(-8.0, 2.0))  # scales 0.02 .. 2.7
        mog.logits.copy_(torch.randn(50))
    pz = mog()
    z = 3 * torch.randn(6, 9, 40)
    general = MixtureSameFamily(pz.mixture_distribution, pz.component_distribution)
    assert torch.allclose(pz.log_prob(z), general.log_prob(z), rtol=1e-5, atol=1e-3)
    assert pz.expand(torch.Size([9])).log_prob(z).shape == (6, 9)
