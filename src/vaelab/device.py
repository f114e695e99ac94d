"""Where the work runs: ``--device auto|cpu|cuda|mps`` -> a torch.device; the precision of
the networks' arithmetic there (``--precision auto|fp32|bf16``); and the random state of
that device set aside for a block of work."""

from __future__ import annotations

from pathlib import Path

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


# the dtype the encoder's and decoder's matrix products run in (VAE.computing_in): None is
# float32, the weights' own
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
# --precision auto takes bf16 on a CPU from this batch size on: below it a step of the
# 784-400-20 MLP is bound by dispatch, not arithmetic, and bf16 measured no faster
# (docs/benchmarks.md, "bfloat16")
AUTO_BF16_BATCH = 256


def native_bf16(device: torch.device) -> str:
    """Why ``device`` multiplies bfloat16 matrices natively (a CUDA device of compute
    capability 8.0 or more; a CPU with AMX or AVX512-BF16), or "" when it does not."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"CUDA compute capability {major}.{minor}" if major >= 8 else ""
    if device.type == "cpu":
        flags = _cpu_flags()
        found = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
        return f"the CPU has {found[0]}" if found else ""
    return ""


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def resolve_precision(name: str, device: torch.device, batch_size: int) -> tuple[str, str]:
    """``(fp32 | bf16, why)`` for ``--precision name``: ``auto`` takes bf16 where the device
    has it natively and it pays (on a CUDA device always, on a CPU for batches of at least
    :data:`AUTO_BF16_BATCH`), else fp32; ``why`` is "" for a choice the user made that needs
    no remark."""
    if name != "auto":
        if name == "bf16" and not native_bf16(device):
            return name, f"precision bf16: {device.type} has no native bfloat16, expect it slower"
        return name, ""
    native = native_bf16(device)
    if not native:
        return "fp32", ""
    if device.type == "cpu" and batch_size < AUTO_BF16_BATCH:
        return "fp32", (
            f"precision fp32: {native}, but at batch {batch_size} a step is bound by dispatch, "
            f"not arithmetic (bf16 pays from batch {AUTO_BF16_BATCH}; --precision bf16 forces it)"
        )
    return "bf16", f"precision bf16: {native}; the weights and every sum stay float32"
