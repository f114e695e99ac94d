"""Per-datapoint inference: fit_local against the exact posterior of a linear-Gaussian model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from vaelab import Config, load, train
from vaelab import data as data_mod
from vaelab.build import build_model
from vaelab.checkpoint import load_config
from vaelab.cli import main
from vaelab.core.baselines import linear_gaussian_posterior
from vaelab.core.inference import LocalPosteriors, fit_local
from vaelab.errors import VaelabError
from vaelab.runs import resume

from .linear_gaussian import decoder_params, linear_gaussian_model, one_thread  # noqa: F401


def test_fit_local_from_the_prior_reaches_the_exact_posterior():
    model, x = linear_gaussian_model(n=30)
    loc, cov = linear_gaussian_posterior(x.flatten(1), *decoder_params(model))
    assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-12)  # inside the family
    fit = fit_local(model, x, steps=300, init="prior", lr=0.05, samples=50)
    assert fit.steps == 300 and fit.trace.shape == (300,) and not fit.converged
    # then a smaller step, continuing the same posteriors, to settle Adam's jitter
    fine = fit_local(model, x, steps=100, lr=0.005, samples=50, posteriors=fit.posteriors)
    q = fine.posteriors.q_z()
    # within a third of the posterior's smallest standard deviation (0.16): MC gradient noise
    assert (q.mean - loc).abs().max() < 0.05
    assert torch.allclose(q.variance, cov.diagonal().expand_as(q.variance), rtol=0.1)
    # the ELBO climbed from the prior's to (nearly) log p(x)
    assert fit.trace[-50:].mean() > fit.trace[:10].mean() + 1.0


def test_fit_local_stops_when_the_windowed_elbo_stops_improving():
    model, x = linear_gaussian_model(n=10)
    fit = fit_local(model, x, init="prior", lr=0.05, samples=20, window=20, patience=2)
    assert fit.converged and fit.steps < 50_000
    assert fit.steps % 20 == 0 and len(fit.trace) == fit.steps


def test_encoder_start_is_the_encoders_q_and_the_model_stays_fixed():
    model, x = linear_gaussian_model(n=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = fit_local(model, x, steps=0, init="encoder").posteriors.q_z()
    qz = model.q_z(x)
    assert torch.allclose(start.mean, qz.mean) and torch.allclose(start.stddev, qz.stddev)
    fit = fit_local(model, x, steps=30, init="encoder", lr=0.05, samples=10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert not torch.allclose(fit.posteriors.loc, qz.mean)  # the refinement moved q
    assert fit.posteriors.num_parameters == 2 * 8 * model.latent_dim


def test_local_posteriors_answer_the_same_call_as_the_encoder():
    q = LocalPosteriors(torch.arange(6.0).view(3, 2), torch.zeros(3, 2))
    rows = q.q_z(torch.zeros(2, 5), torch.tensor([2, 0]))
    assert rows.batch_shape == (2,) and rows.event_shape == (2,)
    assert rows.mean.tolist() == [[4.0, 5.0], [0.0, 1.0]]
    assert rows.rsample((7,)).shape == (7, 2, 2)


def test_bad_arguments_name_the_problem():
    model, x = linear_gaussian_model(n=2)
    with pytest.raises(VaelabError, match="init"):
        fit_local(model, x, init="zeros")
    with pytest.raises(VaelabError, match="steps"):
        fit_local(model, x, steps=-1)


# --- training with per-datapoint (local) and semi-amortized inference ----------------------


def _config(tmp_path, name, inference, epochs=3):
    return Config(
        data="digits", latent_dim=2, hidden=[32], batch_size=64, epochs=epochs,
        inference=inference, out=str(tmp_path / name),
    )  # fmt: skip


def test_local_inference_run_resumes_to_the_same_weights_and_local_posteriors(
    tmp_path, monkeypatch
):
    quiet = {"progress": False, "log": lambda _: None}
    reference = train(_config(tmp_path, "ref", "local"), **quiet)
    monkeypatch.setenv("VAELAB_FAULT_NAN", "3:")  # every step of epoch 3 on: the run stops
    with pytest.raises(VaelabError, match="diverged"):
        train(_config(tmp_path, "run", "local"), **quiet)
    monkeypatch.delenv("VAELAB_FAULT_NAN")
    run = resume(tmp_path / "run", **quiet)
    ref, got = load_file(reference / "model.safetensors"), load_file(run / "model.safetensors")
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    model = load(run)
    n_train = len(data_mod.load("digits").train)
    assert model.local.loc.shape == (n_train, 2)
    assert model.local.steps.min() == 3  # each example's q_i took one step per epoch
    assert model.local.loc.abs().mean() > 0.05  # and moved away from the prior
    # the encoder was never trained: vaelab gap refuses the run
    assert main(["gap", str(run), "--n", "5"]) == 2
    assert main(["eval", str(run)]) == 2


def test_semi_amortized_run_trains_the_encoder_towards_refined_posteriors(tmp_path):
    run = train(_config(tmp_path, "semi", "semi-amortized", epochs=2), progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert math.isfinite(summary["test"]["elbo"]) and summary["test"]["elbo"] > -60
    model, fresh = load(run), build_model(load_config(run), (1, 8, 8))
    moved = [
        not torch.equal(a, b)
        for a, b in zip(model.encoder.parameters(), fresh.encoder.parameters(), strict=True)
    ]
    assert all(moved)
