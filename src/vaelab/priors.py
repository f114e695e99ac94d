"""Modules that return the prior p(z) as a distribution with event shape ``(latent_dim,)``."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal


class StandardNormal(nn.Module):
    """p(z) = N(0, I) in ``latent_dim`` dimensions (buffers, so it follows ``.to(device)``)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1)
