"""The training loop end to end on other architectures, likelihoods and data files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vaelab import Config, load, train


def _run(tmp_path, name, **kw):
    config = Config(out=str(tmp_path / name), epochs=2, **kw)
    return train(config, progress=False, log=lambda _: None)


def test_conv_vae_trains_on_28x28_images_from_an_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    # two classes of 28x28 images: bright left half or bright right half, with noise
    x = (rng.uniform(size=(300, 28, 28)) < 0.1).astype(np.uint8) * 255
    y = rng.integers(0, 2, 300)
    for i in range(300):
        half = slice(0, 14) if y[i] else slice(14, 28)
        x[i, :, half] = 255
    np.savez(tmp_path / "halves.npz", x=x, y=y)
    run = _run(
        tmp_path,
        "conv",
        data=str(tmp_path / "halves.npz"),
        arch="conv",
        hidden=[64],
        latent_dim=2,
        batch_size=32,
    )
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["valid_elbo"] > metrics[0]["valid_elbo"]
    model = load(run)
    assert model.sample(2).shape == (2, 1, 28, 28)
    assert (run / "plots" / "latent_space.png").is_file()


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_gaussian_likelihood_trains_on_grey_levels(tmp_path, learn_sigma):
    run = _run(
        tmp_path,
        f"g{learn_sigma}",
        likelihood="gaussian",
        learn_sigma=learn_sigma,
        latent_dim=4,
        hidden=[64],
    )
    config = (run / "config.toml").read_text()
    assert 'binarize = "auto"' in config
    summary = json.loads((run / "summary.json").read_text())
    assert np.isfinite(summary["test"]["elbo"])
    model = load(run)
    sigma = model.likelihood.log_scale.exp()
    if learn_sigma:
        assert not torch.allclose(sigma, torch.full_like(sigma, 0.1))
    else:
        assert torch.allclose(sigma, torch.full_like(sigma, 0.1))


def test_bernoulli_on_grey_levels_without_binarization_warns(tmp_path):
    lines = []
    config = Config(out=str(tmp_path / "r"), epochs=1, binarize="none", hidden=[16])
    train(config, progress=False, log=lines.append)
    assert any("not a log-likelihood" in line for line in lines)


def test_iwae_objective_trains_and_its_loss_is_the_tighter_bound(tmp_path):
    run = _run(tmp_path, "iwae", objective="iwae", k=8, latent_dim=2, hidden=[64])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        # loss = -L_8 and L_8 >= ELBO on average: the loss lies below -ELBO
        assert m["train_loss"] < -m["train_elbo"]
        assert m["train_elbo"] == pytest.approx(m["train_reconstruction"] - m["train_kl"])
    assert metrics[-1]["valid_elbo"] > metrics[0]["valid_elbo"]
    assert 'objective = "iwae"' in (run / "config.toml").read_text()
