"""The semi-amortized objective (after Kim et al. 2018): the encoder's q refined per batch by
a few steps of per-datapoint optimisation before the decoder learns from it."""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence

from ..core.inference import fit_local
from .elbo import Terms, elbo

REFINE_LR = 1e-2  # semi-amortized refinement: a few steps must move q visibly


def semi_amortized_elbo(
    model, x: torch.Tensor, steps: int, beta: float, k: int, seed: int
) -> Terms:
    """The semi-amortized objective for one batch: q_phi(z | x) refined by ``steps`` Adam
    steps on the ELBO with the decoder fixed (:func:`~vaelab.core.inference.fit_local`), q_r;
    then

        loss = -mean[ E_{q_r}[log p(x | z)] - beta KL(q_r || p(z)) ] + mean KL(q_r || q_phi)

    The decoder learns from the refined ELBO; the encoder (q_r held fixed) is pulled towards
    what refinement found, instead of differentiating through the refinement as Kim et al. do
    (cheaper: no second-order terms). Returns the :class:`Terms` of q_r.
    """
    refined = fit_local(model, x, steps=steps, init="encoder", lr=REFINE_LR, samples=1, seed=seed)
    q_r = refined.posteriors.q_z(noise=model.noise)  # a data-parallel step's global noise
    terms = elbo(model, x, beta=beta, k=k, qz=q_r)
    distill = kl_divergence(q_r, model.q_z(x)).mean()
    return Terms(terms.loss + distill, terms.elbo, terms.reconstruction, terms.kl)
