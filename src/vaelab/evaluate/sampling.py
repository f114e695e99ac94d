"""What every estimator in :mod:`vaelab.evaluate` shares: the rows evaluated at a time, the
seeds that fix the noise of each batch and block of samples, and the ranks of a torchrun
launch that split the batches between them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.distributions import Distribution

from .. import ranks
from ..errors import VaelabError

SAMPLE_BLOCK = 128  # z is drawn in blocks of this many samples, each block from its own seed
# (sample, example) pairs evaluated at a time by default: small enough that the decoder's
# outputs (rows x pixels) stay in the CPU's cache while the log-density reads them back, large
# enough for efficient matrix products (docs/benchmarks.md, evaluation speed)
EVAL_ROWS = 2048


def _default_chunk(chunk: int | None, batch_size: int) -> int:
    """``chunk`` if given, else the samples per example that make :data:`EVAL_ROWS` rows."""
    return chunk if chunk is not None else max(1, EVAL_ROWS // max(batch_size, 1))


def _ranks(distributed: bool) -> tuple[int, int]:
    """(rank, world size) of a torchrun launch when ``distributed``, else (0, 1)."""
    if not distributed:
        return 0, 1
    return ranks.rank(), ranks.world_size()


def _all_reduce_sum(tensor: torch.Tensor) -> None:
    with ranks.lost_contact():
        ranks.all_reduce_sum(tensor)


def _seed_device(seed: int, device: torch.device) -> None:
    """Seed the generator that draws on ``device``: on the CPU only that one, since
    torch.manual_seed also seeds every accelerator backend, which costs milliseconds."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _block_seed(seed: int, batch_index: int, block_index: int) -> int:
    """A torch seed for one block of samples, well mixed from the three integers."""
    state = np.random.SeedSequence([seed, batch_index, block_index]).generate_state(2)
    return int(state[0]) << 31 | int(state[1]) >> 1


def sample_and_log_prob(qz: Distribution, shape: tuple[int, ...]):
    """z ~ q without gradient ``(*shape, *batch, D)`` and log q(z) ``(*shape, *batch)``: q's
    own ``sample_and_log_prob`` where it has one (an IAF, whose density is known only at its
    draws), else ``sample`` then ``log_prob``."""
    if hasattr(qz, "sample_and_log_prob"):
        return qz.sample_and_log_prob(shape)
    z = qz.sample(shape)
    return z, qz.log_prob(z)


def samples_from_q(
    qz: Distribution, k: int, chunk: int, seed: int, batch_index: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """z_0 .. z_{k-1} ~ q(z | x) with log q(z_j | x), yielded in consecutive chunks of
    ``(<= chunk, B, D)`` and ``(<= chunk, B)``.

    Sample j is row ``j % SAMPLE_BLOCK`` of a block of ``SAMPLE_BLOCK`` draws made right
    after seeding with (seed, batch_index, j // SAMPLE_BLOCK): the z_j, hence the estimate,
    do not depend on ``chunk``, and the first K' samples of a K-sample run are the K' samples
    of a K'-sample run. log q comes with each block (:func:`sample_and_log_prob`), so it is
    known for every family, a flow's too. Call inside ``torch.random.fork_rng``: this reseeds
    the global RNG of ``device``, where q lives.
    """
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []
    n_pending = 0
    for block in range(-(-k // SAMPLE_BLOCK)):
        _seed_device(_block_seed(seed, batch_index, block), device)
        z, log_q = sample_and_log_prob(qz, (SAMPLE_BLOCK,))
        z, log_q = z[: k - block * SAMPLE_BLOCK], log_q[: k - block * SAMPLE_BLOCK]
        while len(z):
            take = min(chunk - n_pending, len(z))
            pending.append((z[:take], log_q[:take]))
            n_pending += take
            z, log_q = z[take:], log_q[take:]
            if n_pending == chunk:
                yield tuple(torch.cat(parts) for parts in zip(*pending, strict=True))
                pending, n_pending = [], 0
    if pending:
        yield tuple(torch.cat(parts) for parts in zip(*pending, strict=True))


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not (isinstance(value, int) and value >= 1):
            raise VaelabError(f"{name} must be a positive integer, got {value!r}")
