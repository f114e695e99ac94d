"""Runs on disk: weights as safetensors, configuration as TOML, summaries as JSON.

Nothing here unpickles: a run handed to us by a stranger can at worst fail to load.
Every file is written atomically: a temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from .config import Config, make_config, read_toml
from .errors import VaelabError
from .model import VAE

FORMAT = "vaelab-run"
FORMAT_VERSION = "1"


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new, never half."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


def save_model(run_dir: str | Path, model: VAE, config: Config) -> None:
    """``model.safetensors`` (weights; the example shape in its metadata) and ``config.toml``."""
    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, "x_shape": json.dumps(model.x_shape)}
    write_atomic(run_dir / "model.safetensors", safetensors_bytes(tensors, metadata=metadata))
    write_atomic(run_dir / "config.toml", config.to_toml())


def load_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; check the path")
    if not (run_dir / "config.toml").is_file():
        raise VaelabError(f"{run_dir} is not a vaelab run (no config.toml)")
    return make_config(read_toml(run_dir / "config.toml"))


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> VAE:
    """The trained model of a run, in eval mode, on ``device``."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise VaelabError(f"{run_dir} has no model.safetensors; the run did not finish")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise VaelabError(f"{path} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab model (no vaelab format tag in its header)")
    try:
        x_shape = tuple(int(n) for n in json.loads(metadata["x_shape"]))
    except (KeyError, ValueError, TypeError):
        raise VaelabError(f"{path} has no valid x_shape in its metadata") from None
    model = VAE.from_config(config, x_shape)
    expected = model.state_dict()
    problems = sorted(set(expected) ^ set(tensors))
    problems += [
        f"{k}: {tuple(tensors[k].shape)} {tensors[k].dtype} instead of {tuple(v.shape)} {v.dtype}"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    if problems:
        raise VaelabError(
            f"{path} does not match {run_dir / 'config.toml'} ({'; '.join(problems[:3])}); "
            "the weights belong to another configuration"
        )
    model.load_state_dict(tensors)
    return model.to(device).eval()
