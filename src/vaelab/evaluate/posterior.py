"""What the encoder says about a data split: the posterior means and standard deviations, the
KL per latent dimension, and how many dimensions are active.
"""

from __future__ import annotations

import torch

from ..core.kl import kl_per_dim
from ..errors import VaelabError


@torch.no_grad()
def posterior_means(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z | x], the encoder's posterior means ``(N, D)``, ``batch_size`` examples at a
    time: what the active-unit count needs, without :func:`posterior_stats`' KL."""
    device = next(model.parameters()).device
    return torch.cat([model.q_z(c.to(device)).mean.cpu() for c in x.split(batch_size)])


@torch.no_grad()
def posterior_stats(model, x: torch.Tensor, batch_size: int = 1000):
    """Posterior means and standard deviations ``(N, D)`` and the KL per dimension ``(N, D)``
    (:func:`vaelab.core.kl.kl_per_dim`), ``batch_size`` examples at a time.

    Without gradients: under a mixture prior the per-dimension KL is a Monte Carlo sum over
    all K components, whose autograd graph would otherwise hold gigabytes."""
    device = next(model.parameters()).device
    means, stds, kls = [], [], []
    pz = model.p_z()
    for start in range(0, len(x), batch_size):
        qz = model.q_z(x[start : start + batch_size].to(device))
        means.append(qz.mean.cpu())
        stds.append(qz.stddev.cpu())
        kls.append(kl_per_dim(qz, pz).cpu())
    return torch.cat(means), torch.cat(stds), torch.cat(kls)


def active_units(means: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions are active (Burda et al. 2015).

    Dimension d is active when A_d = Cov_x(E_{q(z|x)}[z_d]) > ``threshold``: the posterior
    mean moves with x. ``means``: ``(N, D)``, E_q[z] for each example, e.g. the first output
    of :func:`posterior_stats`. The variance over x is the unbiased sample variance.
    """
    if means.ndim != 2 or len(means) < 2:
        raise VaelabError(
            f"active_units needs posterior means of shape (N >= 2, D), got {tuple(means.shape)}"
        )
    return int((means.double().var(dim=0) > threshold).sum().item())
