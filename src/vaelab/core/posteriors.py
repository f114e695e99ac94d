"""The families of q(z | x): the diagonal Gaussian, the full-covariance Gaussian and the
inverse autoregressive flow, each built from the encoder's outputs by a small module.

- ``diagonal``: q = N(mu, diag sigma^2) (:func:`vaelab.core.gaussian.diagonal_normal`); the
  encoder emits (mu, log sigma^2), 2D numbers.
- ``full``: q = N(mu, L L^T), L lower-triangular with diagonal sigma = exp(log sigma^2 / 2)
  (the bounded log-variance of :mod:`vaelab.core.gaussian`) and the D(D - 1)/2 entries below
  it as the encoder emits them; ``MultivariateNormal(loc, scale_tril=L)``.
- ``iaf``: T steps of the inverse autoregressive flow (Kingma et al. 2016) on the diagonal
  Gaussian. z_0 = mu + sigma * eps, then for t = 1 .. T, with (m_t, s_t) = MADE_t(z_{t-1}, h)
  (:mod:`vaelab.core.made`; h a context vector the encoder emits beside mu and sigma, D
  numbers, fed to every step; the order of the dimensions reversed from one step to the next),

      z_t = sigma_t * z_{t-1} + (1 - sigma_t) * m_t,     sigma_t = sigmoid(s_t + SIGMOID_BIAS)

      log q(z_T | x) = log N(z_0 ; mu, diag sigma^2) - sum_t sum_d log sigma_{t,d}

  since dz_t / dz_{t-1} is triangular (in step t's order) with diagonal sigma_t.

Each family's module has ``family`` (its name) and ``extra`` (the numbers per example the
encoder emits beyond (mu, log sigma^2)), and maps ``(loc, log_var, *extra, noise=)`` to q,
batch shape ``(B,)``, event ``(D,)``; ``rsample((K,))`` has shape ``(K, B, D)``. Which
family a run uses is ``--posterior`` (``build.POSTERIORS``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, MultivariateNormal, constraints

from ..errors import VaelabError
from .gaussian import DiagonalNormal, Noise, bounded_log_var, diagonal_normal
from .made import MADE

# added to every s_t so that sigma_t = sigmoid(2) = 0.88 at the start: each step begins near
# the identity, the "forget gate bias" of Kingma et al. 2016 ("1 or 2"; Pyro's default is 2)
SIGMOID_BIAS = 2.0
# draws an IAF remembers by identity (with their log q per dimension): an estimator asks for
# log q of the draw it has just made, seldom of one made several draws ago
KEPT_DRAWS = 4


# --- the full-covariance Gaussian ------------------------------------------------------------


class FullNormal(MultivariateNormal):
    """N(loc, L L^T) over the last dimension, ``MultivariateNormal(loc, scale_tril=L)``
    (``.mean``, ``.stddev``, ``.log_prob`` as torch's), whose ``rsample`` takes its eps from
    ``noise`` when one is given. ``loc``: ``(*batch, D)``; ``scale_tril``: ``(*batch, D, D)``."""

    def __init__(self, loc: torch.Tensor, scale_tril: torch.Tensor, noise: Noise | None = None):
        super().__init__(loc, scale_tril=scale_tril, validate_args=False)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008
        """z = loc + L eps, ``(*sample_shape, *batch, D)``."""
        if self.noise is None:
            return super().rsample(sample_shape)
        shape = tuple(torch.Size(sample_shape) + self.batch_shape + self.event_shape)
        eps = self.noise(shape, self.loc.dtype, self.loc.device)
        return self.loc + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def expand(self, batch_shape, _instance=None) -> FullNormal:
        shape = torch.Size(batch_shape)
        loc = self.loc.expand(shape + self.event_shape)
        tril = self.scale_tril.expand(shape + self.event_shape + self.event_shape)
        return FullNormal(loc, tril, self.noise)


def full_normal(
    loc: torch.Tensor, log_var: torch.Tensor, lower: torch.Tensor, noise: Noise | None = None
) -> FullNormal:
    """q = N(loc, L L^T) from an encoder's ``loc``, ``log_var`` ``(*batch, D)`` and ``lower``
    ``(*batch, D(D - 1)/2)``: L's diagonal is exp(bounded_log_var(log_var) / 2), its strictly
    lower entries are ``lower`` row by row (``torch.tril_indices(D, D, -1)``'s order)."""
    d = loc.shape[-1]
    rows, cols = torch.tril_indices(d, d, offset=-1, device=loc.device)
    tril = loc.new_zeros(*loc.shape, d)
    tril[..., rows, cols] = lower
    scale = torch.exp(0.5 * bounded_log_var(log_var))
    return FullNormal(loc, tril + torch.diag_embed(scale), noise)


# --- the inverse autoregressive flow ---------------------------------------------------------


def iaf_flow(z: torch.Tensor, context: torch.Tensor, steps) -> tuple[torch.Tensor, torch.Tensor]:
    """z_T and sum_t log sigma_t per dimension, each ``(*sample, *batch, D)``, for z_0 = ``z``
    through the MADEs ``steps`` with the context ``context`` ``(*batch, H)`` (module docstring)."""
    log_det = torch.zeros_like(z)
    for made in steps:
        m, s = made(z, context).unbind(-2)
        s = s + SIGMOID_BIAS
        gate = torch.sigmoid(s)
        z = gate * z + (1 - gate) * m
        log_det = log_det + F.logsigmoid(s)
    return z, log_det


class InverseAutoregressiveFlow(Distribution):
    """q(z | x) of the inverse autoregressive flow (module docstring): batch ``(*batch,)``,
    event ``(D,)``.

    The flow is cheap one way only: z_T from z_0 is T passes of the MADEs, z_0 from z_T would
    take D passes per step. So, as is standard, log q is known at the draws q made:
    :meth:`sample_and_log_prob` returns them together (what an estimator that keeps its own
    draws, slicing and concatenating them, calls), and ``rsample``/``sample`` remember log q
    of the tensors they return, so ``log_prob(z)`` answers for those very tensors (with their
    gradient: the ELBO's Monte Carlo KL). Any other z raises :class:`VaelabError`.

    ``steps``: the MADEs, any callables ``(z, context) -> (*, 2, D)`` (one network for the
    batch, or a copy per row: :class:`vaelab.core.made.MADECopies`).

    ``mean`` and ``stddev`` are not E_q[z] and its standard deviation, which have no closed
    form: they are the flow linearised at eps = 0 (the delta method), T(mu) and
    sqrt diag(J diag(sigma^2) J^T), J = dT/dz_0 at mu, ``(*batch, D)`` each.
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: DiagonalNormal, context: torch.Tensor, steps):
        self.base, self.context, self.steps = base, context, steps
        # the latest draws: (z, log q per dimension)
        self._draws: list[tuple[torch.Tensor, torch.Tensor]] = []
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008
        """z_T ``(*sample_shape, *batch, D)``, reparameterized: eps from the base's noise."""
        z0 = self.base.rsample(sample_shape)
        z, log_det = iaf_flow(z0, self.context, self.steps)
        per_dim = self.base.base_dist.log_prob(z0) - log_det
        self._draws = [*self._draws[-(KEPT_DRAWS - 1) :], (z, per_dim)]
        return z

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008
        """z_T ``(*sample_shape, *batch, D)`` without gradient."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def sample_and_log_prob(self, sample_shape=torch.Size()):  # noqa: B008
        """z_T ``(*sample_shape, *batch, D)`` and log q(z_T | x) ``(*sample_shape, *batch)``,
        without gradient: the draws with their density, which the flow gives only together."""
        with torch.no_grad():
            z = self.rsample(sample_shape)
            return z, self._draws[-1][1].sum(-1)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_0,d ; mu_d, sigma_d^2) - sum_t log sigma_{t,d} ``(*sample, *batch, D)`` for
        a draw ``z`` just returned by ``rsample``/``sample``: the terms of log q(z | x) by
        dimension, which sum to it (:func:`vaelab.core.kl.kl_per_dim`)."""
        for draw, per_dim in reversed(self._draws):
            if z is draw:
                return per_dim
        raise self._unknown()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z | x) ``(*sample, *batch)`` at draws of this q (class docstring)."""
        for draw, per_dim in reversed(self._draws):
            if z is draw:
                return per_dim.sum(-1)
        raise self._unknown()

    @staticmethod
    def _unknown() -> VaelabError:
        return VaelabError(
            "--posterior iaf: log q(z|x) is known only at the draws q itself made (the flow "
            "is not inverted); take them with sample_and_log_prob, or use AIS from the prior"
        )

    @property
    def mean(self) -> torch.Tensor:
        """T(mu): the flow applied to the base's mean (z at eps = 0), not E_q[z]."""
        return iaf_flow(self.base.mean, self.context, self.steps)[0]

    @property
    def variance(self) -> torch.Tensor:
        """diag(J diag(sigma^2) J^T), J = dT/dz_0 at mu: the delta method's variance."""
        batch = tuple(range(len(self.batch_shape)))

        def summed(z0: torch.Tensor) -> torch.Tensor:
            # the rows' flows are separate, so the Jacobian of the sum over rows holds each
            # row's own J (without splitting the batch: the MADEs may be one copy per row)
            return iaf_flow(z0, self.context, self.steps)[0].sum(batch)

        jac = torch.func.jacrev(summed)(self.base.mean)  # (D_out, *batch, D_in)
        jac = jac.movedim(0, -2)  # (*batch, D_out, D_in)
        return (jac.pow(2) * self.base.variance.unsqueeze(-2)).sum(-1)


class DiagonalPosterior(nn.Module):
    """q = N(loc, diag exp(log_var)) (:func:`~vaelab.core.gaussian.diagonal_normal`)."""

    family = "diagonal"
    extra = 0

    def forward(self, loc, log_var, noise: Noise | None = None) -> DiagonalNormal:
        return diagonal_normal(loc, log_var, noise)


class FullPosterior(nn.Module):
    """q = N(loc, L L^T) (:func:`full_normal`); the encoder emits L's D(D - 1)/2 entries
    below the diagonal."""

    family = "full"

    def __init__(self, latent_dim: int):
        super().__init__()
        self.extra = latent_dim * (latent_dim - 1) // 2

    def forward(self, loc, log_var, lower, noise: Noise | None = None) -> FullNormal:
        return full_normal(loc, log_var, lower, noise)


class IAFPosterior(nn.Module):
    """q = the diagonal Gaussian through ``steps`` IAF steps, each a :class:`MADE` of hidden
    widths ``hidden`` reading z and the encoder's context h (D numbers); the orders of the
    dimensions alternate 1 .. D and D .. 1 (Kingma et al. 2016's reversal between steps)."""

    family = "iaf"

    def __init__(self, latent_dim: int, steps: int, hidden: list[int]):
        super().__init__()
        self.extra = latent_dim  # the context h
        forward_order = torch.arange(1, latent_dim + 1, device="cpu")  # see MADE
        self.steps = nn.ModuleList(
            MADE(latent_dim, hidden, context=latent_dim, n_out=2,
                 order=forward_order if t % 2 == 0 else forward_order.flip(0))
            for t in range(steps)
        )  # fmt: skip

    def forward(self, loc, log_var, context, noise: Noise | None = None):
        return InverseAutoregressiveFlow(diagonal_normal(loc, log_var, noise), context, self.steps)
