"""Schedules of the training loop: the learning rate and the KL weight beta over a run."""

from __future__ import annotations

import math

from ..config import Config


def lr_factor(config: Config, step: int, total_steps: int, elapsed: float) -> float:
    """The learning rate's multiplier: 1, or a cosine from 1 to 0 over the budget
    (``minutes``, measured by ``elapsed`` seconds) when there is one, else over the
    ``total_steps`` of ``epochs``."""
    if config.lr_schedule == "constant":
        return 1.0
    if config.minutes:
        progress = elapsed / (60.0 * config.minutes)
    else:
        progress = step / total_steps
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def kl_weight(config: Config, epoch_progress: float) -> float:
    """beta, ramped linearly from 0 over the first ``kl_warmup`` epochs (``epoch_progress``
    counts epochs done, fractionally); or, with ``kl_schedule = "cyclical"``, times
    :func:`cyclical` over the run's ``epochs``."""
    if config.kl_schedule == "cyclical":
        return config.beta * cyclical(epoch_progress / config.epochs, config.kl_cycles)
    if config.kl_warmup == 0:
        return config.beta
    return config.beta * min(1.0, epoch_progress / config.kl_warmup)


def cyclical(progress: float, cycles: int, ramp: float = 0.5) -> float:
    """Cyclical KL annealing (Fu et al. 2019): the run, ``progress`` in [0, 1], is cut into
    ``cycles`` equal cycles; within each, the weight rises linearly from 0 to 1 over the
    first ``ramp`` of the cycle and stays at 1 for the rest.

        w(t) = min(1, tau / R),  tau = (t M) mod 1
    """
    tau = (progress * cycles) % 1.0
    return min(1.0, tau / ramp)
