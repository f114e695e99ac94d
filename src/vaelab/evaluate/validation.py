"""What a run is scored with after each epoch, on the validation examples, and at its end,
on the test examples.

:func:`score`: the ELBO, E_q[log p(x | z)] and KL(q(z | x) || p(z)), nats per example, under
the encoder's q (or, without an encoder, q fitted per example, :func:`evaluate_local`);
:func:`kl_per_dim_record`: the KL of each latent dimension, so a collapsing one shows epoch by
epoch; :func:`validation_record` both, as the training loop logs them (:mod:`vaelab.runs`
hands it to :func:`vaelab.training.loop.fit`).
"""

from __future__ import annotations

import torch

from ..core.inference import fit_local
from .elbo import evaluate_elbo
from .posterior import posterior_stats
from .statistics import standard_error

LOCAL_SCORE_N = 500  # examples scored with fitted q per epoch, without an encoder


def score(model, x, config) -> dict:
    """ELBO, reconstruction and KL of ``x``: under the encoder's q, or, for a model trained
    without one (``--inference local``), under per-datapoint q fitted to at most
    ``LOCAL_SCORE_N`` of the examples (see :func:`evaluate_local`)."""
    if config.inference == "local":
        return evaluate_local(model, x[:LOCAL_SCORE_N], seed=config.seed)
    return evaluate_elbo(model, x, seed=config.seed, distributed=True)


# validation examples whose KL per dimension is logged each epoch: fewer under a mixture
# prior, whose per-dimension KL is Monte Carlo over K components and would otherwise cost a
# good part of an epoch
KL_PER_DIM_ROWS = 1000
KL_PER_DIM_ROWS_MIXTURE = 200


def kl_per_dim_record(model, x, config) -> dict:
    """``valid_kl_per_dim``: the mean over (up to 1,000; 200 under a mixture prior) validation
    examples of each latent dimension's KL, so a collapsing dimension (KL -> 0) shows in
    metrics.jsonl epoch by epoch. Nothing for ``--inference local``, which has no encoder to
    ask."""
    if config.inference == "local":
        return {}
    rows = KL_PER_DIM_ROWS if config.prior == "normal" else KL_PER_DIM_ROWS_MIXTURE
    with torch.random.fork_rng():  # a mixture prior's per-dimension KL is Monte Carlo
        torch.manual_seed(config.seed)
        _, _, kls = posterior_stats(model, x[:rows])
    return {"valid_kl_per_dim": kls.double().mean(0).tolist()}


def validation_record(model, x, config) -> dict:
    """What the loop logs of the validation examples ``x`` after each epoch:
    ``valid_elbo``, ``valid_reconstruction``, ``valid_kl`` (:func:`score`) and
    ``valid_kl_per_dim`` (:func:`kl_per_dim_record`)."""
    valid = score(model, x, config)
    record = {f"valid_{key}": valid[key] for key in ("elbo", "reconstruction", "kl")}
    return {**record, **kl_per_dim_record(model, x, config)}


def evaluate_local(model, x: torch.Tensor, seed: int = 0, steps: int = 100) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL of ``x`` (nats) under per-datapoint q fitted from the
    prior with ``steps`` Adam steps (lr 0.05, 1 sample): the score of a model without a
    usable encoder. A short fit, so a lower bound on what q* would give; the same for every
    epoch, so it ranks epochs."""
    # one sample a step: this runs every epoch, and must not eat the training budget
    fit = fit_local(model, x, steps=steps, init="prior", lr=0.05, samples=1, seed=seed)
    with torch.no_grad():
        est = model.elbo_terms(x.to(fit.posteriors.loc.device), 1, fit.posteriors.q_z())
    rec, kl = est.reconstruction.double(), est.kl.double()
    e = rec - kl
    return {
        "elbo": e.mean().item(),
        "elbo_se": standard_error(e),
        "reconstruction": rec.mean().item(),
        "kl": kl.mean().item(),
        "n": len(x),
    }
