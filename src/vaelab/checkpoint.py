"""Runs on disk: weights as safetensors, configuration as TOML; opening a finished run.

Nothing here unpickles: a run handed to us by a stranger can at worst fail to load. Every
file is written atomically (:mod:`vaelab.files`), with a SHA-256 of its tensors in its header
that is checked on reading, and its header's keys sorted, so identical tensors make identical
files. Every tensor's shape and dtype is checked against the model and the optimizer before
any of it is used. :func:`open_run` is how every command opens a run: its config, its model
and, when asked, its data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from . import data as data_mod
from .build import build_model
from .config import Config, make_config, read_toml
from .core.model import VAE
from .errors import VaelabError
from .files import write_atomic

FORMAT = "vaelab-run"
FORMAT_VERSION = "1"


def save_model(run_dir: str | Path, model: VAE, config: Config) -> None:
    """``model.safetensors`` (weights; the example shape in its metadata) and ``config.toml``."""
    run_dir = Path(run_dir)
    save_weights(run_dir / "model.safetensors", model)
    write_atomic(run_dir / "config.toml", config.to_toml())


def save(model: VAE, run_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` as a run folder that :func:`load` opens again: ``model.safetensors``
    and the ``config.toml`` it was built from (``model.config``, set by every vaelab model).
    An existing model file is replaced only with ``overwrite``."""
    run_dir = Path(run_dir)
    config = getattr(model, "config", None)
    if not isinstance(config, Config):
        raise VaelabError(
            "this model has no vaelab Config (model.config); build it with vaelab (train, "
            "load or vaelab.build.build_model), or save its state_dict with safetensors"
        )
    if (run_dir / "model.safetensors").exists() and not overwrite:
        raise VaelabError(f"{run_dir} already holds a model; choose another folder or overwrite")
    if run_dir.exists() and not run_dir.is_dir():
        raise VaelabError(f"{run_dir} is a file; give a folder to save the model in")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(run_dir, model, config)
    return run_dir


def load_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; check the path")
    if not (run_dir / "config.toml").is_file():
        raise VaelabError(f"{run_dir} is not a vaelab run (no config.toml)")
    return make_config(read_toml(run_dir / "config.toml"))


def load_transform(run_dir: str | Path) -> dict | None:
    """What a run stored of its data (``data.json``: a table's or real-valued array's
    standardization, class names; :meth:`~vaelab.data.Dataset.stored`), or None."""
    path = Path(run_dir) / "data.json"
    if not path.is_file():
        return None
    try:
        transform = json.loads(path.read_text())
        ok = data_mod.valid_stored(transform)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise VaelabError(
            f"{path} is damaged (it needs mean and std of one shape, as many as the columns, "
            "and a list of label names)"
        )
    return transform


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN/metrics.jsonl``, one per epoch ([] when the run has none); a file
    that is not JSON lines of records is one line naming it."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        metrics = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError):
        metrics = None
    if metrics is None or not all(isinstance(m, dict) and "epoch" in m for m in metrics):
        raise VaelabError(f"{path} is not a vaelab metrics log (JSON lines, one per epoch)")
    return metrics


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> VAE:
    """The trained model of a run, in eval mode, on ``device``."""
    return open_run(run_dir, device).model


def _load_model(run_dir: Path, config: Config, device: str | torch.device) -> VAE:
    """The weights of ``run_dir/model.safetensors`` in the model ``config`` describes."""
    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise VaelabError(f"{run_dir} has no model.safetensors; the run did not finish")
    metadata, tensors = _read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab model (no vaelab format tag in its header)")
    x_shape = _x_shape(metadata, path)
    n_local = len(tensors["local.loc"]) if "local.loc" in tensors else 0  # --inference local
    with torch.device("meta"):  # shapes without memory: a forged x_shape cannot allocate
        skeleton = build_model(config, x_shape, n_local)
    problems = _mismatches(tensors, skeleton)
    if problems:
        raise VaelabError(
            f"{path} does not match {run_dir / 'config.toml'} ({'; '.join(problems[:3])}); "
            "the weights belong to another configuration"
        )
    model = build_model(config, x_shape, n_local)
    model.load_state_dict(tensors)
    return model.to(device).eval()


def _x_shape(metadata: dict[str, str], path: Path) -> tuple[int, ...]:
    """The example shape in a model file's header: ``(D,)`` or ``(C, H, W)``, positive."""
    try:
        x_shape = tuple(json.loads(metadata["x_shape"]))
        ok = len(x_shape) in (1, 3) and all(type(n) is int and n > 0 for n in x_shape)
    except (KeyError, ValueError, TypeError):
        ok = False
    if not ok:
        raise VaelabError(f"{path} has no valid x_shape in its metadata")
    return x_shape


@dataclass
class Run:
    """A finished run opened for use: its folder, its :class:`Config` and its trained model
    (eval mode). :meth:`data` and :meth:`split` read its data the way training did."""

    path: Path
    config: Config
    model: VAE

    def data(self) -> data_mod.Dataset:
        """The run's data set, a table or real-valued array standardized with the run's
        stored statistics (and an array run that stored none, not at all: ``{}``)."""
        return data_mod.from_config(self.config, load_transform(self.path) or {}, self.path)

    def split(self, name: str = "test", dataset: data_mod.Dataset | None = None) -> torch.Tensor:
        """The split ``name`` as the model was scored on it (binarized as in training, with
        the evaluation seed); from ``dataset`` when the caller has it loaded already."""
        dataset = self.data() if dataset is None else dataset
        return data_mod.eval_split(dataset, name, self.config.resolved_binarize)


def open_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """The finished run at ``run_dir``: config and model on ``device``; data on request."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    return Run(run_dir, config, _load_model(run_dir, config, device))


def payload_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors file of ``tensors``, its header holding ``metadata`` and the tensors'
    SHA-256 (:func:`payload_digest`), every key of the header in sorted order: the library
    writes its metadata in a hash map's order, which differs from file to file."""
    raw = safetensors_bytes(tensors, metadata={**metadata, "sha256": payload_digest(tensors)})
    size = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + size]), sort_keys=True, separators=(",", ":"))
    header += " " * (-len(header) % 8)  # the data stay 8-byte aligned, as the library keeps them
    return len(header).to_bytes(8, "little") + header.encode() + raw[8 + size :]


def _read_safetensors(
    path: str | Path, what: str = "safetensors file"
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors) of a safetensors file: data only, nothing is unpickled.
    A file whose tensors do not match the SHA-256 in its header (files written before vaelab
    stored one are read without it) or hold NaN or Inf is refused."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise VaelabError(f"{path} is not a readable {what}: {exc}") from None
    if "sha256" in metadata and payload_digest(tensors) != metadata["sha256"]:
        raise VaelabError(
            f"{path} is damaged: its tensors do not match the SHA-256 in its header; "
            "use an intact copy of it"
        )
    # vaelab never saves NaN or Inf (its guard skips such steps): a file with them was altered
    if not all(t.isfinite().all() for t in tensors.values() if t.is_floating_point()):
        raise VaelabError(f"{path} holds NaN or Inf values; use an intact copy of it")
    return metadata, tensors


def _mismatches(tensors: dict[str, torch.Tensor], model: VAE) -> list[str]:
    """How ``tensors`` fail to be ``model``'s weights: names missing or extra, then wrong
    shapes or dtypes (empty when they fit)."""
    expected = model.state_dict()
    problems = sorted(set(expected) ^ set(tensors))
    problems += [
        f"{k}: {tuple(tensors[k].shape)} {tensors[k].dtype} instead of {tuple(v.shape)} {v.dtype}"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    return problems


# --- training state: what `vaelab train --resume` needs to continue a run exactly ----------

STATE_FORMAT = "vaelab-training-state"


def save_training_state(
    path: str | Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    counters: dict[str, Any],
    critic=None,
) -> None:
    """One safetensors file with the weights, the optimizer's moments, the random-number
    generators' states (the global one that draws z, and ``generator``, which orders and
    binarizes the data) and the loop's ``counters`` (JSON in the header). Written atomically.
    A FactorVAE run's ``critic`` (:class:`vaelab.training.critic.Critic`) adds its discriminator's
    weights and Adam's moments, under ``critic.``.
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update(_optim_tensors("optim.", optimizer))
    if critic is not None:
        for k, v in critic.discriminator.state_dict().items():
            tensors[f"critic.weights.{k}"] = v.detach().cpu().contiguous()
        tensors.update(_optim_tensors("critic.optim.", critic.optimizer))
    tensors["rng.global"] = torch.get_rng_state()
    tensors["rng.data"] = generator.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata = {"format": STATE_FORMAT, "counters": json.dumps(counters)}
    write_atomic(path, _safetensors_bytes(tensors, metadata))


def load_training_state(
    path: str | Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    critic=None,
) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer``, the
    generators and ``critic``; return the counters. A file that does not fit raises
    :class:`VaelabError`."""
    path = Path(path)
    metadata, tensors = _read_safetensors(path, what="training checkpoint")
    try:
        counters = json.loads(metadata["counters"])
    except (KeyError, ValueError) as exc:
        raise VaelabError(f"{path} is not a readable training checkpoint: {exc}") from None
    if metadata.get("format") != STATE_FORMAT:
        raise VaelabError(f"{path} is not a vaelab training checkpoint")
    if not isinstance(counters, dict):
        raise VaelabError(f"{path} holds no counters of a run (got {type(counters).__name__})")
    for name in ("rng.global", "rng.data"):
        rng = tensors.get(name)
        if rng is None or rng.dtype != torch.uint8 or rng.ndim != 1:
            raise VaelabError(f"{path} lacks the random generators' states ({name})")
    _check_optim("optim.", tensors, optimizer, path)
    if critic is not None:
        _check_optim("critic.optim.", tensors, critic.optimizer, path)
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    problems = _mismatches(weights, model)
    if problems:
        raise VaelabError(
            f"{path} does not match the run's config.toml ({'; '.join(problems[:3])}); "
            "it belongs elsewhere"
        )
    model.load_state_dict(weights)
    device = next(model.parameters()).device
    _load_optim("optim.", tensors, optimizer, device)
    if critic is not None:
        prefix = "critic.weights."
        critic_weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if critic_weights.keys() != critic.discriminator.state_dict().keys():
            raise VaelabError(f"{path} holds no discriminator for this FactorVAE run")
        critic.discriminator.load_state_dict(critic_weights)
        _load_optim("critic.optim.", tensors, critic.optimizer, device)
    try:
        torch.set_rng_state(tensors["rng.global"])
        generator.set_state(tensors["rng.data"])
    except RuntimeError as exc:  # a state of the wrong size for this torch's generator
        raise VaelabError(f"{path} holds a random generator state torch refuses: {exc}") from None
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return counters


def _optim_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat tensors ``PREFIX{index}.{name}``."""
    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"{prefix}{index}.{name}"] = torch.as_tensor(value).detach().cpu().clone()
    return tensors


ADAM_STATE = {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}


def _check_optim(prefix: str, tensors: dict, optimizer: torch.optim.Optimizer, path) -> None:
    """Every optimizer tensor under ``prefix`` names one of the optimizer's parameters and has
    its shape and dtype (a step count: one number), checked before any of it is used: fused
    Adam reads the moments without checking, and a wrong shape crashes the process."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        index, _, name = key[len(prefix) :].partition(".")
        if not index.isdigit() or int(index) >= len(params) or name not in ADAM_STATE:
            raise VaelabError(f"{path} holds {key}, which is no state of this run's optimizer")
        param = params[int(index)]
        if name == "step":
            ok = value.numel() == 1 and value.is_floating_point()
        else:
            ok = value.shape == param.shape and value.dtype == param.dtype
        if not ok:
            raise VaelabError(
                f"{path}: {key} is {tuple(value.shape)} {value.dtype}, but its parameter is "
                f"{tuple(param.shape)} {param.dtype}; the checkpoint belongs elsewhere"
            )


def _load_optim(prefix: str, tensors: dict, optimizer: torch.optim.Optimizer, device) -> None:
    """Put back the state :func:`_optim_tensors` flattened (its hyperparameters stay)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[name] = value.to(device) if value.ndim else value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_weights(path: str | Path, model: VAE) -> None:
    """The weights alone, atomically (the best-by-validation copy of a run in progress)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, "x_shape": json.dumps(model.x_shape)}
    write_atomic(path, _safetensors_bytes(tensors, metadata))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    return _read_safetensors(path)[1]
