"""The guarded optimizer step: the weights move only when the loss and every gradient are
finite; and each step's share of the epoch's metric sums (:func:`step_sums`).

One non-finite batch (an overflow, a corrupt example) would otherwise write NaN into every
weight and Adam's moments for good. The check is one fused pass over all gradients, and the
skip is decided on the device where fused Adam is available (its ``found_inf`` input), so
the training loop never waits on the host for it.
"""

from __future__ import annotations

import torch


def all_finite(loss: torch.Tensor, grads: list[torch.Tensor | None]) -> torch.Tensor:
    """A 0-dim bool tensor, on the loss's device: the scalar ``loss`` and every element of
    every gradient in ``grads`` (``None`` entries are skipped) are finite.

    Uses the fused check that mixed-precision training runs on its gradients
    (``torch._amp_foreach_non_finite_check_and_unscale_`` with a scale of exactly 1, which
    leaves the values as they are): one kernel for all tensors, about a tenth of the cost of
    ``isfinite(g).all()`` per tensor. Falls back to that where the fused check is missing.
    """
    grads = [g for g in grads if g is not None]
    finite = torch.isfinite(loss)
    if not grads:
        return finite
    found = torch.zeros(1, device=grads[0].device)
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones_like(found))
    except (AttributeError, NotImplementedError, RuntimeError):  # a device or dtype without it
        return torch.stack([finite] + [torch.isfinite(g).all() for g in grads]).all()
    return finite & (found[0] == 0)


def guarded_step(optimizer: torch.optim.Optimizer, finite: torch.Tensor, fused: bool) -> None:
    """``optimizer.step()`` only if ``finite`` (from :func:`all_finite`): decided on the
    device by a fused Adam, else by one host synchronisation."""
    if fused:
        optimizer.found_inf = (~finite).float()
        optimizer.step()
    elif finite.item():
        optimizer.step()


def step_sums(loss: torch.Tensor, terms, b: int, counted: torch.Tensor) -> torch.Tensor:
    """One step's share of the epoch's running sums, float64 on the loss's device: (loss * b,
    sum of the ELBO, of the reconstruction, of the KL over the ``b`` rows, b); all zero
    unless ``counted`` (0-dim bool: the step was finite and its rows are real). No host
    synchronisation."""
    values = torch.stack(
        [
            loss.detach() * b,
            # the ELBO itself, also under the IWAE objective (whose loss is -L_K)
            (terms.reconstruction - terms.kl).detach().sum(),
            terms.reconstruction.detach().sum(),
            terms.kl.detach().sum(),
            torch.tensor(float(b), device=loss.device),
        ]
    ).double()
    return torch.where(counted, values, torch.zeros_like(values))
