"""Where the work runs: ``--device auto|cpu|cuda|mps`` -> a torch.device, and the random
state of that device set aside for a block of work."""

from __future__ import annotations

import torch

from .errors import VaelabError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda: no CUDA device is available; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise VaelabError("--device mps: MPS is not available; use --device auto or cpu")
    return torch.device(name)


def fork_rng(device: torch.device):
    """``torch.random.fork_rng`` for work on ``device``: the global generators are restored on
    exit. On the CPU only the CPU's is saved (saving every CUDA device's costs milliseconds)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
