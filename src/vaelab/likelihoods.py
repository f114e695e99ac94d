"""Decoder output -> a distribution p(x | z) over whole examples.

Each likelihood is a module that takes the decoder's output, shape ``(*batch, *x_shape)``,
and returns a ``torch.distributions`` object whose event shape is ``x_shape``: its
``log_prob(x)`` already sums over every pixel (nats per example).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .errors import VaelabError


class BernoulliLikelihood(nn.Module):
    """p(x | z) = prod_i Bernoulli(x_i ; sigmoid(logits_i)); the decoder emits logits.

    For binary (or binarized) data. ``log_prob`` is minus the binary cross-entropy with
    logits, computed stably from the logits, never from a sigmoid.
    """

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, logits: torch.Tensor) -> Distribution:
        return Independent(Bernoulli(logits=logits, validate_args=False), len(self.x_shape))

    @staticmethod
    def mean(out: torch.Tensor) -> torch.Tensor:
        """E[x | z] = sigmoid(logits): what plots show as the decoded image."""
        return torch.sigmoid(out)


class GaussianLikelihood(nn.Module):
    """p(x | z) = prod_i N(x_i ; mu_i, sigma_i^2); the decoder emits the means mu.

    ``sigma`` is fixed, or (``learn_sigma``) learned: one sigma per output dimension, stored
    as ``log_scale`` of shape ``x_shape``, or (``shared``) one for all, shape ``()``; either is
    initialised at log(sigma).
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        sigma: float = 0.1,
        learn_sigma: bool = False,
        shared: bool = False,
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        log_scale = torch.full(() if shared else self.x_shape, math.log(sigma))
        if learn_sigma:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self, loc: torch.Tensor) -> Distribution:
        scale = self.log_scale.exp().expand_as(loc)
        return Independent(Normal(loc, scale, validate_args=False), len(self.x_shape))

    @staticmethod
    def mean(out: torch.Tensor) -> torch.Tensor:
        return out


def make_likelihood(
    name: str, x_shape: tuple[int, ...], sigma: float, learn_sigma: bool, shared_sigma: bool
):
    if name == "bernoulli":
        return BernoulliLikelihood(x_shape)
    if name == "gaussian":
        return GaussianLikelihood(
            x_shape, sigma=sigma, learn_sigma=learn_sigma, shared=shared_sigma
        )
    raise VaelabError(
        f"likelihood {name!r} is chosen from the data when training; to build a model "
        "directly, name it: bernoulli or gaussian"
    )
