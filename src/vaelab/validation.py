"""What the training loop scores after each epoch, on the validation examples.

:func:`score`: the ELBO, E_q[log p(x | z)] and KL(q(z | x) || p(z)), nats per example, under
the encoder's q (or, without an encoder, q fitted per example); :func:`kl_per_dim_record`: the
KL of each latent dimension, so a collapsing one shows epoch by epoch. :mod:`vaelab.train`
also scores the test split with :func:`score` at the end of a run.
"""

from __future__ import annotations

import torch

from .evaluate import evaluate_elbo, posterior_stats
from .inference import evaluate_local

LOCAL_SCORE_N = 500  # examples scored with fitted q per epoch, without an encoder


def score(model, x, config) -> dict:
    """ELBO, reconstruction and KL of ``x``: under the encoder's q, or, for a model trained
    without one (``--inference local``), under per-datapoint q fitted to at most
    ``LOCAL_SCORE_N`` of the examples (see :func:`vaelab.inference.evaluate_local`)."""
    if config.inference == "local":
        return evaluate_local(model, x[:LOCAL_SCORE_N], seed=config.seed)
    return evaluate_elbo(model, x, seed=config.seed, distributed=True)


# validation examples whose KL per dimension is logged each epoch: fewer under a mixture
# prior, whose per-dimension KL is Monte Carlo over K components (a VampPrior's 1,000 rows
# cost a fifth of an mnist-vamp epoch)
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
