"""Which process this is in a ``torchrun`` launch, and the few collectives vaelab uses.

``torchrun --nproc-per-node W -m vaelab ...`` starts W copies of a command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their environment; :func:`init`
joins them into one process group (NCCL on CUDA, gloo on the CPU). Outside such a launch
every function here is the one-process answer (rank 0 of 1), so callers need no branch.
Training (:mod:`vaelab.training.distributed`) and evaluation both split work by rank.
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


def broadcast_weights(model: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers."""
    if world_size() > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)
