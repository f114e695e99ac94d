"""The ELBO of a data split: its mean over the examples with float64 sums, its standard error,
and its two terms, reconstruction and KL, with noise fixed by a seed per batch.
"""

from __future__ import annotations

import math

import torch

from ..device import fork_rng
from .sampling import _all_reduce_sum, _block_seed, _ranks, _seed_device


@torch.no_grad()
def evaluate_elbo(
    model,
    x: torch.Tensor,
    k: int = 1,
    batch_size: int = 1000,
    seed: int = 0,
    distributed: bool = False,
) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction E_q[log p(x|z)] and KL over ``x`` (nats).

    Also the standard error of the mean ELBO across examples (``elbo_se``). The z of batch j
    are drawn right after seeding with (``seed``, j), or ``seed`` for j = 0. With
    ``distributed``, in a torchrun launch of W processes, rank r scores batches r, r + W, ...
    and the float64 sums are added over the ranks: every rank returns the one-process
    result (to float rounding).
    """
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64)
    rank, world = _ranks(distributed)
    with fork_rng(device):
        for batch_index, start in enumerate(range(0, len(x), batch_size)):
            if batch_index % world != rank:
                continue
            # batch 0 from ``seed`` itself: a set of up to batch_size examples scores as it
            # did when one seed drew the noise of every batch in turn
            _seed_device(_block_seed(seed, batch_index, 0) if batch_index else seed, device)
            xb = x[start : start + batch_size].to(device)
            est = model.elbo_terms(xb, k)
            reconstruction, kl = est.reconstruction, est.kl
            e = (reconstruction - kl).double().cpu()
            sums += torch.stack(
                [
                    e.sum(),
                    (e * e).sum(),
                    reconstruction.double().sum().cpu(),
                    kl.double().sum().cpu(),
                ]
            )
    if world > 1:
        _all_reduce_sum(sums)
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
