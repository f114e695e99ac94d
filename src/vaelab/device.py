"""``--device auto|cpu|cuda|mps`` -> a torch.device."""

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
