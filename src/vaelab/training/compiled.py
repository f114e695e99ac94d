"""The training objective through ``torch.compile``: when it pays, and how it falls back.

The compiled function is the same :func:`vaelab.build.batch_terms`, traced once for the
run's batch shape; its backward is compiled with it. What changes is only how the work is
done: the elementwise steps (the reparameterization, the Bernoulli log-density over every
pixel, the closed-form KL, their gradients) become a few fused loops instead of dozens of
separate kernels, each with its own pass over memory and its own dispatch cost.

Inductor draws its random numbers from torch's own generator (its ``fallback_random``
option), so a compiled step takes the same noise as the eager step from the same seed: a
run's numbers do not depend on whether it was compiled, beyond float rounding.

``--compile auto`` (the default) compiles where it pays: on a CUDA device, one process, an
encoder-amortized objective without FactorVAE's discriminator, and a run of at least
:data:`MIN_STEPS` steps or :data:`MIN_MINUTES` minutes, which repays the start-up cost. On the
CPU the compiled step measured no faster than the eager one beyond the noise
(docs/benchmarks.md), so ``auto`` does not compile there. ``--compile on`` compiles wherever
it can; ``off`` never. When compilation fails, one line says so and the run goes on eagerly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..device import fork_rng

MIN_STEPS = 20_000  # a run this long repays the start-up cost of compiling
MIN_MINUTES = 10.0


def unsupported(config, device: torch.device, world_size: int) -> str:
    """Why this run cannot be compiled, or ``""`` when it can."""
    if world_size > 1:
        return "several processes (torchrun) run uncompiled"
    if device.type not in ("cpu", "cuda"):
        return f"torch.compile is not used on {device.type}"
    if config.inference != "amortized":
        return f"--inference {config.inference} runs uncompiled"
    if config.factor_gamma:
        return "--factor-gamma runs uncompiled (its discriminator steps between batches)"
    return ""


def wanted(config, device: torch.device, world_size: int, total_steps: int) -> tuple[bool, str]:
    """``(compile?, why not)`` for ``config.compile`` = auto | on | off. The reason is for a
    user who asked for ``on`` and is not getting it; ``auto`` declines silently."""
    if config.compile == "off":
        return False, ""
    reason = unsupported(config, device, world_size)
    if reason:
        return False, reason if config.compile == "on" else ""
    if config.compile == "on":
        return True, ""
    if device.type != "cuda":  # on the CPU it measured no faster (docs/benchmarks.md)
        return False, ""
    long = config.minutes >= MIN_MINUTES if config.minutes else total_steps >= MIN_STEPS
    return long, ""


class CompiledObjective:
    """``f(x, index, beta, step, **options) -> (terms, rows)`` like the eager objective it
    wraps, compiled for full batches of ``batch_size`` rows; a ragged last batch (one per
    epoch) takes the eager path rather than a second compilation."""

    def __init__(self, objective: Callable, batch_size: int, n_data: int):
        self.eager = objective
        self.batch_size = batch_size
        self.n_data = n_data  # the training set's size (beta-TCVAE's estimate of q(z))
        self.compiled: Callable | None = None
        self.log: Callable[[str], None] = print

    def prepare(self, x: torch.Tensor, params: list[torch.Tensor], log) -> None:
        """Compile, forward and backward, on the batch ``x`` ``(batch_size, *x_shape)``; on
        failure log one line and stay eager. The global random state is left as it was, so
        compiling changes nothing a run computes."""
        self.log = log
        start = time.perf_counter()
        # fallback_random: inductor draws from torch's generator, so the noise is the eager
        # step's
        compiled = torch.compile(self._terms, dynamic=False, options={"fallback_random": True})
        try:
            with fork_rng(x.device):
                terms = compiled(x, 1.0)
                torch.autograd.grad(terms.loss, [p for p in params if p.requires_grad])
        except Exception as error:  # inductor's failures have many types; all mean "eager"
            self._give_up(error)
            return
        self.compiled = compiled
        log(
            f"vaelab: compiled the training step in {time.perf_counter() - start:.1f} s "
            "(torch.compile; --compile off skips it)"
        )

    def _terms(self, x: torch.Tensor, beta: float):
        return self.eager(x, None, beta, 0, n_data=self.n_data)[0]

    def __call__(self, x, index, beta, step, **options):
        if self.compiled is None or len(x) != self.batch_size:
            return self.eager(x, index, beta, step, **options)
        try:
            return self.compiled(x, beta), None
        except Exception as error:  # a recompilation that fails mid-run: go on eagerly
            self._give_up(error)
            return self.eager(x, index, beta, step, **options)

    def _give_up(self, error: Exception) -> None:
        text = str(error).strip()
        first = text.splitlines()[0][:160] if text else ""
        self.log(
            f"vaelab: torch.compile failed ({type(error).__name__}: {first}); training uncompiled"
        )
        self.compiled = None
        torch.compiler.reset()
