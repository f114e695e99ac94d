"""The guarded optimizer step: the weights move only when the loss and every gradient are
finite; and each step's share of the epoch's metric sums (:func:`step_sums`).

One non-finite batch (an overflow, a corrupt example) would otherwise write NaN into every
weight and Adam's moments for good. The skip is decided on the device where fused Adam is
available (its ``found_inf`` input, which GradScaler also sets), so the training loop never
waits on the host for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import VaelabError


def all_finite(loss: torch.Tensor, grads: list[torch.Tensor | None]) -> torch.Tensor:
    """A 0-dim bool tensor, on the loss's device: the scalar ``loss`` and every gradient in
    ``grads`` (``None`` entries are skipped) are finite.

    One sum per gradient, then one check of the stacked sums: a NaN or an infinity anywhere
    in a tensor makes its sum non-finite. Public calls only, and as cheap as the fused check
    mixed precision uses (docs/benchmarks.md). A gradient of finite values whose sum
    overflows float32 (above 3.4e38) counts as non-finite too: such a step is divergence
    all the same.
    """
    values = [loss.detach().reshape(())] + [g.sum() for g in grads if g is not None]
    return torch.isfinite(torch.stack(values)).all()


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


MAX_BAD_STEPS = 10  # batches with a non-finite loss or gradient a run may skip before it stops


class BadSteps:
    """Counts the skipped (non-finite) steps into ``state.bad`` and stops the run once
    :data:`MAX_BAD_STEPS` have been skipped, with the last checkpoint in ``checkpoints``
    intact."""

    def __init__(self, state, checkpoints: Path, log: Callable[[str], None]):
        self.state, self.checkpoints, self.log = state, checkpoints, log

    def check(self, pending: list[tuple[int, torch.Tensor]], epoch: int) -> None:
        """Log the skipped steps among ``pending`` ``(step, finite)`` pairs: one host sync."""
        if not pending:
            return
        flags = torch.stack([finite for _, finite in pending]).cpu().tolist()
        for (step, _), ok in zip(pending, flags, strict=True):
            if ok:
                continue
            self.state.bad += 1
            self.log(
                f"vaelab: epoch {epoch} step {step + 1}: non-finite loss or gradient; "
                f"batch skipped, weights unchanged ({self.state.bad} so far)"
            )
            if self.state.bad >= MAX_BAD_STEPS:
                raise VaelabError(
                    f"training diverged at epoch {epoch}, step {step + 1}: "
                    f"{self.state.bad} batches gave a non-finite loss or gradient. "
                    f"{checkpoint_status(self.checkpoints)}; lower --lr, or check the data"
                )

    def check_elbo(self, train_elbo: float, epoch: int, lr: float) -> None:
        """Stop a run whose train ELBO, finite as it may be, has fallen far below the untrained
        model's (``state.start_elbo``, the first batch's before any step): by more than ten
        times its size, and at least :data:`DIVERGED_NATS`. A healthy run rises from there."""
        start = self.state.start_elbo
        if math.isfinite(start) and train_elbo < start - max(10 * abs(start), DIVERGED_NATS):
            raise VaelabError(
                f"training diverged by epoch {epoch}: the train ELBO fell to {train_elbo:.4g} "
                f"nats from the untrained model's {start:.4g}. "
                f"{checkpoint_status(self.checkpoints)}; start again with a lower --lr "
                f"(this run's: {lr:g}), or check the data"
            )


DIVERGED_NATS = 100.0


def checkpoint_status(checkpoints: Path) -> str:
    """Whether the run left a checkpoint to resume from, in words."""
    last = checkpoints / "last.safetensors"
    if last.is_file():
        return f"The last checkpoint, {last}, is intact"
    return "No checkpoint was written yet"
