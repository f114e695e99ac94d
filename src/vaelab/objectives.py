"""Training objectives: functions of ``(model, x, ...)`` returning a :class:`Terms` record.

Every number is in nats per example: log-densities summed over the data's dimensions,
then (for ``loss`` only) averaged over the batch. beta multiplies the KL of that same
per-example ELBO; no other scale factor enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, kl_divergence


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


def kl_term(qz: Distribution, pz: Distribution, z: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per example ``(B,)``: analytic where torch knows it, else the Monte Carlo
    mean of log q(z) - log p(z) over the samples ``z`` of shape ``(K, B, D)``."""
    try:
        return kl_divergence(qz, pz)
    except NotImplementedError:
        return (qz.log_prob(z) - pz.log_prob(z)).mean(0)


def kl_per_dim(qz: Independent, pz: Independent) -> torch.Tensor:
    """KL per latent dimension ``(B, D)`` for diagonal Gaussians (sums to :func:`kl_term`)."""
    return kl_divergence(qz.base_dist, pz.base_dist)


def elbo(model, x: torch.Tensor, beta: float = 1.0, k: int = 1) -> Terms:
    """The evidence lower bound, estimated with ``k`` reparameterized samples per example.

    ELBO(x) = E_{q(z|x)}[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x)   (Kingma & Welling 2014)

    ``x``: ``(B, *x_shape)``; z is drawn with shape ``(k, B, D)``.
    """
    qz = model.q_z(x)
    z = qz.rsample((k,))
    reconstruction = model.p_x(z).log_prob(x).mean(0)
    kl = kl_term(qz, model.p_z(), z)
    loss = -(reconstruction - beta * kl).mean()
    return Terms(loss=loss, elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)
