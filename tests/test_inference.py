"""Per-datapoint inference: fit_local against the exact posterior of a linear-Gaussian model."""

from __future__ import annotations

import pytest
import torch

from vaelab.baselines import linear_gaussian_posterior
from vaelab.errors import VaelabError
from vaelab.inference import LocalPosteriors, fit_local

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
