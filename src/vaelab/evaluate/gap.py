"""The inference gap of a trained VAE, split in two (Cremer, Li & Duvenaud 2018).

    log p(x) - ELBO(q_phi)  =  [log p(x) - ELBO(q*)]  +  [ELBO(q*) - ELBO(q_phi)]
                               approximation gap        amortization gap

q_phi is the encoder's q(z | x); q* the best member of q_phi's own family (``--posterior``:
the diagonal Gaussian, the full-covariance Gaussian, or the IAF with its flow's weights
fitted too) for each x alone, fitted by :func:`vaelab.core.inference.fit_local`. log p(x) is
estimated by log p^(x), the largest mean of three stochastic lower bounds: importance sampling
with K samples from q_phi, the same from q* (each draw with its own log q, which a flow knows
at its draws), and annealed importance sampling from the prior (:mod:`.ais`), which every
family allows. Also the price of each kind of inference: seconds, memory (on CUDA, where it
is measured) and parameters to infer the n posteriors.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..core.inference import PROTOCOL_LR, PROTOCOL_SAMPLES, Amortized, fit_local
from ..device import fork_rng
from ..errors import VaelabError
from ..progress import Progress, prefixed, silent
from . import ais
from .ais import ais_log_px
from .likelihood import DEFAULT_K, importance_sampled_log_px
from .statistics import standard_error


def decompose(
    log_px: torch.Tensor, elbo_local: torch.Tensor, elbo_amortized: torch.Tensor
) -> dict[str, float]:
    """Means over the n examples, nats, each with a ``_se`` twin (standard error across
    examples; a gap's is that of its per-example differences, as the terms are paired).

    approximation_gap = log_px - elbo_local, amortization_gap = elbo_local - elbo_amortized,
    so they sum to log_px - elbo_amortized (up to rounding). Inputs: ``(n,)`` each.
    """
    lp, el, ea = (t.double() for t in (log_px, elbo_local, elbo_amortized))
    out = {}
    for key, values in (("log_px", lp), ("elbo_amortized", ea), ("elbo_local", el)):
        out[key], out[f"{key}_se"] = values.mean().item(), standard_error(values)
    out["approximation_gap"] = out["log_px"] - out["elbo_local"]
    out["approximation_gap_se"] = standard_error(lp - el)
    out["amortization_gap"] = out["elbo_local"] - out["elbo_amortized"]
    out["amortization_gap_se"] = standard_error(el - ea)
    return out


@torch.no_grad()
def elbo_per_example(
    model, x, q, samples: int = 1000, chunk: int = 100, seed: int = 0,
    progress: Progress = silent,
):  # fmt: skip
    """ELBO(x_i; q_i) ``(n,)`` float64 for an inference object ``q`` (``q_z(x, index)``), the
    reconstruction term averaged over ``samples`` draws, in chunks of ``chunk`` examples
    (``progress`` is told of each)."""
    device = next(model.parameters()).device
    out = []
    with fork_rng(device), progress("ELBO", len(x), "examples") as task:
        torch.manual_seed(seed)
        for start in range(0, len(x), chunk):
            xb = x[start : start + chunk].to(device)
            index = torch.arange(start, start + len(xb), device=device)
            out.append(model.elbo(xb, k=samples, qz=q.q_z(xb, index)).double().cpu())
            task.update(len(xb))
    return torch.cat(out)


def _start_peak(device: torch.device) -> int | None:
    """Start measuring the peak memory of what follows: on CUDA, reset the peak counter and
    return the bytes allocated now; elsewhere None (nothing is measured)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _peak_mb(device: torch.device, base: int | None) -> float | None:
    """MiB allocated at the peak since :func:`_start_peak` beyond its ``base``; None off CUDA.
    The CPU has no such counter: the process's resident high-water mark is mostly set before
    (by loading the data), so its growth read 0.0 MiB, which measured nothing."""
    if base is None:
        return None
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def measure_gap(
    model,
    x: torch.Tensor,
    steps: int | None = None,
    k: int = DEFAULT_K,
    lr: float = PROTOCOL_LR,
    samples: int = PROTOCOL_SAMPLES,
    elbo_samples: int = 1000,
    ais_steps: int = ais.STEPS,
    ais_chains: int = ais.CHAINS,
    seed: int = 0,
    progress: Progress = silent,
) -> dict:
    """Everything ``vaelab gap`` reports, for the examples ``x`` ``(n, *x_shape)``.

    The decomposition (:func:`decompose`) plus: ``log_px_is_amortized``, ``log_px_is_local``,
    ``log_px_ais`` (the three estimates' means; ``ais_steps = 0`` skips AIS) and
    ``log_px_estimator`` (which one log_px is); ``seconds_amortized`` (one batched encoder
    pass) and ``seconds_local`` (the per-datapoint optimisation, ``local_steps`` Adam steps);
    ``memory_*_mb`` (on CUDA, the peak device memory each inference allocated beyond what
    was allocated before it; None elsewhere, where it is not measured);
    ``params_amortized`` (the encoder's weights and an IAF's flow) and ``params_local`` (what
    is fitted per datapoint, times n: 2 x latent for the diagonal Gaussian, latent (latent + 3)
    / 2 for the full one, an IAF's base, context and flow); ``family``, q's ``--posterior``.
    ``progress`` is told of each stage: fitting q*, importance sampling from q and from q*,
    AIS, and the two ELBOs.
    """
    model.eval()
    device = next(model.parameters()).device
    x = x.to(device)
    amortized = Amortized(model)

    base = _start_peak(device)
    start = time.perf_counter()
    with torch.no_grad():
        model.q_z(x).mean.sum().item()  # .item(): wait for the result on any device
    seconds_amortized = time.perf_counter() - start
    memory_amortized = _peak_mb(device, base)

    base = _start_peak(device)
    fit = fit_local(
        model, x, steps=steps, init="encoder", lr=lr, samples=samples, seed=seed,
        progress=progress,
    )  # fmt: skip
    memory_local = _peak_mb(device, base)

    on_q, on_star = prefixed(progress, "q(z|x): "), prefixed(progress, "q*: ")
    estimates = {
        "is_amortized": importance_sampled_log_px(model, x, k=k, seed=seed, progress=on_q)[0],
        "is_local": importance_sampled_log_px(
            model, x, k=k, seed=seed, q=fit.posteriors, progress=on_star
        )[0],
    }
    if ais_steps:
        estimates["ais"] = ais_log_px(
            model, x, steps=ais_steps, chains=ais_chains, seed=seed, progress=progress
        )
    best = max(estimates, key=lambda name: estimates[name].mean().item())
    elbo_amortized = elbo_per_example(
        model, x, amortized, elbo_samples, seed=seed + 1, progress=on_q
    )
    elbo_local = elbo_per_example(
        model, x, fit.posteriors, elbo_samples, seed=seed + 1, progress=on_star
    )
    result = decompose(estimates[best], elbo_local, elbo_amortized)
    result.update({f"log_px_{name}": v.mean().item() for name, v in estimates.items()})
    result.update(
        {
            "log_px_estimator": best,
            "family": fit.posteriors.family,
            "n": len(x),
            "k": k,
            "local_steps": fit.steps,
            "local_converged": fit.converged,
            "seconds_amortized": seconds_amortized,
            "seconds_local": fit.seconds,
            "memory_amortized_mb": memory_amortized,
            "memory_local_mb": memory_local,
            "params_amortized": amortized.num_parameters,
            "params_local": fit.posteriors.num_parameters,
            "trace": fit.trace.numpy().astype(np.float64).tolist(),
        }
    )
    return result


# --- the true posterior of a 2-D latent space, on a grid -------------------------------------


def grid_bounds(locs: list[torch.Tensor], scales: list[torch.Tensor], width: float = 5.0):
    """Per-example box ``(lo, hi)``, each ``(B, 2)``, holding ``loc +- width * scale`` of every
    Gaussian given (e.g. the encoder's q and q*): where the posterior's mass can be."""
    lo = torch.stack([m - width * s for m, s in zip(locs, scales, strict=True)]).amin(0)
    hi = torch.stack([m + width * s for m, s in zip(locs, scales, strict=True)]).amax(0)
    return lo, hi


@torch.no_grad()
def grid_posterior(model, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n: int = 200):
    """The exact posterior p(z | x) = p(x, z) / p(x) of a 2-D latent space, on a grid.

    For each example b, ``n x n`` cell centres span the box ``lo[b] .. hi[b]`` (``(B, 2)``);
    p(x) is the quadrature sum_cells p(x, z) * cell area, in log space.

    Returns
    -------
    z : ``(B, n, n, 2)``, the cell centres (z[..., i, j, :] = (axis0[j], axis1[i])).
    log_density : ``(B, n, n)`` float64, log p(z | x) at the centres: sums times the cell
        area to 1.
    log_px : ``(B,)`` float64, the quadrature estimate of log p(x).
    area : ``(B,)`` float64, the cell area.
    """
    if model.latent_dim != 2:
        raise VaelabError(
            f"the posterior grid is for a 2-D latent space; this model's is "
            f"{model.latent_dim}-D: train with --latent-dim 2"
        )
    device = next(model.parameters()).device
    steps = (hi - lo) / n  # (B, 2)
    t = torch.arange(n, dtype=lo.dtype, device=lo.device) + 0.5
    a0 = lo[:, None, 0] + t * steps[:, None, 0]  # (B, n)
    a1 = lo[:, None, 1] + t * steps[:, None, 1]
    z = torch.stack(torch.broadcast_tensors(a0[:, None, :], a1[:, :, None]), -1)  # (B, n, n, 2)
    flat = z.reshape(len(x), n * n, 2).transpose(0, 1).to(device)  # (n*n, B, 2)
    log_joint = torch.cat(
        [model.log_joint(x.to(device), chunk).double() for chunk in flat.split(2000)]
    ).T.reshape(len(x), n, n)
    area = steps.double().prod(-1)
    log_px = torch.logsumexp(log_joint.flatten(1), -1).cpu() + area.log()
    log_density = log_joint.cpu() - log_px[:, None, None]
    return z.cpu(), log_density, log_px, area
