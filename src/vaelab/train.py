"""The training loop, in one place: data -> model -> objective -> step -> log -> run folder.

A run is built in ``OUT.partial`` and renamed to ``OUT`` only when it is complete, so a
folder named ``OUT`` always holds a finished run, and an existing run is replaced (with
``overwrite``) only once its successor is complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from . import data as data_mod
from . import objectives
from .checkpoint import save_model, write_json
from .config import Config
from .device import resolve_device
from .errors import VaelabError
from .evaluate import evaluate_elbo
from .model import VAE

PROGRESS_EVERY = 20  # steps between progress-bar updates: each costs one host sync


def default_out(config: Config) -> Path:
    name = Path(config.data).stem if config.data not in ("digits", "mnist") else config.data
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def prepare_out(out: Path, overwrite: bool) -> Path:
    """Check ``out`` may be written; return the ``.partial`` folder to build the run in."""
    if out.exists():
        if not overwrite:
            raise VaelabError(
                f"output folder {out} exists; choose another --out or pass --overwrite"
            )
        if not out.is_dir() or (any(out.iterdir()) and not (out / "config.toml").is_file()):
            raise VaelabError(
                f"{out} exists and is not a vaelab run; --overwrite only replaces runs"
            )
    partial = out.with_name(out.name + ".partial")
    try:
        if partial.exists():
            shutil.rmtree(partial)
        (partial / "plots").mkdir(parents=True)
    except OSError as exc:
        raise VaelabError(f"cannot create the run folder {partial}: {exc}") from None
    return partial


def train(
    config: Config,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train a VAE as ``config`` says; return the finished run folder.

    Every check a user's input can fail happens before anything is written.
    """
    config.validate()
    device = resolve_device(config.device)
    dataset = data_mod.load(config.data, config.data_dir or None)
    binarization = config.resolved_binarize
    _check_data(dataset, config, binarization, log)

    torch.manual_seed(config.seed)  # weights' initialisation and the reparameterization noise
    model = VAE.from_config(config, dataset.x_shape).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"vaelab: {config.arch} VAE, {n_params:,} parameters, latent {config.latent_dim}, "
        f"{config.likelihood} likelihood, binarization {binarization}, device {device}"
    )

    out = Path(config.out) if config.out else default_out(config)
    config = dataclasses.replace(config, out=str(out))  # the caller's object stays as it was
    partial = prepare_out(out, overwrite)
    try:
        (partial / "config.toml").write_text(config.to_toml())
        metrics = _fit(model, dataset, config, binarization, device, partial, progress, log)
        save_model(partial, model, config)
        summary = _summarise(model, dataset, config, binarization, metrics, n_params)
        write_json(partial / "summary.json", summary)
        from .plots import draw_run

        draw_run(model, dataset, metrics, partial / "plots", binarization)
    except BaseException:
        log(f"vaelab: training stopped; the unfinished run is in {partial}")
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    log(
        f"vaelab: test ELBO {summary['test']['elbo']:.2f} nats "
        f"(reconstruction {summary['test']['reconstruction']:.2f}, KL {summary['test']['kl']:.2f})"
    )
    log(f"vaelab: run written to {out}/ ; plots in {out / 'plots'}/")
    return out


def _check_data(dataset, config: Config, binarization: str, log) -> None:
    n_train = len(dataset.train)
    if n_train == 0 or len(dataset.valid) == 0 or len(dataset.test) == 0:
        raise VaelabError(f"data {config.data!r} has an empty split; it needs more examples")
    if config.batch_size > n_train:
        raise VaelabError(
            f"--batch-size {config.batch_size} is larger than the {n_train} training "
            "examples; choose a smaller batch"
        )
    if not torch.isfinite(dataset.train).all():
        raise VaelabError(f"data {config.data!r} contains NaN or Inf; clean it first")
    if config.likelihood == "bernoulli" and binarization == "none":
        if not data_mod.is_binary(dataset.train):
            log(
                "vaelab: warning: a Bernoulli likelihood on grey-level data that is not "
                "binarized is not a log-likelihood; its numbers are not comparable. Use "
                "--binarize dynamic, or --likelihood gaussian."
            )


def _fit(model, dataset, config, binarization, device, run_dir: Path, progress, log):
    """The loop: each epoch binarizes and shuffles the whole training set at once, then
    steps through it by index. Returns the list of per-epoch metric records."""
    generator = torch.Generator().manual_seed(config.seed)  # data order and binarization
    x_train = dataset.train
    if binarization == "static":
        x_train = data_mod.binarize(x_train, torch.Generator().manual_seed(config.seed + 1))
    x_valid = data_mod.eval_split(dataset, "valid", binarization)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n, batch_size = len(x_train), config.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    metrics = []
    # one bar over every step of the run; its postfix shows the epoch's running means
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        desc="training",
        unit="step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    with bar, (run_dir / "metrics.jsonl").open("w") as metrics_file:
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            model.train()
            epoch_x = x_train
            if binarization == "dynamic":  # a fresh draw x ~ Bernoulli(pixels) every epoch
                epoch_x = data_mod.binarize(x_train, generator)
            epoch_x = epoch_x.to(device)
            order = torch.randperm(n, generator=generator).to(device)
            # running sums of (loss, elbo, reconstruction, kl) over examples, on the device:
            # no host synchronisation per step
            sums = torch.zeros(4, dtype=torch.float64, device=device)
            seen = 0
            for step in range(steps_per_epoch):
                x = epoch_x[order[step * batch_size : (step + 1) * batch_size]]
                if config.objective == "iwae":
                    terms = objectives.iwae(model, x, k=config.k, beta=config.beta)
                else:
                    terms = objectives.elbo(model, x, beta=config.beta, k=config.k)
                optimizer.zero_grad(set_to_none=True)
                terms.loss.backward()
                optimizer.step()
                b = len(x)
                seen += b
                sums += torch.stack(
                    [
                        terms.loss.detach() * b,
                        # the ELBO itself, also under the IWAE objective (whose loss is -L_K)
                        (terms.reconstruction - terms.kl).detach().sum(),
                        terms.reconstruction.detach().sum(),
                        terms.kl.detach().sum(),
                    ]
                ).double()
                bar.update()
                if progress and ((step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps_per_epoch):
                    loss, _, rec, kl = (sums / seen).tolist()
                    bar.set_postfix_str(
                        f"epoch {epoch}  loss {loss:.2f}  rec {rec:.2f}  kl {kl:.2f}",
                        refresh=False,
                    )
            train_seconds = time.perf_counter() - start
            loss, elbo, rec, kl = (sums / n).tolist()
            if not math.isfinite(loss):
                raise VaelabError(
                    f"training diverged in epoch {epoch}: the loss is not finite; "
                    "lower --lr or check the data"
                )
            model.eval()
            valid = evaluate_elbo(model, x_valid, seed=config.seed)
            record = {
                "epoch": epoch,
                "train_loss": loss,
                "train_elbo": elbo,
                "train_reconstruction": rec,
                "train_kl": kl,
                "valid_elbo": valid["elbo"],
                "valid_reconstruction": valid["reconstruction"],
                "valid_kl": valid["kl"],
                "seconds": time.perf_counter() - start,
                "train_samples_per_sec": n / train_seconds,
            }
            metrics.append(record)
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            if progress:
                bar.write(
                    f"epoch {epoch:3d}  train ELBO {elbo:9.3f}  valid ELBO {valid['elbo']:9.3f}"
                    f"  (rec {valid['reconstruction']:.2f}, KL {valid['kl']:.2f})"
                    f"  {record['seconds']:.1f}s",
                    file=sys.stderr,
                )
    return metrics


def _summarise(model, dataset, config, binarization, metrics, n_params) -> dict:
    x_test = data_mod.eval_split(dataset, "test", binarization)
    test = evaluate_elbo(model, x_test, seed=config.seed)
    return {
        "data": config.data,
        "x_shape": list(dataset.x_shape),
        "n_train": len(dataset.train),
        "n_parameters": n_params,
        "epochs": len(metrics),
        "train_seconds": sum(m["seconds"] for m in metrics),
        "train_samples_per_sec": metrics[-1]["train_samples_per_sec"],
        "valid": {k: metrics[-1][f"valid_{k}"] for k in ("elbo", "reconstruction", "kl")},
        "test": test,
        "units": "nats per example (log-densities summed over the data's dimensions)",
    }
