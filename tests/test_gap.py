"""The gap decomposition (Cremer, Li & Duvenaud 2018) and the 2-D posterior on a grid."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from vaelab import Config, load, train
from vaelab import data as data_mod
from vaelab.cli import main
from vaelab.core.baselines import linear_gaussian_log_px, linear_gaussian_posterior
from vaelab.evaluate.gap import (
    decompose,
    grid_bounds,
    grid_posterior,
    measure_gap,
)
from vaelab.objectives import elbo

from .conftest import GAP_PLOTS
from .linear_gaussian import decoder_params, linear_gaussian_model, one_thread  # noqa: F401

# the figures every gap result carries, each with a ``_se`` twin
KEYS = ("log_px", "elbo_amortized", "elbo_local", "approximation_gap", "amortization_gap")


def grid_mean(z: torch.Tensor, log_density: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """E_{p(z|x)}[z] ``(B, 2)`` by quadrature over the grid of ``grid_posterior``."""
    weights = log_density.exp() * area[:, None, None]
    return (weights[..., None] * z.double()).sum((1, 2))


def _under_train_encoder(model, x, steps=15):
    """A few Adam steps on the ELBO for the encoder alone: deliberately far from converged."""
    optimizer = torch.optim.Adam(model.encoder.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        elbo(model, x).loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)


def _check_identity(result):
    total = result["log_px"] - result["elbo_amortized"]
    assert result["approximation_gap"] + result["amortization_gap"] == pytest.approx(
        total, abs=1e-9
    )


def test_linear_gaussian_gaps_no_approximation_gap_and_a_positive_amortization_gap():
    model, x = linear_gaussian_model(n=30)
    torch.manual_seed(0)
    _under_train_encoder(model, x)
    result = measure_gap(
        model, x, steps=300, lr=0.05, samples=50, k=1000, elbo_samples=500, ais_steps=50,
        ais_chains=4,
    )  # fmt: skip
    for key in KEYS:
        assert math.isfinite(result[key]) and result[f"{key}_se"] > 0
    exact = linear_gaussian_log_px(x.flatten(1), *decoder_params(model)).mean().item()
    assert result["log_px"] == pytest.approx(exact, abs=0.05)
    # q* is the exact posterior here (it is diagonal): no approximation gap
    assert abs(result["approximation_gap"]) < 3 * result["approximation_gap_se"] + 0.02
    assert result["amortization_gap"] > 5 * result["amortization_gap_se"]
    _check_identity(result)
    assert result["params_local"] == 2 * 2 * 30
    assert result["params_amortized"] == sum(p.numel() for p in model.encoder.parameters())
    assert result["seconds_local"] > result["seconds_amortized"] > 0


def test_gaps_of_a_trained_digits_model_are_nonnegative_up_to_noise(digits_run):
    model = load(digits_run)
    x = data_mod.eval_split(data_mod.load("digits"), "test", "dynamic")[:40]
    result = measure_gap(model, x, steps=100, samples=20, k=500, elbo_samples=200, ais_steps=20)
    assert result["approximation_gap"] > -3 * result["approximation_gap_se"]
    assert result["amortization_gap"] > -3 * result["amortization_gap_se"]
    _check_identity(result)
    assert result["log_px_estimator"] in ("is_amortized", "is_local", "ais")
    assert result["log_px"] == max(
        result[f"log_px_{n}"] for n in ("is_amortized", "is_local", "ais")
    )


def test_decompose_sums_exactly_and_pairs_the_standard_errors():
    gen = torch.Generator().manual_seed(0)
    lp = torch.randn(100, generator=gen, dtype=torch.float64) - 90
    el = lp - 2 - 0.1 * torch.rand(100, generator=gen, dtype=torch.float64)
    ea = el - 3 - 0.1 * torch.rand(100, generator=gen, dtype=torch.float64)
    out = decompose(lp, el, ea)
    _check_identity(out)
    assert out["approximation_gap"] == pytest.approx(2.05, abs=0.02)
    # paired: the spread of the data (1 nat) cancels out of the gaps' standard errors
    assert out["approximation_gap_se"] < 0.01 < 0.05 < out["log_px_se"]


def test_grid_posterior_of_a_linear_gaussian_model_is_the_exact_posterior():
    model, x = linear_gaussian_model(n=3)
    loc, cov = linear_gaussian_posterior(x.flatten(1), *decoder_params(model))
    std = cov.diagonal().sqrt().expand_as(loc)
    lo, hi = grid_bounds([loc], [std], width=6)
    z, log_density, log_px, area = grid_posterior(model, x, lo, hi, n=150)
    assert z.shape == (3, 150, 150, 2) and log_density.shape == (3, 150, 150)
    mass = (log_density.exp() * area[:, None, None]).sum((1, 2))
    assert torch.allclose(mass, torch.ones(3, dtype=torch.float64))
    exact = linear_gaussian_log_px(x.flatten(1), *decoder_params(model))
    assert torch.allclose(log_px, exact, atol=1e-4)
    assert torch.allclose(grid_mean(z, log_density, area), loc, atol=1e-4)


def test_grid_posterior_mean_matches_the_importance_sampling_mean(digits_run):
    model = load(digits_run)
    x = data_mod.eval_split(data_mod.load("digits"), "test", "dynamic")[:3]
    with torch.no_grad():
        qz = model.q_z(x)
        lo, hi = grid_bounds([qz.mean], [qz.stddev], width=6)
        z, log_density, log_px, area = grid_posterior(model, x, lo, hi, n=200)
        # self-normalised importance sampling with the encoder's q as proposal
        torch.manual_seed(0)
        zs = qz.sample((20000,))  # (K, B, 2)
        log_w = (model.log_joint(x, zs) - qz.log_prob(zs)).double()
        weights = torch.softmax(log_w, 0)
        is_mean = (weights[..., None] * zs.double()).sum(0)
        # the delta-method standard error of a self-normalised estimate
        is_se = ((weights**2)[..., None] * (zs.double() - is_mean) ** 2).sum(0).sqrt()
        is_log_px = torch.logsumexp(log_w, 0) - math.log(len(zs))
    mass = (log_density.exp() * area[:, None, None]).sum((1, 2))
    assert torch.allclose(mass, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(log_px, is_log_px, atol=0.05)  # the grid holds all the mass
    assert ((grid_mean(z, log_density, area) - is_mean).abs() < 4 * is_se).all()


def _cli(*args):
    env = {**os.environ, "PYTHONWARNINGS": "error", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *args], capture_output=True, text=True, env=env
    )


def test_vaelab_gap_json_has_every_key_and_the_table_prints(digits_run, capsys):
    small = ("--n", "20", "--steps", "30", "--k", "100", "--samples", "10", "--ais-steps", "5")
    result = _cli("gap", str(digits_run), *small, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for key in KEYS:
        assert math.isfinite(out[key]) and math.isfinite(out[f"{key}_se"])
    for key in ("seconds_amortized", "seconds_local", "params_amortized", "params_local"):
        assert out[key] > 0
    assert out["params_local"] == 2 * 2 * 20 and out["n"] == 20 and out["local_steps"] == 30
    assert main(["gap", str(digits_run), *small]) == 0  # the table, in this process
    table = capsys.readouterr().out
    for row in ("log p^(x)", "approximation gap", "amortization gap", "per-datapoint (Adam)"):
        assert row in table


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--n", "100000"), "more than the"), (("--k", "0"), "argument --k: K is from 1")],
)
def test_vaelab_gap_bad_input_is_one_line_and_exit_2(digits_run, capsys, args, message):
    try:
        code = main(["gap", str(digits_run), *args])
    except SystemExit as exc:  # refused by the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_vaelab_plot_gap_draws_the_true_posterior_and_the_trace(digits_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)  # the shared run stays as it was
    for png in (run / "plots").iterdir():
        png.unlink()
    assert main(["plot", str(run), "--gap"]) == 0
    assert {p.name for p in (run / "plots").iterdir()} == GAP_PLOTS
    for name in GAP_PLOTS:
        with Image.open(run / "plots" / name) as image:
            assert image.size[0] > 300


def test_vaelab_plot_gap_on_a_3d_run_is_one_line_and_exit_2(tmp_path, capsys):
    config = Config(data="digits", latent_dim=3, epochs=1, hidden=[16], out=str(tmp_path / "r"))
    run = train(config, progress=False, log=lambda _: None)
    assert main(["plot", str(run), "--gap"]) == 2
    err = capsys.readouterr().err
    assert "2-D latent space" in err and len(err.strip().splitlines()) == 1
