"""Annealed importance sampling against the exact log p(x) of a linear-Gaussian model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vaelab.ais import ais_log_px, sigmoid_schedule
from vaelab.baselines import linear_gaussian_log_px
from vaelab.cli import main
from vaelab.errors import VaelabError

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
