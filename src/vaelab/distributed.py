"""Data-parallel training on PyTorch's own engine: one model, W processes (``torchrun``).

``torchrun --nproc-per-node W -m vaelab train ...`` starts W copies of the command with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their environment. Each
copy joins one process group (NCCL on CUDA, gloo on the CPU), builds the same model from the
same seed, and reads the same shuffled epoch; of every global batch of B rows, rank r keeps
the contiguous rows ``[r B / W, (r + 1) B / W)``. DistributedDataParallel averages the
gradients over the ranks, each rank's loss weighted by its share of the rows, so the step is
the single-process step on the whole global batch:

    (1/W) sum_r (W b_r / B) grad mean_{i in r} l_i = (1/B) sum_i grad l_i

The reparameterization noise is drawn for the whole global batch on every rank and sliced
(:func:`global_noise`), so a W-process run follows a 1-process run to float tolerance, and
the random generators stay identical on every rank: a checkpoint holds no per-rank state and
resumes under any number of processes. Metrics are summed over the ranks before they are
logged; only rank 0 (:func:`is_main`) writes the run folder.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.distributions import normal as _normal

from .errors import VaelabError

# seconds a collective may wait for the other ranks before this one gives up: a rank that
# died must not leave the others hanging (VAELAB_DIST_TIMEOUT overrides; the tests use a few)
TIMEOUT = 300.0
# how gloo and NCCL word a failed collective: "Connection reset by peer", "Timed out waiting ..."
BACKEND_WORDS = ("gloo", "nccl", "NCCL", "Connection", "connection", "Timed out", "timed out")


def launched() -> bool:
    """True in a process started by torchrun (or anything else that sets ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0, the one process that writes files and prints: true when not distributed."""
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the process group of a torchrun launch (else do nothing); this rank's device.

    On CUDA each process takes the GPU ``cuda:LOCAL_RANK`` and talks over NCCL; on the CPU,
    gloo. Collectives wait at most :data:`TIMEOUT` seconds for the other ranks.
    """
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise VaelabError(f"distributed training runs on cuda or cpu, not {device.type}")
    if not dist.is_initialized():
        timeout = float(os.environ.get("VAELAB_DIST_TIMEOUT", TIMEOUT))
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=timeout),
        )
    return device


def close() -> None:
    """Leave the process group together: a barrier, then ``destroy_process_group``.

    Without the barrier a rank that finished early (the others do not draw plots) tears down
    its side of gloo's connections while rank 0 still holds them, and can abort at exit. A
    barrier that fails (rank 0 stopped, or took longer than the timeout) only means the
    other side is gone already; this rank's own work is done and it leaves anyway. (On NCCL a
    barrier against a dead peer may instead be ended by the watchdog after the timeout; torchrun
    has stopped the job by then, as one of its processes failed.)"""
    if dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:
            pass
        dist.destroy_process_group()


@contextlib.contextmanager
def lost_contact() -> Iterator[None]:
    """Turn a failed collective (another rank died or timed out) into one clear
    :class:`VaelabError` instead of a backend traceback."""
    try:
        yield
    except RuntimeError as exc:  # gloo reports a lost peer as a plain RuntimeError
        lost = isinstance(exc, dist.DistError) or any(word in str(exc) for word in BACKEND_WORDS)
        if not dist.is_initialized() or not lost:
            raise  # anything else is a bug, and keeps its traceback
        # the backend's first sentence, without its source location "[.../pair.cc:537] "
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0][:160]
        raise VaelabError(
            f"rank {rank()} of {world_size()} lost contact with the other processes "
            f"({text}); one of them stopped: see its message. Resume from the last "
            "checkpoint with --resume"
        ) from None


def on_main(action, *args):
    """Run ``action(*args)`` on rank 0 only; if it raises a :class:`VaelabError`, every rank
    raises it, so no rank goes on to wait for a partner that has stopped."""
    if world_size() == 1:
        return action(*args)
    result, message = None, None
    if is_main():
        try:
            result = action(*args)
        except VaelabError as exc:
            message = str(exc)
    box = [message]
    dist.broadcast_object_list(box, src=0)
    if box[0] is not None:
        raise VaelabError(box[0])
    return result


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (a no-op in one process)."""
    if world_size() == 1:
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type == "cpu":  # NCCL: GPU tensors only
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu)
        return tensor.copy_(on_gpu)
    dist.all_reduce(tensor)
    return tensor


def all_finite(finite: torch.Tensor) -> torch.Tensor:
    """True on every rank only if it is true on every rank, so all skip a step together."""
    if world_size() == 1:
        return finite
    flag = finite.float()
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.bool()


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


@contextlib.contextmanager
def global_noise(rows: slice, total: int) -> Iterator[None]:
    """Inside, a Gaussian draw for this rank's ``b`` rows of a global batch of ``total``
    (a shape ``(..., b, D)``) draws ``(..., total, D)`` and keeps ``rows``.

    So every rank consumes the random stream exactly as one process on the whole batch
    does, and its examples get the noise they would get there. Costs W times the noise of
    a rank's share, small beside the networks. Acts on ``torch.distributions.Normal`` (every
    q in vaelab is one); other draws are left as they are.
    """
    if world_size() == 1:
        yield
        return
    original = _normal._standard_normal
    b = rows.stop - rows.start

    def draw(shape, dtype, device):
        if len(shape) >= 2 and shape[-2] == b:
            full = original((*shape[:-2], total, shape[-1]), dtype=dtype, device=device)
            return full[..., rows, :]
        return original(shape, dtype=dtype, device=device)

    _normal._standard_normal = draw
    try:
        yield
    finally:
        _normal._standard_normal = original


class _Objective(nn.Module):
    """The training objective as a module's forward, which DDP needs to hook the backward.
    The config is held here, not passed: DDP would copy every argument to the GPU."""

    def __init__(self, model: nn.Module, config):
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, x, index, beta, step, **options):
        from .objectives import batch_terms

        return batch_terms(self.model, x, index, self.config, beta, step, **options)


def objective(model: nn.Module, config, device: torch.device):
    """``f(x, index, beta, step, **options) -> (terms, rows)``:
    :func:`objectives.batch_terms` under ``config``, wrapped in DistributedDataParallel when
    there are several ranks (its backward then averages the gradients over them)."""
    if world_size() == 1:
        return _Objective(model, config).forward
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(_Objective(model, config), device_ids=ids)


def broadcast_weights(model: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers."""
    if world_size() > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def fault(step: int) -> None:
    """Fault injection for the tests: ``VAELAB_FAULT_EXIT=R:S`` makes rank R die abruptly
    (no clean-up, like a lost machine) before global step S."""
    spec = os.environ.get("VAELAB_FAULT_EXIT")
    if spec:
        who, _, when = spec.partition(":")
        if rank() == int(who) and step == int(when):
            os._exit(17)
