"""Posteriors for a fixed model: amortized (the encoder), local (q per datapoint, in the
model's own family), the optimisation that fits the local ones, and the per-example
posteriors that classical SVI trains with (:class:`LocalTable`).

Amortized inference shares one network phi across the data: q_phi(z | x), a family of
:mod:`vaelab.core.posteriors` built from the encoder's outputs. Local inference gives every
datapoint x_i parameters of its own in the same family, q_i(z) (N(m_i, diag s_i^2); N(m_i,
L_i L_i^T); or an IAF with its own base, context and flow weights), fitted by maximising that
datapoint's ELBO; the best q_i of the family is q*, and ELBO(q*) - ELBO(q_phi) is the
amortization gap (Cremer, Li & Duvenaud 2018). Both answer ``q_z(x, index)`` (the encoder
ignores ``index``), so one estimator can be run against either.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.distributions import Distribution

from ..device import fork_rng
from ..errors import VaelabError
from ..progress import Progress, silent
from .gaussian import Noise, bounded_log_var, diagonal_normal
from .made import MADECopies, free_parameters
from .posteriors import DiagonalPosterior, InverseAutoregressiveFlow, full_normal

INITS = ("encoder", "prior")
# Cremer, Li & Duvenaud (2018)'s protocol for q*: Adam's learning rate, z drawn per step
PROTOCOL_LR = 1e-3
PROTOCOL_SAMPLES = 100


class Amortized:
    """The encoder as an inference object: ``q_z(x, index) = model.q_z(x)``."""

    def __init__(self, model):
        self.model = model

    def q_z(self, x: torch.Tensor, index: torch.Tensor | None = None) -> Distribution:
        return self.model.q_z(x)

    @property
    def num_parameters(self) -> int:
        """The encoder's weights and those of q's family (an IAF's flow; masked-out weights
        not counted): fixed, however many datapoints there are."""
        posterior = getattr(self.model, "posterior", None)
        flow = free_parameters(posterior) if posterior is not None else 0
        return sum(p.numel() for p in self.model.encoder.parameters()) + flow


class LocalPosteriors(nn.Module):
    """q_i(z) for datapoints i = 0 .. N-1, each with parameters of its own, in the family of
    ``posterior`` (a module of :mod:`vaelab.core.posteriors`; default the diagonal Gaussian):

    - diagonal: q_i = N(loc_i, diag exp(log_var_i)), 2 N D numbers;
    - full: q_i = N(loc_i, L_i L_i^T) (:func:`~vaelab.core.posteriors.full_normal`), ``extra``
      holding L_i's D(D - 1)/2 entries below the diagonal, (2 D + D(D - 1)/2) N numbers;
    - iaf: the flow on N(loc_i, diag exp(log_var_i)) with context h_i (``extra``, ``(N, H)``)
      and a copy of every MADE of ``posterior.steps`` for each datapoint
      (:class:`~vaelab.core.made.MADECopies`, started at the trained flow's weights), as
      Cremer, Li & Duvenaud (2018) optimise the whole flow per datapoint.

    ``loc`` and ``log_var`` are parameters of shape ``(N, D)``; ``log_var`` passes through
    :func:`vaelab.core.gaussian.bounded_log_var`, as the encoder's does. The numbers grow with
    the data (:attr:`num_parameters`).
    """

    def __init__(
        self,
        loc: torch.Tensor,
        log_var: torch.Tensor,
        extra: torch.Tensor | None = None,
        posterior: nn.Module | None = None,
    ):
        super().__init__()
        if loc.shape != log_var.shape or loc.ndim != 2:
            raise VaelabError(
                f"loc and log_var must both be (N, D), got {loc.shape} and {log_var.shape}"
            )
        posterior = DiagonalPosterior() if posterior is None else posterior
        self.family = posterior.family
        n = loc.shape[0]
        if (extra.shape if extra is not None else (n, 0)) != (n, posterior.extra):
            got = None if extra is None else tuple(extra.shape)
            raise VaelabError(
                f"--posterior {self.family} needs extra of shape ({n}, {posterior.extra}), "
                f"got {got}"
            )
        self.loc = nn.Parameter(loc.detach().clone())
        self.log_var = nn.Parameter(log_var.detach().clone())
        # full: L's entries below the diagonal; iaf: the context h
        self.extra = nn.Parameter(extra.detach().clone()) if posterior.extra else None
        steps = getattr(posterior, "steps", ())
        self.steps = nn.ModuleList(MADECopies(made, n) for made in steps)

    def __len__(self) -> int:
        return self.loc.shape[0]

    @property
    def num_parameters(self) -> int:
        """The numbers fitted for the N datapoints (an IAF's masked-out weights not counted)."""
        rows = sum(p.numel() for p in (self.loc, self.log_var, self.extra) if p is not None)
        return rows + sum(copies.num_parameters for copies in self.steps)

    def q_z(
        self,
        x: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
        noise: Noise | None = None,
    ) -> Distribution:
        """q_i for the rows ``index`` (all N when None): batch shape ``(B,)``, event ``(D,)``.

        ``x`` is not used; it is there so that local and amortized posteriors answer one call.
        ``noise``: where ``rsample`` draws eps (:mod:`vaelab.core.gaussian`).
        """
        rows = slice(None) if index is None else index
        loc, log_var = self.loc[rows], self.log_var[rows]
        if self.family == "full":
            return full_normal(loc, log_var, self.extra[rows], noise)
        base = diagonal_normal(loc, log_var, noise)
        if self.family == "diagonal":
            return base
        steps = [partial(copies, rows=index) for copies in self.steps]
        return InverseAutoregressiveFlow(base, self.extra[rows], steps)


@dataclass(frozen=True)
class LocalFit:
    """What :func:`fit_local` returns.

    posteriors : the fitted q*_i, a :class:`LocalPosteriors` of N rows in the model's family.
    trace : ``(steps,)`` float64, the mean over the N datapoints of the ELBO estimate at each
        step (nats), before that step's update.
    steps : Adam steps taken. converged : whether the stopping rule ended the fit.
    seconds : wall-clock time of the optimisation.
    """

    posteriors: LocalPosteriors
    trace: torch.Tensor
    steps: int
    converged: bool
    seconds: float


def init_local(model, x: torch.Tensor, init: str = "encoder") -> LocalPosteriors:
    """Starting points, in the model's family of q (``model.posterior``): the encoder's
    output for each x, so that q_i starts as the amortized q(z | x_i) (semi-amortized, Kim et
    al. 2018; an IAF's flow weights are the trained flow's), or the prior's N(0, I) for the
    base (loc 0, log_var 0, a full L's entries 0; an IAF's context 0 and the trained flow)."""
    if init not in INITS:
        raise VaelabError(f"init must be one of {', '.join(INITS)} (got {init!r})")
    posterior = getattr(model, "posterior", None)
    posterior = DiagonalPosterior() if posterior is None else posterior
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    n, d = len(x), model.latent_dim
    if init == "prior":
        zeros = torch.zeros(n, d, dtype=dtype, device=device)
        extra = torch.zeros(n, posterior.extra, dtype=dtype, device=device)
        return LocalPosteriors(zeros, zeros, extra if posterior.extra else None, posterior)
    with torch.no_grad():
        loc, log_var, *extra = model.encoder(x.to(device))
    return LocalPosteriors(loc, bounded_log_var(log_var), *extra, posterior=posterior)


def fit_local(
    model,
    x: torch.Tensor,
    steps: int | None = None,
    init: str = "encoder",
    lr: float = PROTOCOL_LR,
    samples: int = PROTOCOL_SAMPLES,
    window: int = 100,
    patience: int = 10,
    max_steps: int = 50_000,
    seed: int = 0,
    posteriors: LocalPosteriors | None = None,
    progress: Progress = silent,
) -> LocalFit:
    """Fit q*_i(z), in the model's family of q (:class:`LocalPosteriors`), to each datapoint
    x_i by maximising its ELBO over q_i's own parameters lambda_i:

    maximise_{lambda_i}  E_{q_i}[log p(x_i | z)] - KL(q_i || p(z)),  i = 1 .. N, in parallel

    with Adam on every parameter of the :class:`LocalPosteriors` (``(N, D)`` loc and log_var;
    a full L's ``(N, D(D - 1)/2)`` entries; an IAF's ``(N, H)`` contexts and ``(N, ...)``
    flow weights), the model (decoder, prior, encoder, its flow) held fixed. Cremer, Li &
    Duvenaud (2018)'s protocol is the default: learning rate 1e-3, 100 samples of z per
    datapoint and step; with ``steps=None`` it runs until the mean ELBO over a
    window of ``window`` steps has not improved for more than ``patience`` windows (at most
    ``max_steps``); with ``steps`` given it takes exactly that many. The datapoints' ELBOs
    are independent and no parameter is shared between datapoints (an IAF's flow is copied
    per datapoint), so summing them gives each its own gradient: fitting N at once is N
    separate fits.

    ``x``: ``(N, *x_shape)``. ``posteriors`` continues an earlier fit instead of ``init``.
    The global random generator is left as it was (the noise comes from ``seed``).
    ``progress`` is told of every step (out of ``steps``, or at most ``max_steps``).
    """
    if steps is not None and not (isinstance(steps, int) and steps >= 0):
        raise VaelabError(f"steps must be a non-negative integer (got {steps!r})")
    for name, value in (("samples", samples), ("window", window), ("patience", patience)):
        if not (isinstance(value, int) and value >= 1):
            raise VaelabError(f"{name} must be a positive integer (got {value!r})")
    if not lr > 0:
        raise VaelabError(f"lr must be > 0 (got {lr})")
    device = next(model.parameters()).device
    x = x.to(device)
    q = posteriors if posteriors is not None else init_local(model, x, init)
    if len(q) != len(x):
        raise VaelabError(f"{len(q)} posteriors for {len(x)} datapoints")
    family = getattr(getattr(model, "posterior", None), "family", "diagonal")
    if q.family != family:
        raise VaelabError(
            f"the posteriors to continue are --posterior {q.family}, the model's q is "
            f"--posterior {family}: fit q* in the model's family (posteriors=None)"
        )
    q.requires_grad_(True)  # a finished fit is frozen; continuing one thaws it
    params = list(q.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    limit = steps if steps is not None else max_steps
    trace: list[torch.Tensor] = []
    best, stale, converged = -math.inf, 0, False
    start = time.perf_counter()
    # p(z) computed once: the weights stand still (a VampPrior would re-encode its
    # pseudo-inputs at every step)
    with fork_rng(device), model.fixed_prior(), progress("fitting q*", limit, "steps") as task:
        torch.manual_seed(seed)
        for step in range(limit):
            # the model's noise source, if a data-parallel training step set one
            elbo = model.elbo(x, k=samples, qz=q.q_z(noise=model.noise))
            # gradients for q's parameters only: the model stays fixed and gets none
            grads = torch.autograd.grad(-elbo.sum(), params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            optimizer.step()
            trace.append(elbo.detach().double().mean())
            task.update()
            if steps is None and (step + 1) % window == 0:
                current = torch.stack(trace[-window:]).mean().item()
                if current > best:
                    best, stale = current, 0
                else:
                    stale += 1
                    if stale > patience:  # "not improved for more than 10 windows"
                        converged = True
                        break
    seconds = time.perf_counter() - start
    for p in q.parameters():
        p.grad = None
    q.requires_grad_(False)
    trace_t = torch.stack(trace).cpu() if trace else torch.zeros(0, dtype=torch.float64)
    return LocalFit(q, trace_t, len(trace), converged, seconds)


# --- inference inside training: local (classical SVI) --------------------------------------


class LocalTable(nn.Module):
    """Training-time q_i(z) = N(loc_i, diag exp(log_var_i)) for every training example i, with
    its own lazy Adam: only the rows of a batch move, each with its own step count (Adam with
    zero gradients for the other rows would keep moving them on momentum, and cost O(N D) a
    step). Everything is a buffer, so it is saved, and resumed, with the model's weights.

    ``loc``, ``log_var``: ``(N, D)``; the Adam moments ``(N, 2D)``; ``steps``: ``(N,)``.
    """

    def __init__(self, n: int, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(n, latent_dim))
        self.register_buffer("log_var", torch.zeros(n, latent_dim))  # both start at the prior
        self.register_buffer("exp_avg", torch.zeros(n, 2 * latent_dim))
        self.register_buffer("exp_avg_sq", torch.zeros(n, 2 * latent_dim))
        self.register_buffer("steps", torch.zeros(n))

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, Distribution]:
        """A leaf ``(B, 2D)`` [loc | log_var] of the rows ``index`` (its ``.grad`` feeds
        :meth:`adam_step`) and their q: batch ``(B,)``, event ``(D,)``."""
        leaf = torch.cat([self.loc[index], self.log_var[index]], -1).requires_grad_(True)
        loc, log_var = leaf.chunk(2, -1)
        return leaf, diagonal_normal(loc, log_var)

    @torch.no_grad()
    def adam_step(self, index, grad, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        """One Adam step (Kingma & Ba 2015) on the rows ``index`` with gradient ``grad``."""
        b1, b2 = betas
        m = self.exp_avg[index].mul_(b1).add_(grad, alpha=1 - b1)
        v = self.exp_avg_sq[index].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        t = self.steps[index].add_(1)[:, None]
        update = lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        d = self.loc.shape[1]
        self.loc[index] -= update[:, :d]
        self.log_var[index] -= update[:, d:]
        self.exp_avg[index], self.exp_avg_sq[index], self.steps[index] = m, v, t[:, 0]
