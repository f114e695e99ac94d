"""The evidence lower bound as a training objective, and its free-bits variant.

Every objective returns a :class:`Terms` record of nats per example: log-densities summed
over the data's dimensions, then (for ``loss`` only) averaged over the batch. beta multiplies
the KL of that same per-example ELBO; no other scale factor enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.kl import kl_per_dim


@dataclass(frozen=True)
class Terms:
    """What one objective evaluation returns.

    loss : scalar, the quantity minimised: mean over the batch of -(reconstruction - beta kl).
    elbo : ``(B,)``, reconstruction - kl (beta plays no part: this is the bound on log p(x)).
    reconstruction : ``(B,)``, E_q[log p(x | z)], estimated with the K samples.
    kl : ``(B,)``, KL(q(z | x) || p(z)): closed form when both are Gaussian, else Monte Carlo.
    """

    loss: torch.Tensor
    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def elbo(model, x: torch.Tensor, beta: float = 1.0, k: int = 1, qz=None) -> Terms:
    """The evidence lower bound, estimated with ``k`` reparameterized samples per example.

    ELBO(x) = E_{q(z|x)}[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x)   (Kingma & Welling 2014)

    ``x``: ``(B, *x_shape)``; z is drawn with shape ``(k, B, D)``. q is the encoder's unless
    ``qz`` is given (per-datapoint or refined posteriors, :mod:`vaelab.core.inference`). The
    estimate is the model's own (:meth:`vaelab.core.model.VAE.elbo_terms`); ``beta`` weighs
    the KL in the loss only.
    """
    est = model.elbo_terms(x, k, qz)
    loss = -(est.reconstruction - beta * est.kl).mean()
    return Terms(loss=loss, elbo=est.elbo, reconstruction=est.reconstruction, kl=est.kl)


def free_bits_elbo(model, x: torch.Tensor, free_bits: float, beta: float = 1.0, k: int = 1):
    """The ELBO whose loss floors each latent dimension's KL at ``free_bits`` nats.

        loss = -mean_B E_q[log p(x | z)] + beta sum_j max(lambda, mean_B KL_j)

    (Kingma et al. 2016, "free bits", one group per latent dimension.) A dimension whose
    batch-mean KL is below lambda gets no gradient from the KL term, so the encoder is not
    pushed to collapse it onto the prior. ``elbo`` and ``kl`` are the true ELBO and KL, not
    floored. Needs a prior whose KL splits over dimensions (the standard normal).
    """
    est = model.elbo_terms(x, k)
    per_dim = kl_per_dim(est.qz, est.pz)  # (B, D), summing to est.kl
    floored = per_dim.mean(0).clamp(min=free_bits).sum()
    loss = -est.reconstruction.mean() + beta * floored
    return Terms(loss=loss, elbo=est.elbo, reconstruction=est.reconstruction, kl=est.kl)
