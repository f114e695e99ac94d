"""Data-parallel training on PyTorch's own engine: one model, W processes (``torchrun``).

``torchrun --nproc-per-node W -m vaelab train ...`` starts W copies of the command, which join
one process group (:mod:`vaelab.ranks`). Each builds the same model from the same seed and
reads the same shuffled epoch; of every global batch of B rows, rank r keeps
the contiguous rows ``[r B / W, (r + 1) B / W)``. DistributedDataParallel averages the
gradients over the ranks, each rank's loss weighted by its share of the rows, so the step is
the single-process step on the whole global batch:

    (1/W) sum_r (W b_r / B) grad mean_{i in r} l_i = (1/B) sum_i grad l_i

The reparameterization noise is drawn for the whole global batch on every rank and sliced
(:class:`GlobalNoise`, the model's noise source during the step), so a W-process run follows a
1-process run to float tolerance, and the random generators stay identical on every rank: a
checkpoint holds no per-rank state and resumes under any number of processes. Metrics are
summed over the ranks before they are logged; only rank 0 (:func:`vaelab.ranks.is_main`) writes
the run folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from ..build import batch_terms
from ..core.gaussian import standard_normal
from ..ranks import rank, world_size


def shard(n: int) -> tuple[slice, float]:
    """This rank's rows of a global batch of ``n`` and the weight of its mean loss, W b_r / n.

    Contiguous, sizes differing by at most one (a last, ragged batch is split too, and the
    weights keep its gradient exact). A rank left without rows (``n < W``) computes on row 0
    with weight 0.
    """
    w, r = world_size(), rank()
    start, stop = r * n // w, (r + 1) * n // w
    if start == stop:
        return slice(0, 1), 0.0
    return slice(start, stop), (stop - start) * w / n


class GlobalNoise:
    """The model's noise source while this rank trains its ``rows`` of a global batch of
    ``total``: an eps of shape ``(..., b, D)`` (b this rank's rows) is drawn as
    ``(..., total, D)`` and sliced to ``rows``; any other shape is drawn as it is.

    So every rank consumes the random stream exactly as one process on the whole batch does,
    and its examples get the noise they would get there. Costs W times the noise of a rank's
    share, small beside the networks."""

    def __init__(self, rows: slice, total: int):
        self.rows, self.total = rows, total
        self.b = rows.stop - rows.start

    def __call__(self, shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if len(shape) >= 2 and shape[-2] == self.b:
            full = standard_normal((*shape[:-2], self.total, shape[-1]), dtype, device)
            return full[..., self.rows, :]
        return standard_normal(shape, dtype, device)


@contextlib.contextmanager
def global_noise(model: nn.Module, rows: slice, total: int) -> Iterator[None]:
    """Inside, ``model`` draws q's eps from a :class:`GlobalNoise` (nothing changes in one
    process)."""
    if world_size() == 1:
        yield
        return
    model.noise = GlobalNoise(rows, total)
    try:
        yield
    finally:
        model.noise = None


class _Objective(nn.Module):
    """The training objective as a module's forward, which DDP needs to hook the backward.
    The config is held here, not passed: DDP would copy every argument to the GPU."""

    def __init__(self, model: nn.Module, config):
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, x, index, beta, step, **options):
        return batch_terms(self.model, x, index, self.config, beta, step, **options)


def objective(model: nn.Module, config, device: torch.device):
    """``f(x, index, beta, step, **options) -> (terms, rows)``: :func:`vaelab.build.batch_terms`
    under ``config``, wrapped in DistributedDataParallel when there are several ranks (its
    backward then averages the gradients over them)."""
    if world_size() == 1:
        return _Objective(model, config).forward
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(_Objective(model, config), device_ids=ids)


def fault(step: int) -> None:
    """Fault injection for the tests: ``VAELAB_FAULT_EXIT=R:S`` makes rank R die abruptly
    (no clean-up, like a lost machine) before global step S."""
    spec = os.environ.get("VAELAB_FAULT_EXIT")
    if spec:
        who, _, when = spec.partition(":")
        if rank() == int(who) and step == int(when):
            os._exit(17)
