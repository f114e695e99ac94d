"""A linear VAE against the closed forms: the result of Lucas et al. 2019 ("Don't blame the
ELBO!"): trained on data from a probabilistic PCA model, it reaches the maximum-likelihood
pPCA fit, and ``vaelab eval --exact`` reports its exact log p(x)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaelab import Config, load, train
from vaelab import data as data_mod
from vaelab.cli import main
from vaelab.core.baselines import fit_ppca, linear_gaussian_log_px

P = 20


@pytest.fixture(scope="module")
def ppca_file(tmp_path_factory):
    """5,000 draws of x = W z + b + noise (P = 20, D = 2), scaled by one factor into [0, 1]
    (a uniform rescaling keeps the noise isotropic: still a pPCA model), as an .npy file of
    shape (N, 1, 1, P).

    Both principal variances are well above the noise (about 100x and 40x), so neither latent
    dimension sits long at the collapsed saddle point that Lucas et al. describe, where
    stochastic gradients linger when a component's variance is near sigma^2."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(P, 2))
    x = rng.normal(size=(5000, 2)) @ w.T + rng.normal(size=(5000, P)) * 0.3
    x = (x - x.min()) / (x.max() - x.min())
    path = tmp_path_factory.mktemp("ppca") / "ppca.npy"
    np.save(path, x.astype(np.float32).reshape(5000, 1, 1, P))
    return path


@pytest.fixture(scope="module")
def linear_run(ppca_file, tmp_path_factory):
    config = Config(
        data=str(ppca_file),
        arch="linear",
        likelihood="gaussian",
        learn_sigma=True,
        shared_sigma=True,
        sigma=0.05,
        decoder_bias="data",
        latent_dim=2,
        epochs=250,
        batch_size=100,
        lr=3e-2,
        lr_schedule="cosine",
        out=str(tmp_path_factory.mktemp("runs") / "linear"),
    )
    return train(config, progress=False, log=lambda _: None)


def _split(ppca_file, name):
    return data_mod.load(str(ppca_file)).split(name)[0].flatten(1)


def test_linear_vae_reaches_the_maximum_likelihood_ppca_fit(ppca_file, linear_run, capsys):
    ppca = fit_ppca(_split(ppca_file, "train"), n_latent=2)
    ppca_test = ppca.score(_split(ppca_file, "test"))  # mean log p(x), nats
    assert main(["eval", str(linear_run), "--exact", "--k", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    vae_test = -result["exact_nll_nats"]
    assert abs(vae_test - ppca_test) <= 0.005 * abs(ppca_test), (vae_test, ppca_test)
    # the importance-sampled estimate agrees with the exact value it estimates
    assert result["nll_nats"] == pytest.approx(result["exact_nll_nats"], abs=0.02)
    # and the ELBO is below log p(x): positive gap = KL(q || p(z|x)), here small
    assert -result["elbo"] >= result["exact_nll_nats"] - 0.02


def test_exact_log_px_is_the_closed_form_of_the_trained_decoder(ppca_file, linear_run):
    from vaelab.evaluate import exact_log_px

    model = load(linear_run)
    x = _split(ppca_file, "test")
    out = model.decoder.output
    sigma = model.likelihood.log_scale.exp().item()
    expected = linear_gaussian_log_px(x, out.weight, out.bias, sigma)
    got = exact_log_px(model, x.view(-1, 1, 1, P))
    assert got["log_px"] == pytest.approx(expected.mean().item(), rel=1e-6)
    assert model.likelihood.log_scale.shape == ()  # one shared sigma: pPCA's noise model
    assert torch.isfinite(expected).all()


def test_eval_exact_on_a_nonlinear_run_is_one_clear_line(digits_run, capsys):
    assert main(["eval", str(digits_run), "--exact", "--k", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--arch linear --likelihood gaussian" in err
