"""Dynamic and static binarization: one draw x_b ~ Bernoulli(x) per pixel of grey levels
in [0, 1], the standard protocol for a Bernoulli likelihood on MNIST."""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import torch

# rows drawn from one generator of their own; fixed, so that the draws depend on the seed
# and never on how many threads draw them
BLOCK_ROWS = 4096


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, torch.get_num_threads()), thread_name_prefix="binarize")


# a forked child inherits the pool without its threads: it makes its own
os.register_at_fork(after_in_child=_pool.cache_clear)


def binarize(
    x: torch.Tensor, generator: torch.Generator | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x_b = 1[u < x] with u ~ U[0, 1) per pixel, so P(x_b = 1) = x: same shape and dtype.

    The same law as ``torch.bernoulli(x)``, which compares one uniform draw per pixel too,
    drawn faster. torch draws random numbers on the CPU one generator at a time, on one
    core; here each block of :data:`BLOCK_ROWS` rows has a generator of its own, seeded
    from ``generator``, and the blocks are drawn on as many threads as torch uses. The
    draws go into the output's own memory and are compared in place: no second array, and
    with ``out`` none at all (a fresh 157 MB array costs its page faults each epoch).
    Training throughput with and without it is in docs/benchmarks.md.

    ``x`` must hold probabilities in [0, 1] (values outside give 0 or 1 silently; the data
    loaders check this). ``out``, a contiguous tensor of ``x``'s shape, dtype and device
    and not ``x`` itself, is written and returned (a training loop passes the same one
    every epoch); else one is allocated.
    """
    if out is not None and not (
        out.shape == x.shape
        and out.dtype == x.dtype
        and out.device == x.device
        and out.is_contiguous()
        and out.data_ptr() != x.data_ptr()
    ):
        raise ValueError("binarize: out must be a contiguous tensor like x, and not x itself")
    u = torch.empty_like(x, memory_format=torch.contiguous_format) if out is None else out
    blocks = u.split(BLOCK_ROWS) if u.dim() else (u,)
    if len(blocks) == 1 or u.device.type != "cpu":
        u.uniform_(generator=generator)
    else:
        seeds = torch.randint(1 << 62, (len(blocks),), generator=generator).tolist()

        def draw(block: torch.Tensor, seed: int) -> None:
            block.uniform_(generator=torch.Generator().manual_seed(seed))

        for future in [_pool().submit(draw, b, s) for b, s in zip(blocks, seeds, strict=True)]:
            future.result()
    return torch.lt(u, x, out=u)
