"""A small linear-Gaussian VAE with a known posterior, shared by the inference tests."""

from __future__ import annotations

import pytest
import torch

from vaelab import Config
from vaelab.build import build_model

P, D, SIGMA = 6, 2, 0.5


def linear_gaussian_model(n: int = 40, seed: int = 0, sigma: float = SIGMA):
    """(model, x): x = W z + b + noise, float64, with orthogonal columns of W (scaled 3 and 2)
    so the exact posterior p(z | x) is a diagonal Gaussian, inside the mean-field family."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the encoder's initial weights, whatever ran before
        torch.manual_seed(seed)
        config = Config(arch="linear", likelihood="gaussian", latent_dim=D, sigma=sigma)
        model = build_model(config, (1, 1, P)).double()
    q, _ = torch.linalg.qr(torch.randn(P, D, generator=gen, dtype=torch.float64))
    weight = q * torch.tensor([3.0, 2.0], dtype=torch.float64)
    bias = torch.randn(P, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        model.decoder.output.weight.copy_(weight)
        model.decoder.output.bias.copy_(bias)
    z = torch.randn(n, D, generator=gen, dtype=torch.float64)
    x = z @ weight.T + bias + sigma * torch.randn(n, P, generator=gen, dtype=torch.float64)
    return model.eval(), x.view(n, 1, 1, P)


def decoder_params(model):
    """(W, b, sigma) of the model's decoder, for :mod:`vaelab.core.baselines`."""
    out = model.decoder.output
    return out.weight.detach(), out.bias.detach(), model.likelihood.log_scale.exp().flatten()


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is many times faster than two fighting over busy
    cores (tens of times, measured, while other test runs share the machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
