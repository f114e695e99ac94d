"""Scoring a trained model on a data split.

The ELBO is averaged over examples with float64 sums; its noise comes from a fixed seed, so
the same run evaluated twice gives the same numbers.
"""

from __future__ import annotations

import math

import torch

from . import objectives


@torch.no_grad()
def evaluate_elbo(
    model, x: torch.Tensor, k: int = 1, batch_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction E_q[log p(x|z)] and KL over ``x`` (nats).

    Also the standard error of the mean ELBO across examples (``elbo_se``).
    """
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(device)
            terms = objectives.elbo(model, xb, k=k)
            e = terms.elbo.double().cpu()
            sums += torch.stack(
                [
                    e.sum(),
                    (e * e).sum(),
                    terms.reconstruction.double().sum().cpu(),
                    terms.kl.double().sum().cpu(),
                ]
            )
    n = len(x)
    mean = sums[0].item() / n
    var = max(sums[1].item() / n - mean * mean, 0.0)
    return {
        "elbo": mean,
        "elbo_se": math.sqrt(var / n) if n > 1 else float("nan"),
        "reconstruction": sums[2].item() / n,
        "kl": sums[3].item() / n,
        "n": n,
    }


@torch.no_grad()
def posterior_stats(model, x: torch.Tensor, batch_size: int = 1000):
    """Posterior means and standard deviations ``(N, D)`` and the KL per dimension ``(N, D)``."""
    device = next(model.parameters()).device
    means, stds, kls = [], [], []
    pz = model.p_z()
    for start in range(0, len(x), batch_size):
        qz = model.q_z(x[start : start + batch_size].to(device))
        means.append(qz.mean.cpu())
        stds.append(qz.stddev.cpu())
        kls.append(objectives.kl_per_dim(qz, pz).cpu())
    return torch.cat(means), torch.cat(stds), torch.cat(kls)
