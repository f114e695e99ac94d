"""The diagonal Gaussian, vaelab's default family of q(z | x) and the base of the others
(:mod:`vaelab.core.posteriors`), and how it is sampled.

    q(z) = N(z ; loc, diag scale^2),   scale = exp(log_var / 2),   event shape ``(D,)``

:func:`diagonal_normal` is the one constructor from an encoder's ``(loc, log_var)``; its
log-variance passes through :func:`bounded_log_var` first. :func:`reparameterize` is the
reparameterization trick written out, z = loc + scale * eps, eps ~ N(0, I).

A sampler draws eps from torch's global generator, unless it is given a ``noise`` source,
``noise(shape, dtype, device) -> eps``: data-parallel training hands each rank one that draws
the whole global batch's eps and keeps the rank's rows (:mod:`vaelab.training.distributed`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Independent, Normal

# eps of a given shape, dtype and device: torch's own draw unless a training step says else
Noise = Callable[[tuple[int, ...], torch.dtype, torch.device], torch.Tensor]

LOG_VAR_BOUND = 20.0  # q's variances lie in (e^-20, e^20): standard deviations 4.5e-5 .. 2.2e4
LOG_VAR_LINEAR = 10.0  # inside (-10, 10) the encoder's log-variance is used exactly as it is


def bounded_log_var(
    raw: torch.Tensor, bound: float = LOG_VAR_BOUND, linear: float = LOG_VAR_LINEAR
) -> torch.Tensor:
    """log sigma^2 kept in (-bound, bound) by construction:

        f(r) = r                                                  for |r| <= a
        f(r) = sign(r) (a + (L - a) tanh((|r| - a) / (L - a)))    beyond,   a = linear, L = bound

    f is the identity in the working range, so no model changes there; beyond it f bends
    smoothly (continuous slope, 1 at |r| = a) towards +-L, so a diverging encoder cannot make
    sigma overflow to inf or underflow to 0, which would turn log q(z|x) into NaN. Not a clamp:
    f is strictly increasing and its slope only tends to 0.
    """
    excess = raw.abs() - linear
    width = bound - linear
    bent = torch.sign(raw) * (linear + width * torch.tanh(excess.clamp(min=0.0) / width))
    return torch.where(excess > 0, bent, raw)


def standard_normal(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """eps ~ N(0, I) of ``shape`` from the global generator, drawn as torch.distributions
    draws it (so a sampler with or without a noise source takes the same numbers)."""
    return torch.empty(shape, dtype=dtype, device=device).normal_()


def rsample_normal(normal: Normal, sample_shape=(), noise: Noise | None = None) -> torch.Tensor:
    """z = loc + eps * scale, ``(*sample_shape, *loc.shape)``: ``normal.rsample`` itself when
    ``noise`` is None, else with eps from ``noise``."""
    if noise is None:
        return normal.rsample(sample_shape)
    eps = noise((*sample_shape, *normal.loc.shape), normal.loc.dtype, normal.loc.device)
    return normal.loc + eps * normal.scale


class DiagonalNormal(Independent):
    """N(loc, diag scale^2) over the last dimension: ``Independent(Normal(loc, scale), 1)``
    (``.mean``, ``.stddev``, ``.log_prob`` as torch's), whose ``rsample`` takes its eps from
    ``noise`` when one is given. ``loc``, ``scale``: ``(*batch, D)``."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, noise: Noise | None = None):
        super().__init__(Normal(loc, scale, validate_args=False), 1)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008
        return rsample_normal(self.base_dist, tuple(sample_shape), self.noise)

    def expand(self, batch_shape, _instance=None) -> DiagonalNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        base = self.base_dist
        return DiagonalNormal(base.loc.expand(shape), base.scale.expand(shape), self.noise)


def diagonal_normal(
    loc: torch.Tensor, log_var: torch.Tensor, noise: Noise | None = None
) -> DiagonalNormal:
    """q = N(loc, diag exp(bounded_log_var(log_var))), the Gaussian an encoder's (or a
    per-datapoint posterior's) ``(loc, log_var)`` ``(*batch, D)`` stand for."""
    return DiagonalNormal(loc, torch.exp(0.5 * bounded_log_var(log_var)), noise)


def reparameterize(loc: torch.Tensor, log_var: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """z = loc + exp(log_var / 2) * eps, eps ~ N(0, I): a sample of N(loc, diag exp(log_var)).

    Differentiable in ``loc`` and ``log_var``. Shape ``(B, D)``, or ``(k, B, D)`` when ``k``
    is given.
    """
    shape = loc.shape if k is None else (k, *loc.shape)
    eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
    return loc + torch.exp(0.5 * log_var) * eps
