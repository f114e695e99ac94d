"""FactorVAE's discriminator in training: its own Adam (lr 1e-4, betas (0.5, 0.9), Kim &
Mnih's), one guarded step after each step of the VAE (:meth:`Critic.step`)."""

from __future__ import annotations

import torch

from ..objectives.factor_vae import HIDDEN, Discriminator, discriminator_loss
from .guard import all_finite, guarded_step

LR = 1e-4
BETAS = (0.5, 0.9)


class Critic:
    """The discriminator and its Adam, stepped once per training batch by :meth:`step`."""

    def __init__(
        self, n_latent: int, device: torch.device | str = "cpu", hidden: tuple[int, ...] = HIDDEN
    ):
        self.discriminator = Discriminator(n_latent, hidden).to(device)
        fused = torch.device(device).type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=LR, betas=BETAS, fused=fused or None
        )
        self.fused = fused

    @torch.no_grad()
    def _codes(self, model, x: torch.Tensor) -> torch.Tensor:
        return model.q_z(x).sample()  # (B, D)

    def step(self, model, x: torch.Tensor) -> torch.Tensor:
        """One Adam step of D on fresh codes z ~ q(z | x) of the batch ``x`` (drawn after the
        VAE's step) and their permutation; returns the loss before the step. A non-finite loss
        or gradient leaves D unchanged."""
        z = self._codes(model, x)
        loss = discriminator_loss(self.discriminator, z)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.discriminator.parameters()]
        guarded_step(self.optimizer, all_finite(loss, grads), self.fused)
        return loss.detach()
