"""Annealed importance sampling (AIS) of log p(x), with Hamiltonian Monte Carlo transitions.

Neal (2001); for decoders, Wu, Burda, Salakhutdinov & Grosse (2017). The intermediate
targets run from a normalised start q0(z) to the unnormalised posterior p(x, z):

    f_t(z) = (1 - beta_t) log q0(z) + beta_t log p(x, z),   0 = beta_0 < ... < beta_T = 1

z_0 ~ q0; before transition t the log-weight gains (beta_t - beta_{t-1}) (log p(x, z) -
log q0(z)); transition t leaves exp(f_t) invariant (HMC with a Metropolis correction). Then
E[w] = p(x), so log p^(x) = logsumexp_c(log w_c) - log C over C chains is a stochastic lower
bound on log p(x) in expectation, exact as T grows. q0 is the prior (the estimate then does
not depend on the encoder) or the encoder's q(z | x).

Shapes: chains are the leading sample dimension, z ``(C, B, D)``, as everywhere.
"""

from __future__ import annotations

import math

import torch

from ..core.posteriors import InverseAutoregressiveFlow
from ..device import fork_rng
from ..errors import VaelabError
from ..progress import Progress, Task, silent

STEPS = 500  # intermediate distributions: vaelab eval --ais's and vaelab gap's default
CHAINS = 16  # annealing runs per example
TARGET_ACCEPT = 0.65  # the step size is tuned towards this acceptance rate (Wu et al. 2017)


def sigmoid_schedule(steps: int, delta: float = 4.0) -> torch.Tensor:
    """beta_0 .. beta_T, ``(T + 1,)`` float64 from 0 to 1: a sigmoid rescaled to end exactly
    at 0 and 1, so the annealing moves slowly near the prior and near the posterior, where the
    targets change fastest (Grosse et al. 2015)."""
    s = torch.sigmoid(delta * torch.linspace(-1.0, 1.0, steps + 1, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


def _grad_f(model, x, q0, beta: float, z: torch.Tensor):
    """f_beta(z) ``(C, B)`` and its gradient in z ``(C, B, D)``; also log p(x, z) - log q0.

    ``q0 = None`` means the prior: then log p(x, z) - log q0(z) = log p(x | z), and log p(z)
    is evaluated once, by the model's unexpanded p(z), broadcasting over ``(C, B)``.
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        if q0 is None:
            log_q0 = model.p_z().log_prob(z)
            log_ratio = model.p_x(z).log_prob(x)
        else:
            log_q0 = q0.log_prob(z)
            log_ratio = model.log_joint(x, z) - log_q0
        f = log_q0 + beta * log_ratio
        (grad,) = torch.autograd.grad(f.sum(), z)
    return f.detach(), grad, log_ratio.detach()


@torch.no_grad()
def ais_log_px(
    model,
    x: torch.Tensor,
    steps: int = STEPS,
    chains: int = CHAINS,
    leapfrog: int = 10,
    step_size: float = 0.05,
    start: str = "prior",
    batch_size: int = 100,
    seed: int = 0,
    progress: Progress = silent,
) -> torch.Tensor:
    """Per-example AIS estimate of log p(x) ``(N,)`` float64, nats.

    Parameters
    ----------
    x : ``(N, *x_shape)``.
    steps : T, the number of intermediate distributions (HMC transitions).
    chains : C, independent annealing runs per example, averaged in weight space.
    leapfrog : leapfrog steps per HMC transition.
    step_size : the initial leapfrog step; then adapted per example, x1.02 or x0.98 after
        each transition as the acceptance rate over its chains is above or below 0.65.
    start : "prior" (q0 = p(z)) or "encoder" (q0 = q(z | x): a Gaussian family, since the
        chains need log q0 at any z; an IAF's log q is known only at its own draws).
    batch_size : examples annealed at a time. seed : fixes the noise; the global generator
        is left as it was.
    progress : told of every transition, in examples x steps (one stage).
    """
    if start not in ("prior", "encoder"):
        raise VaelabError(f"start must be 'prior' or 'encoder' (got {start!r})")
    for name, value in (("steps", steps), ("chains", chains), ("leapfrog", leapfrog)):
        if not (isinstance(value, int) and value >= 1):
            raise VaelabError(f"AIS {name} must be a positive integer (got {value!r})")
    device = next(model.parameters()).device
    betas = sigmoid_schedule(steps).tolist()
    out = []
    # one p(z) for every HMC step: the weights stand still
    with fork_rng(device), model.fixed_prior(), progress("AIS", len(x) * steps, "steps") as task:
        torch.manual_seed(seed)
        for begin in range(0, len(x), batch_size):
            xb = x[begin : begin + batch_size].to(device)
            if start == "prior":
                # the chains start from the prior, drawn through its copy expanded over the
                # batch (once per batch); every later log p(z) is the fixed, unexpanded p(z),
                # so a mixture keeps GaussianMixture's fast log_prob (its expanded copy has
                # (B, K, D) components and takes torch's general, elementwise path)
                z0 = model.p_z().expand(torch.Size([len(xb)])).sample((chains,))
                q0 = None
            else:
                q0 = model.q_z(xb)
                if isinstance(q0, InverseAutoregressiveFlow):
                    raise VaelabError(
                        "AIS from the encoder needs log q(z|x) wherever the chains move, which "
                        "--posterior iaf cannot give (its flow is not inverted): use start='prior'"
                    )
                z0 = q0.sample((chains,))
            out.append(_anneal(model, xb, q0, z0, betas, leapfrog, step_size, task).cpu())
    return torch.cat(out)


def _anneal(model, x, q0, z, betas, leapfrog, step_size, task: Task | None = None) -> torch.Tensor:
    """log p^(x) ``(B,)`` from chains started at ``z`` ``(C, B, D)`` drawn from ``q0``
    (``None``: the prior); ``task`` is told of each transition."""
    chains = z.shape[0]
    b = z.shape[1]
    eps = torch.full((1, b, 1), step_size, dtype=z.dtype, device=z.device)
    log_w = torch.zeros(chains, b, dtype=torch.float64, device=z.device)
    f, grad, log_ratio = _grad_f(model, x, q0, betas[0], z)
    for t in range(1, len(betas)):
        beta = betas[t]
        log_w += (beta - betas[t - 1]) * log_ratio.double()
        # f and its gradient at the current z, now under target t
        f, grad, log_ratio = _grad_f(model, x, q0, beta, z)
        momentum = torch.randn_like(z)
        h0 = -f + 0.5 * (momentum**2).sum(-1)
        z_new, p_new = z, momentum + 0.5 * eps * grad
        for step in range(leapfrog):
            z_new = z_new + eps * p_new
            f_new, grad_new, ratio_new = _grad_f(model, x, q0, beta, z_new)
            p_new = p_new + (eps if step < leapfrog - 1 else 0.5 * eps) * grad_new
        h1 = -f_new + 0.5 * (p_new**2).sum(-1)
        # Metropolis: accept with probability min(1, exp(h0 - h1)); a NaN energy rejects
        accept = torch.rand_like(h0).log() < (h0 - h1).nan_to_num(nan=-math.inf)
        keep = accept.unsqueeze(-1)
        z = torch.where(keep, z_new, z)
        log_ratio = torch.where(accept, ratio_new, log_ratio)
        rate = accept.to(z.dtype).mean(0).view(1, b, 1)
        eps = torch.where(rate > TARGET_ACCEPT, eps * 1.02, eps * 0.98)
        if task is not None:
            task.update(b)
    return torch.logsumexp(log_w, dim=0) - math.log(chains)
