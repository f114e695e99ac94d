"""The two-stochastic-layer VAE of Burda et al. (2015): z2 -> z1 -> x.

    p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1),   p(z2) = N(0, I)
    q(z1, z2 | x) = q(z1 | x) q(z2 | z1)

with every conditional a diagonal Gaussian whose parameters an MLP computes. The two
layers travel together as one latent vector z = (z1, z2) of ``D1 + D2`` dimensions: the
posterior and the prior are distributions over that vector (``rsample``, ``sample``,
``log_prob``), so the ELBO, the IWAE bound, importance-sampled log p(x) and sampling all run
unchanged, with the KL estimated by Monte Carlo:

    ELBO(x) = E_q[log p(x | z1) + log p(z1 | z2) + log p(z2) - log q(z1 | x) - log q(z2 | z1)]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Normal, constraints

from .gaussian import Noise, diagonal_normal, rsample_normal
from .model import VAE
from .networks import mlp


def _gaussian(net: nn.Module, h: torch.Tensor) -> Normal:
    """N(loc, diag exp(log_var)) per dimension, ``(loc, log_var) = net(h)``."""
    return diagonal_normal(*net(h).chunk(2, dim=-1)).base_dist


class _TwoLayer(Distribution):
    """A distribution over z = (z1, z2), ``(*sample, *batch, D1 + D2)``, built as
    ``first`` (a Normal over one layer) then ``second(layer) -> Normal`` over the other.
    ``order`` says which layer comes first: ``"z1"`` for q, ``"z2"`` for p. ``rsample`` draws
    both layers' eps from ``noise`` when one is given (:mod:`vaelab.core.gaussian`)."""

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, first: Normal, second, d1: int, order: str, noise: Noise | None = None):
        self.first, self.second, self.d1, self.order = first, second, d1, order
        self.noise = noise
        batch = first.loc.shape[:-1]
        d = first.loc.shape[-1] + self._other_dim()
        super().__init__(batch_shape=batch, event_shape=torch.Size([d]), validate_args=False)

    def _other_dim(self) -> int:
        return self.second.out_dim

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = z[..., : self.d1], z[..., self.d1 :]
        return (z1, z2) if self.order == "z1" else (z2, z1)

    def _join(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        parts = (first, second) if self.order == "z1" else (second, first)
        return torch.cat(parts, -1)

    def expand(self, batch_shape, _instance=None) -> _TwoLayer:
        """The same distribution repeated over ``batch_shape`` (AIS starts from the prior
        with one chain set per example)."""
        shape = torch.Size(batch_shape) + self.first.loc.shape[-1:]
        first = Normal(self.first.loc.expand(shape), self.first.scale.expand(shape))
        return _TwoLayer(first, self.second, self.d1, self.order, self.noise)

    def rsample(self, sample_shape=()) -> torch.Tensor:
        a = rsample_normal(self.first, tuple(sample_shape), self.noise)
        b = rsample_normal(self.second(a), (), self.noise)
        return self._join(a, b)

    def sample(self, sample_shape=()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log-density of each coordinate given its parents, ``(*, D1 + D2)``: sums to
        ``log_prob``."""
        a, b = self._split(z)
        return self._join(self.first.log_prob(a), self.second(a).log_prob(b))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.log_prob_per_dim(z).sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The first layer's mean, and the second's given that mean (a summary, not
        E[z2], which has no closed form)."""
        loc = self.first.loc
        return self._join(loc, self.second(loc).loc)

    @property
    def stddev(self) -> torch.Tensor:
        """Standard deviations in the same sense as :attr:`mean`."""
        return self._join(self.first.scale, self.second(self.first.loc).scale)


class Conditional(nn.Module):
    """h ``(*, n_in)`` -> Normal over ``out_dim`` dimensions, through an MLP."""

    def __init__(self, n_in: int, hidden: list[int], out_dim: int, activation: str):
        super().__init__()
        self.out_dim = out_dim
        self.net = mlp([n_in, *hidden, 2 * out_dim], activation)

    def forward(self, h: torch.Tensor) -> Normal:
        return _gaussian(self.net, h)


class TwoLayerPrior(nn.Module):
    """p(z1, z2) = N(z2 ; 0, I) p(z1 | z2), as a distribution over (z1, z2)."""

    def __init__(self, d1: int, d2: int, hidden: list[int], activation: str):
        super().__init__()
        self.d1, self.d2 = d1, d2
        self.latent_dim = d1 + d2
        self.p_z1 = Conditional(d2, hidden, d1, activation)
        self.register_buffer("zero", torch.zeros(d2), persistent=False)

    def forward(self) -> Distribution:
        top = Normal(self.zero, torch.ones_like(self.zero), validate_args=False)
        return _TwoLayer(top, self.p_z1, self.d1, order="z2")


class FirstLayerDecoder(nn.Module):
    """The decoder reads z1 only: ``z (*, D1 + D2) -> decoder(z[..., :D1])``."""

    def __init__(self, decoder: nn.Module, d1: int):
        super().__init__()
        self.decoder, self.d1 = decoder, d1

    @property
    def output(self):
        return getattr(self.decoder, "output", None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z[..., : self.d1])


class HierarchicalVAE(VAE):
    """Two stochastic layers (Burda et al. 2015, section 5): ``latent_dim`` = D1 units in
    z1 and ``latent_dim_2`` = D2 in z2; ``hidden`` are the MLP layers between x and z1,
    ``hidden_2`` those between z1 and z2 (both directions). ``model.latent_dim`` is D1 + D2,
    and z is the concatenation (z1, z2) everywhere. Built from a config by
    :func:`vaelab.build.build_model`, which adds ``q_z2``, the MLP of q(z2 | z1)."""

    def q_z(self, x: torch.Tensor) -> Distribution:
        """q(z1 | x) q(z2 | z1): batch shape ``(B,)``, event ``(D1 + D2,)``."""
        # q(z1 | x), per dimension
        first = diagonal_normal(*self.network(self.encoder, x)).base_dist
        return _TwoLayer(first, self.q_z2, self.prior.d1, "z1", self.noise)
