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
    model = VAE.from_config(config, dataset.x_shape)
    if config.decoder_bias == "data":
        model.init_output_bias(dataset.train)
    model = model.to(device)
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


def lr_factor(config: Config, step: int, total_steps: int, elapsed: float) -> float:
    """The learning rate's multiplier: 1, or a cosine from 1 to 0 over the budget
    (``minutes``) when there is one, else over the ``total_steps`` of ``epochs``."""
    if config.lr_schedule == "constant":
        return 1.0
    if config.minutes:
        progress = elapsed / (60.0 * config.minutes)
    else:
        progress = step / total_steps
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def kl_weight(config: Config, epoch_progress: float) -> float:
    """beta, ramped linearly from 0 over the first ``kl_warmup`` epochs (``epoch_progress``
    counts epochs done, fractionally)."""
    if config.kl_warmup == 0:
        return config.beta
    return config.beta * min(1.0, epoch_progress / config.kl_warmup)


def _fit(model, dataset, config, binarization, device, run_dir: Path, progress, log):
    """The loop: each epoch binarizes and shuffles the whole training set at once, then
    steps through it by index. Stops after ``epochs``, or before an epoch that would end
    past the ``minutes`` budget. Returns the list of per-epoch metric records; the model
    ends with the weights of the best validation ELBO when ``keep_best``."""
    generator = torch.Generator().manual_seed(config.seed)  # data order and binarization
    x_train = dataset.train
    if binarization == "static":
        x_train = data_mod.binarize(x_train, torch.Generator().manual_seed(config.seed + 1))
    x_valid = data_mod.eval_split(dataset, "valid", binarization)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    n, batch_size = len(x_train), config.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = config.epochs * steps_per_epoch
    budget = 60.0 * config.minutes if config.minutes else math.inf
    best = {"elbo": -math.inf, "epoch": 0, "state": None}
    metrics = []
    # one bar over every step of the run (of the budget's seconds, under --minutes)
    bar = tqdm(
        total=total_steps if not config.minutes else round(budget),
        desc="training",
        unit="step" if not config.minutes else "s",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    run_start = time.perf_counter()
    with bar, (run_dir / "metrics.jsonl").open("w") as metrics_file:
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            elapsed = start - run_start
            if metrics and elapsed + metrics[-1]["seconds"] > budget:
                break  # the next epoch would end past the budget
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
                global_step = (epoch - 1) * steps_per_epoch + step
                lr = config.lr * lr_factor(
                    config, global_step, total_steps, time.perf_counter() - run_start
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                beta = kl_weight(config, epoch - 1 + step / steps_per_epoch)
                x = epoch_x[order[step * batch_size : (step + 1) * batch_size]]
                if config.objective == "iwae":
                    terms = objectives.iwae(model, x, k=config.k, beta=beta, grad=config.iwae_grad)
                else:
                    terms = objectives.elbo(model, x, beta=beta, k=config.k)
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
                if not config.minutes:
                    bar.update()
                if progress and ((step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps_per_epoch):
                    loss, _, rec, kl = (sums / seen).tolist()
                    if config.minutes:
                        bar.n = min(round(time.perf_counter() - run_start), bar.total)
                    bar.set_postfix_str(
                        f"epoch {epoch}  loss {loss:.2f}  rec {rec:.2f}  kl {kl:.2f}",
                        refresh=config.minutes > 0,
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
            if config.keep_best and valid["elbo"] > best["elbo"]:
                best = {
                    "elbo": valid["elbo"],
                    "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                }
            record = {
                "epoch": epoch,
                "train_loss": loss,
                "train_elbo": elbo,
                "train_reconstruction": rec,
                "train_kl": kl,
                "valid_elbo": valid["elbo"],
                "valid_reconstruction": valid["reconstruction"],
                "valid_kl": valid["kl"],
                "lr": lr,
                "beta": beta,
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
    if best["state"] is not None and best["epoch"] != len(metrics):
        model.load_state_dict(best["state"])
        log(f"vaelab: keeping the weights of epoch {best['epoch']}, the best validation ELBO")
    return metrics


def _summarise(model, dataset, config, binarization, metrics, n_params) -> dict:
    x_test = data_mod.eval_split(dataset, "test", binarization)
    test = evaluate_elbo(model, x_test, seed=config.seed)
    kept = max(metrics, key=lambda m: m["valid_elbo"]) if config.keep_best else metrics[-1]
    return {
        "data": config.data,
        "x_shape": list(dataset.x_shape),
        "n_train": len(dataset.train),
        "n_parameters": n_params,
        "epochs": len(metrics),
        "kept_epoch": kept["epoch"],
        "budget_minutes": config.minutes or None,
        "train_seconds": sum(m["seconds"] for m in metrics),
        "train_samples_per_sec": metrics[-1]["train_samples_per_sec"],
        "valid": {k: kept[f"valid_{k}"] for k in ("elbo", "reconstruction", "kl")},
        "test": test,
        "units": "nats per example (log-densities summed over the data's dimensions)",
    }
