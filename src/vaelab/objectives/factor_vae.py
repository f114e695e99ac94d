"""FactorVAE (Kim & Mnih 2018, "Disentangling by factorising"): the ELBO minus gamma times the
total correlation TC(z) = KL(q(z) || prod_d q(z_d)), estimated by a discriminator.

The discriminator D(z) tells codes z ~ q(z) (the batch's samples) from codes drawn from
prod_d q(z_d) (the same samples with each dimension shuffled across the batch, as
disentanglement_lib does). At its optimum its logit is the density ratio
log q(z) / prod_d q(z_d), so

    TC(z) ~ E_q(z)[log D(z) / (1 - D(z))] = E_q(z)[logit(z)]

D is not part of the model: it has its own Adam and steps after each step of the VAE
(:class:`vaelab.training.critic.Critic`), and lives only in the training checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .elbo import Terms

# the paper's discriminator has 6 hidden layers of 1000 units; 4 of 256 keep a CPU step cheap
HIDDEN = (256, 256, 256, 256)


class Discriminator(nn.Module):
    """An MLP ``z (*batch, D) -> logit (*batch,)``: log D(z) / (1 - D(z)), D(z) the
    probability that z was drawn from q(z) rather than from prod_d q(z_d)."""

    def __init__(self, n_latent: int, hidden: tuple[int, ...] = HIDDEN):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_latent
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """``z`` ``(..., B, D)`` with each dimension d permuted independently across the batch:
    every column keeps its values (so each marginal q(z_d) is kept), but their pairing across
    dimensions is broken: a sample of prod_d q(z_d). Uses the global generator."""
    batch = z.shape[-2]
    columns = [z[..., torch.randperm(batch, device=z.device), d] for d in range(z.shape[-1])]
    return torch.stack(columns, -1)


def discriminator_loss(discriminator: Discriminator, z: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of D on ``z`` ``(..., B, D)`` (label 1: from q(z)) and on
    :func:`permute_dims` of it (label 0: from prod_d q(z_d)), averaged over both."""
    joint = discriminator(z)
    product = discriminator(permute_dims(z))
    return 0.5 * (
        F.binary_cross_entropy_with_logits(joint, torch.ones_like(joint))
        + F.binary_cross_entropy_with_logits(product, torch.zeros_like(product))
    )


def tc_estimate(discriminator: Discriminator, z: torch.Tensor) -> torch.Tensor:
    """The discriminator's logit at ``z`` ``(..., B, D)``: per-sample TC estimate ``(..., B)``.

    D's parameters enter detached: the gradient reaches z (the encoder and, through the
    reconstruction, nothing else), never D, which only its own loss trains."""
    params = {name: p.detach() for name, p in discriminator.named_parameters()}
    return functional_call(discriminator, params, (z,))


def factor_vae(
    model,
    x: torch.Tensor,
    discriminator: Discriminator,
    gamma: float,
    beta: float = 1.0,
    k: int = 1,
) -> Terms:
    """The FactorVAE objective with ``k`` samples per example ``x`` ``(B, *x_shape)``:

        E_q[log p(x | z)] - beta KL(q(z | x) || p(z)) - gamma TC(z)

    ``beta`` is the step's KL weight (1 unless ``--beta`` or ``--kl-warmup``). Returns
    :class:`Terms` whose ``elbo`` is the ordinary ELBO (a bound on log p(x)); ``loss`` adds
    gamma times the discriminator's TC estimate averaged over the samples.
    """
    est = model.elbo_terms(x, k)
    tc = tc_estimate(discriminator, est.z).mean(0)
    loss = -(est.reconstruction - beta * est.kl - gamma * tc).mean()
    return Terms(loss=loss, elbo=est.elbo, reconstruction=est.reconstruction, kl=est.kl)
