"""The training loop itself: epochs of shuffled batches -> objective -> guarded step ->
per-epoch metrics, checkpoints and the best weights (:func:`fit`).

:mod:`vaelab.train` sets a run up around it (data, model, run folder) and finishes it (test
score, plots, report). Each step: this rank's share of the batch, the learning rate and KL
weight of the schedules, the objective (:mod:`vaelab.objectives`, compiled where
:mod:`vaelab.compiled` says so), backward, and an Adam step only if the loss and every
gradient are finite (:mod:`vaelab.steps`). The host looks at the device only every
``PROGRESS_EVERY`` steps.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import compiled, distributed
from . import data as data_mod
from .checkpoint import (
    load_training_state,
    load_weights,
    save_training_state,
    save_weights,
    write_atomic,
)
from .errors import VaelabError
from .factor import Critic
from .schedules import kl_weight, lr_factor
from .steps import all_finite, guarded_step, step_sums
from .validation import kl_per_dim_record, score

PROGRESS_EVERY = 20  # steps between progress-bar updates: each costs one host sync
STREAM_VALID_ROWS = 10_000  # streamed data: validation examples scored after each epoch
# q_i moves once per epoch, when example i is in a batch: it needs larger steps than the
# weights (follows the weights' schedule, scaled)
LOCAL_LR = 0.05
MAX_BAD_STEPS = 10  # batches with a non-finite loss or gradient a run may skip before it stops


def _fault_steps() -> tuple[int, int] | None:
    """Fault injection for the tests and docs/reliability.md: ``VAELAB_FAULT_NAN=E:S`` makes
    the loss NaN at step S of epoch E (``E:`` at every step from epoch E on)."""
    spec = os.environ.get("VAELAB_FAULT_NAN")
    if not spec:
        return None
    epoch, _, step = spec.partition(":")
    return int(epoch), int(step) if step else -1


def _read_metrics(path: Path, epochs: int) -> list[dict]:
    """The first ``epochs`` records of a run's metrics.jsonl (later ones postdate the
    checkpoint)."""
    lines = path.read_text().splitlines()[:epochs]
    try:
        metrics = [json.loads(line) for line in lines]
    except json.JSONDecodeError:
        metrics = []
    if len(metrics) != epochs:
        raise VaelabError(f"{path} does not hold the {epochs} epochs its checkpoint has done")
    return metrics


def fit(model, dataset, config, binarization, device, run_dir: Path, progress, log, resume):
    """The loop: each epoch binarizes and shuffles the whole training set at once, then
    steps through it by index. Stops after ``epochs``, or before an epoch that would end
    past the ``minutes`` budget. Returns the list of per-epoch metric records; the model
    ends with the weights of the best validation ELBO when ``keep_best``."""
    generator = torch.Generator().manual_seed(config.seed)  # data order and binarization
    x_train = dataset.train
    if binarization == "static" and dataset.streamed:
        x_train = x_train.binarized(config.seed + 1)
    elif binarization == "static":
        x_train = data_mod.binarize(x_train, torch.Generator().manual_seed(config.seed + 1))
    # memory for each epoch's binarization, taken once (a fresh one costs page faults)
    in_memory = binarization == "dynamic" and not dataset.streamed
    buffer = torch.empty_like(x_train) if in_memory else None
    x_valid = data_mod.eval_split(dataset, "valid", binarization)
    if dataset.streamed:  # each epoch's score on a fixed slice; the test score uses all
        x_valid = x_valid[:STREAM_VALID_ROWS]
    # fused Adam: one kernel for every parameter, and it can skip a step on the device (its
    # found_inf input), which spares the hot loop a host synchronisation per step
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, eps=config.adam_eps, fused=fused or None
    )
    n, batch_size = len(x_train), config.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = config.epochs * steps_per_epoch
    budget = 60.0 * config.minutes if config.minutes else math.inf
    checkpoints = run_dir / "checkpoints"
    counters = {"epoch": 0, "best_epoch": 0, "best_elbo": -math.inf, "elapsed": 0.0, "bad": 0}
    metrics: list[dict] = []
    main = distributed.is_main()
    # FactorVAE: the discriminator that estimates TC(z), with its own Adam (vaelab.factor)
    critic = Critic(config.latent_dim, device) if config.factor_gamma else None
    if resume:
        last = checkpoints / "last.safetensors"
        counters = load_training_state(last, model, optimizer, generator, critic)
        metrics = _read_metrics(run_dir / "metrics.jsonl", counters["epoch"])
        if main:  # the log cut back to the checkpoint, atomically: a second kill loses nothing
            text = "".join(json.dumps(m) + "\n" for m in metrics)
            write_atomic(run_dir / "metrics.jsonl", text)
        log(f"vaelab: resuming {run_dir} after epoch {counters['epoch']}")
    # the objective; under torchrun wrapped in DDP, whose backward all-reduces the gradients
    objective = distributed.objective(model, config, device)
    fault = _fault_steps()
    run_start = time.perf_counter() - counters["elapsed"]
    params = [p for p in model.parameters() if p.requires_grad]
    objective = _maybe_compiled(objective, params, config, device, x_train, total_steps, log)
    # one bar over every step of the run (of the budget's seconds, under --minutes)
    bar = tqdm(
        total=total_steps if not config.minutes else round(budget),
        initial=counters["epoch"] * steps_per_epoch if not config.minutes else 0,
        desc="training",
        unit="step" if not config.minutes else "s",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    metrics_path = run_dir / "metrics.jsonl" if main else Path(os.devnull)
    with bar, metrics_path.open("a" if resume else "w") as metrics_file:
        for epoch in range(counters["epoch"] + 1, config.epochs + 1):
            start = time.perf_counter()
            elapsed = start - run_start
            if metrics and elapsed + metrics[-1]["seconds"] > budget:
                break  # the next epoch would end past the budget
            model.train()
            # a fresh draw x ~ Bernoulli(pixels) every epoch with dynamic binarization
            batches = data_mod.epoch_batches(
                x_train, batch_size, generator, binarization == "dynamic", device, buffer
            )
            # running sums of (loss, elbo, reconstruction, kl, examples), on the device;
            # non-finite steps (skipped) are counted when the host next looks (`_check_bad`)
            sums = torch.zeros(5, dtype=torch.float64, device=device)
            pending: list[tuple[int, torch.Tensor]] = []
            for step, (index, x) in enumerate(batches):
                global_step = (epoch - 1) * steps_per_epoch + step
                distributed.fault(global_step)
                # this rank's rows of the global batch (all of them in one process), and
                # the weight that makes DDP's average of the ranks' gradients the batch's
                share, weight = distributed.shard(len(x))
                n_global = len(x)
                x, index = x[share], None if index is None else index[share]
                lr = config.lr * lr_factor(
                    config, global_step, total_steps, time.perf_counter() - run_start
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                beta = kl_weight(config, epoch - 1 + step / steps_per_epoch)
                with distributed.global_noise(share, n_global):
                    terms, rows = objective(x, index, beta, global_step, n_data=n, critic=critic)
                loss = terms.loss
                if fault and (fault == (epoch, step) or fault[1] == -1 and epoch >= fault[0]):
                    loss = loss * math.nan
                optimizer.zero_grad(set_to_none=True)
                (loss if weight == 1.0 else loss * weight).backward()
                # the step touches the weights only when the loss and every gradient are
                # finite: decided on the device (fused Adam skips the step), or by one host
                # synchronisation per step where fused Adam is not available or per-example
                # posteriors (--inference local) take their own step
                grads = [p.grad for p in params] + ([rows.grad] if rows is not None else [])
                finite = distributed.all_finite(all_finite(loss, grads))  # all ranks, or none
                guarded_step(optimizer, finite, fused and rows is None)
                if rows is not None and finite.item():
                    model.local.adam_step(index, rows.grad, LOCAL_LR * lr / config.lr)
                if critic is not None:  # FactorVAE: then the discriminator's own step
                    critic.step(model, x)
                pending.append((step, finite))
                # a stand-in row (more ranks than rows) counts for nothing
                counted = finite if weight > 0 else torch.zeros_like(finite)
                sums += step_sums(loss, terms, len(x), counted)
                if not config.minutes:
                    bar.update()
                if (step + 1) % PROGRESS_EVERY == 0 or step + 1 == steps_per_epoch:
                    _check_bad(pending, epoch, counters, checkpoints, log)
                    pending = []
                    if progress:
                        running, _, rec, kl = (sums[:4] / sums[4].clamp(min=1)).tolist()
                        if config.minutes:
                            bar.n = min(round(time.perf_counter() - run_start), bar.total)
                        bar.set_postfix_str(
                            f"epoch {epoch}  loss {running:.2f}  rec {rec:.2f}  kl {kl:.2f}",
                            refresh=config.minutes > 0,
                        )
            _check_bad(pending, epoch, counters, checkpoints, log)
            distributed.all_reduce_sum(sums)  # the epoch's metrics over every rank's rows
            seen = int(sums[4].item())
            train_seconds = time.perf_counter() - start
            mean_loss, elbo, rec, kl = (sums[:4] / max(seen, 1)).tolist()
            model.eval()
            valid = score(model, x_valid, config)
            if config.keep_best and valid["elbo"] > counters["best_elbo"]:
                counters["best_elbo"], counters["best_epoch"] = valid["elbo"], epoch
                if main:
                    save_weights(checkpoints / "best.safetensors", model)
            record = {
                "epoch": epoch,
                "train_loss": mean_loss,
                "train_elbo": elbo,
                "train_reconstruction": rec,
                "train_kl": kl,
                "valid_elbo": valid["elbo"],
                "valid_reconstruction": valid["reconstruction"],
                "valid_kl": valid["kl"],
                "lr": lr,
                "beta": beta,
                **kl_per_dim_record(model, x_valid, config),
            }
            record["seconds"] = time.perf_counter() - start  # all of the epoch's work
            record["train_samples_per_sec"] = seen / train_seconds
            metrics.append(record)
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            counters["epoch"] = epoch
            counters["elapsed"] = time.perf_counter() - run_start
            if main and config.checkpoint_every and epoch % config.checkpoint_every == 0:
                save_training_state(
                    checkpoints / "last.safetensors", model, optimizer, generator, counters, critic
                )
            if progress:
                bar.write(
                    f"epoch {epoch:3d}  train ELBO {elbo:9.3f}  valid ELBO {valid['elbo']:9.3f}"
                    f"  (rec {valid['reconstruction']:.2f}, KL {valid['kl']:.2f})"
                    f"  {record['seconds']:.1f}s",
                    file=sys.stderr,
                )
    if config.keep_best and 0 < counters["best_epoch"] != len(metrics):
        if main:
            model.load_state_dict(load_weights(checkpoints / "best.safetensors"))
        distributed.broadcast_weights(model)  # the file is rank 0's
        log(
            f"vaelab: keeping the weights of epoch {counters['best_epoch']}, "
            "the best validation ELBO"
        )
    return metrics


def _maybe_compiled(objective, params, config, device, x_train, total_steps: int, log):
    """The objective through ``torch.compile`` when ``config.compile`` asks for it and it
    works (:mod:`vaelab.compiled`), else as it is. Compiling takes place here, inside the
    run's clock."""
    world = distributed.world_size()
    wanted, why_not = compiled.wanted(config, device, world, total_steps)
    if why_not:
        log(f"vaelab: --compile on: {why_not}")
    if not wanted or len(x_train) < config.batch_size:
        return objective
    fast = compiled.CompiledObjective(objective, config.batch_size, len(x_train))
    fast.prepare(x_train[: config.batch_size].to(device), params, log)
    return fast


def _check_bad(pending, epoch: int, counters: dict, checkpoints: Path, log) -> None:
    """Log the skipped (non-finite) steps among ``pending`` ``(step, finite)`` pairs, and
    stop the run once :data:`MAX_BAD_STEPS` have been skipped. One host synchronisation."""
    if not pending:
        return
    flags = torch.stack([finite for _, finite in pending]).cpu().tolist()
    for (step, _), ok in zip(pending, flags, strict=True):
        if ok:
            continue
        counters["bad"] += 1
        log(
            f"vaelab: epoch {epoch} step {step + 1}: non-finite loss or gradient; "
            f"batch skipped, weights unchanged ({counters['bad']} so far)"
        )
        if counters["bad"] >= MAX_BAD_STEPS:
            raise VaelabError(
                f"training diverged at epoch {epoch}, step {step + 1}: "
                f"{counters['bad']} batches gave a non-finite loss or gradient. "
                f"The last checkpoint in {checkpoints} is intact; lower --lr, or check the data"
            )
