"""Modules that return the prior p(z) as a distribution with event shape ``(latent_dim,)``.

Each has a ``latent_dim``. The standard normal is fixed; the mixture of Gaussians and the
VampPrior are learned with the model and return a ``MixtureSameFamily`` whose components
are diagonal Gaussians (``.mean``, ``.variance``, ``.sample`` and ``.log_prob`` as usual;
``.sample`` is not reparameterized, which only the KL's Monte Carlo estimate would need,
and that samples from q).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, MixtureSameFamily

from .gaussian import DiagonalNormal, diagonal_normal


class StandardNormal(nn.Module):
    """p(z) = N(0, I) in ``latent_dim`` dimensions (buffers, so it follows ``.to(device)``)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return DiagonalNormal(self.loc, self.scale)


class GaussianMixture(MixtureSameFamily):
    """A mixture of K diagonal Gaussians in D dimensions whose ``log_prob`` costs two
    matrix products instead of a ``(*, K, D)`` tensor of differences:

        sum_d (z_d - mu_kd)^2 / s_kd^2 = z^2 . s_k^-2 - 2 z . (mu_k s_k^-2) + mu_k^2 . s_k^-2

    (the VampPrior's K = 500 made the elementwise form most of a training step). The
    products run in float64, so the expansion's cancellation costs nothing. Components with
    batch dimensions of their own (after ``expand``) take torch's general path.
    """

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        normal = self.component_distribution.base_dist
        if normal.loc.dim() != 2:
            return super().log_prob(z)
        loc, scale = normal.loc.double(), normal.scale.double()  # (K, D)
        precision = scale.pow(-2)
        zd = z.double()
        quad = (zd * zd) @ precision.T - 2 * zd @ (loc * precision).T
        quad = quad + (loc * loc * precision).sum(-1)  # (*, K)
        log_norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        log_weights = torch.log_softmax(self.mixture_distribution.logits.double(), -1)
        return torch.logsumexp(log_weights - 0.5 * quad - log_norm, -1).to(z.dtype)

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """z ~ p(z), ``(*sample_shape, D)``: a component k ~ Categorical(pi) for each draw,
        then z = mu_k + sigma_k * eps with eps ~ N(0, I) ``(*sample_shape, D)``.

        torch's ``MixtureSameFamily.sample`` draws from all K components and keeps one: a
        ``(*sample_shape, K, D)`` tensor, 800 MB for the 10,000 draws of a VampPrior (K = 500,
        D = 40) that the plots' manifold takes, the peak of a whole mnist-vamp run. Not
        reparameterized, as torch's is not. Components with batch dimensions of their own
        (after ``expand``) take torch's general path.
        """
        normal = self.component_distribution.base_dist
        if normal.loc.dim() != 2:
            return super().sample(sample_shape)
        with torch.no_grad():
            k = self.mixture_distribution.sample(sample_shape)  # (*sample_shape,)
            loc = normal.loc
            eps = torch.randn(k.shape + loc.shape[-1:], dtype=loc.dtype, device=loc.device)
            return loc[k] + normal.scale[k] * eps


class MixtureOfGaussians(nn.Module):
    """p(z) = sum_k pi_k N(z ; mu_k, diag sigma_k^2), K components, every parameter learned.

    ``logits`` ``(K,)`` give pi = softmax(logits); ``loc`` and ``log_var`` are ``(K, D)``.
    The means start as draws from N(0, I), the variances at 1 and the weights equal, so the
    prior starts spread over the region the standard normal covers.
    """

    def __init__(self, latent_dim: int, n_components: int = 10):
        super().__init__()
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.loc = nn.Parameter(torch.randn(n_components, latent_dim))
        self.log_var = nn.Parameter(torch.zeros(n_components, latent_dim))

    def forward(self) -> Distribution:
        components = DiagonalNormal(self.loc, torch.exp(0.5 * self.log_var))
        return GaussianMixture(Categorical(logits=self.logits), components)


class VampPrior(nn.Module):
    """The variational mixture of posteriors (Tomczak & Welling 2018):

        p(z) = (1/K) sum_k q(z | u_k),   u_k learned pseudo-inputs of the data's shape

    ``q`` is the model's own encoder, so the prior moves with it. ``pseudo_inputs`` is a
    parameter ``(K, *x_shape)``, initialised at N(0.5, 0.01^2) (or from ``init``, e.g. K
    random training examples). Each call runs the encoder on the K pseudo-inputs: call
    ``p_z()`` once per batch and reuse it. The KL to it has no closed form; the objectives
    estimate it by Monte Carlo.

    The encoder is held by reference, not as a submodule: it belongs to the model, and its
    weights must appear once in the state dict (safetensors refuses shared tensors).
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_components: int,
        x_shape: tuple[int, ...],
        latent_dim: int,
        init: torch.Tensor | None = None,
    ):
        super().__init__()
        self.__dict__["encoder"] = encoder  # a reference: not registered as a submodule
        self.latent_dim = latent_dim
        if init is None:
            init = 0.5 + 0.01 * torch.randn(n_components, *x_shape)
        self.pseudo_inputs = nn.Parameter(init.detach().clone().float())

    def forward(self) -> Distribution:
        loc, log_var = self.encoder(self.pseudo_inputs)
        components = diagonal_normal(loc, log_var)  # the same q(z | x) as the model's q_z
        uniform = torch.zeros(len(loc), dtype=loc.dtype, device=loc.device)
        return GaussianMixture(Categorical(logits=uniform), components)


# K when --prior-components is 0: 10 mixture components; 500 pseudo-inputs, the VampPrior
# paper's choice for MNIST
DEFAULT_COMPONENTS = {"mog": 10, "vamp": 500}
