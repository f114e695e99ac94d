"""The training loop end to end on other architectures, likelihoods and data files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from vaelab import Config, VaelabError, load, train
from vaelab.build import build_model
from vaelab.checkpoint import read_metrics
from vaelab.cli import main


def _run(tmp_path, name, **kw):
    config = Config(out=str(tmp_path / name), epochs=2, **kw)
    return train(config, progress=False, log=lambda _: None)


@pytest.mark.parametrize(("arch", "hidden"), [("conv", [64]), ("broadcast", [16, 16])])
def test_conv_vae_trains_on_28x28_images_from_an_npz_file(tmp_path, arch, hidden):
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
        arch,
        data=str(tmp_path / "halves.npz"),
        arch=arch,
        hidden=hidden,
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
    assert 'binarize = "none"' in config  # resolved for a Gaussian likelihood
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
    config = Config(
        likelihood="bernoulli", out=str(tmp_path / "r"), epochs=1, binarize="none", hidden=[16]
    )
    run = train(config, progress=False, log=lines.append)
    warning = next(line for line in lines if "not a log-likelihood" in line)
    for alternative in ("--binarize dynamic", "continuous-bernoulli", "logistic"):
        assert alternative in warning
    assert json.loads((run / "summary.json").read_text())["comparable"] is False


def test_iwae_objective_trains_and_its_loss_is_the_tighter_bound(tmp_path):
    run = _run(tmp_path, "iwae", objective="iwae", k=8, latent_dim=2, hidden=[64])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        # loss = -L_8 and L_8 >= ELBO on average: the loss lies below -ELBO
        assert m["train_loss"] < -m["train_elbo"]
        assert m["train_elbo"] == pytest.approx(m["train_reconstruction"] - m["train_kl"])
    assert metrics[-1]["valid_elbo"] > metrics[0]["valid_elbo"]
    assert 'objective = "iwae"' in (run / "config.toml").read_text()


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_minutes_budget_stops_training_before_the_epoch_limit(tmp_path):
    budget = 0.15  # nine seconds: several epochs even when a busy machine slows each down
    run = train(
        Config(
            likelihood="bernoulli",
            out=str(tmp_path / "budget"),
            epochs=100_000,
            minutes=budget,
            lr_schedule="cosine",
            hidden=[32],
        ),
        progress=False,
        log=lambda _: None,
    )
    metrics = _metrics(run)
    summary = json.loads((run / "summary.json").read_text())
    assert 1 < len(metrics) < 100_000
    assert summary["epochs"] == len(metrics)
    assert summary["budget_minutes"] == budget
    # no epoch is started that would end past the budget (one epoch's slack for timing noise)
    assert summary["train_seconds"] <= 60 * budget + max(m["seconds"] for m in metrics)
    # the cosine schedule runs over the budget: the rate falls towards 0 as time runs out
    lrs = [m["lr"] for m in metrics]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.5 * 1e-3


def test_cosine_schedule_over_epochs_and_kl_warmup_are_logged_per_epoch(tmp_path):
    from vaelab.training.schedules import kl_weight, lr_factor

    config = Config(
        likelihood="bernoulli", epochs=4, lr_schedule="cosine", kl_warmup=2, beta=2.0, hidden=[32]
    )
    assert lr_factor(config, 0, 100, 0.0) == 1.0
    assert lr_factor(config, 50, 100, 0.0) == pytest.approx(0.5)
    assert lr_factor(config, 100, 100, 0.0) == pytest.approx(0.0)
    assert [kl_weight(config, e) for e in (0.0, 1.0, 2.0, 3.5)] == [0.0, 1.0, 2.0, 2.0]
    run = train(
        Config(
            likelihood="bernoulli",
            out=str(tmp_path / "sched"),
            epochs=4,
            lr_schedule="cosine",
            kl_warmup=2,
            beta=2.0,
            hidden=[32],
        ),
        progress=False,
        log=lambda _: None,
    )
    metrics = _metrics(run)
    # the last step of each epoch: a quarter, half, ... of the run done
    assert [m["beta"] for m in metrics][2:] == [2.0, 2.0]
    assert 0 < metrics[0]["beta"] < metrics[1]["beta"] < 2.0
    lrs = [m["lr"] for m in metrics]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.01 * 1e-3


def test_kept_weights_are_those_of_the_best_validation_epoch(tmp_path):
    from vaelab import data as data_mod
    from vaelab.evaluate import evaluate_elbo

    # a rate high enough that the validation ELBO goes up and down
    run = train(
        Config(
            likelihood="bernoulli",
            out=str(tmp_path / "best"),
            epochs=6,
            lr=0.1,
            hidden=[32],
            latent_dim=4,
            seed=1,
        ),
        progress=False,
        log=lambda _: None,
    )
    metrics = _metrics(run)
    summary = json.loads((run / "summary.json").read_text())
    best = max(metrics, key=lambda m: m["valid_elbo"])
    assert summary["kept_epoch"] == best["epoch"] < len(metrics)  # not simply the last
    assert summary["valid"]["elbo"] == best["valid_elbo"]
    model = load(run)
    x_valid = data_mod.eval_split(data_mod.load("digits"), "valid", "dynamic")
    again = evaluate_elbo(model, x_valid, seed=1)["elbo"]
    assert again == pytest.approx(best["valid_elbo"], abs=1e-4)


def test_decoder_bias_from_data_starts_p_x_at_the_pixel_means():
    from vaelab import data as data_mod

    x = data_mod.load("digits").train
    model = build_model(
        Config(likelihood="bernoulli", decoder_bias="data", hidden=[16]), x.shape[1:]
    )
    model.init_output_bias(x)
    with torch.no_grad():
        for p in model.decoder.output.parameters():
            if p.ndim == 2:
                p.zero_()  # only the bias speaks: the decoder's output for any z
        mean = model.decode(torch.zeros(1, model.latent_dim))[0]
    assert torch.allclose(mean, x.mean(0).clamp(1e-3, 1 - 1e-3), atol=1e-5)
    conv = build_model(Config(likelihood="bernoulli", arch="conv", hidden=[16]), (1, 28, 28))
    with pytest.raises(VaelabError, match="--arch mlp or linear"):
        conv.init_output_bias(torch.rand(4, 1, 28, 28))


def test_an_existing_out_is_refused_before_the_data_are_read(tmp_path, capsys):
    """Issue 26, item 10: the folder is checked first, so a wrong --out costs no loading."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    argv = ["train", "--data", str(tmp_path / "not-there.npy"), "--out", str(tmp_path / "taken")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "exists; choose another --out or pass --overwrite" in err and "not-there" not in err
    assert main([*argv, "--overwrite"]) == 2
    assert "is not a vaelab run" in capsys.readouterr().err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_a_collapsed_posterior_is_named_at_the_end_with_what_to_try(tmp_path, capsys):
    """With σ = 10 the decoder explains the digits without z: q(z|x) falls to the prior."""
    argv = ["train", "--data", "digits", "--likelihood", "gaussian", "--sigma", "10"]
    argv += ["--lr", "0.01", "--batch-size", "32", "--epochs", "1", "--hidden", "8"]
    argv += ["--latent-dim", "2", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("vaelab: warning: posterior collapse: every latent dimension's KL")
    assert "--kl-warmup" in last and "--free-bits" in last and "smaller --sigma" in last
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test"]["kl"] < 2 * 0.01


def test_ctrl_c_during_training_says_how_to_resume(tmp_path):
    """A real SIGINT to a real `vaelab train` once its first checkpoint is on disk; the run
    then resumes to its end, and a healthy run names no collapse."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "vaelab", "train", "--data", "digits", "--epochs", "6"]
    argv += ["--hidden", "8", "--latent-dim", "2", "--quiet", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run.partial" / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert f"vaelab: interrupted; continue with vaelab train --resume {out}" in stdout
    resumed = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_metrics(out)) == 6 and "posterior collapse" not in resumed.stdout
