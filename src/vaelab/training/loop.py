"""The training loop: epochs of shuffled batches -> objective -> guarded step -> per-epoch
metrics, checkpoints and the best weights. Read :func:`fit` top to bottom; one epoch's steps
are :func:`train_epoch`, one step :func:`train_step`.

Each step: this rank's share of the batch, the learning rate and KL weight of the schedules,
the objective (:func:`vaelab.build.batch_terms`, compiled where :mod:`.compiled` says so),
backward, and an Adam step only if the loss and every gradient are finite (:mod:`.guard`).
The host looks at the device only every ``PROGRESS_EVERY`` steps. :mod:`vaelab.runs` sets a
run up around this loop (data, model, run folder) and finishes it (test score, plots, report).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .. import data as data_mod
from .. import ranks
from ..checkpoint import (
    load_training_state,
    load_weights,
    read_metrics,
    save_training_state,
    save_weights,
)
from ..device import PRECISIONS
from ..errors import VaelabError
from ..files import write_atomic
from . import compiled, distributed
from .critic import Critic
from .guard import BadSteps, all_finite, guarded_step, step_sums
from .records import EpochLog
from .schedules import kl_weight, lr_factor

PROGRESS_EVERY = 20  # steps between progress-bar updates: each costs one host sync
STREAM_VALID_ROWS = 10_000  # streamed data: validation examples scored after each epoch
# q_i moves once per epoch, when example i is in a batch: it needs larger steps than the
# weights (follows the weights' schedule, scaled)
LOCAL_LR = 0.05


@dataclass
class LoopState:
    """Where a run stands: saved in every checkpoint (as JSON), so a resumed run goes on from
    here. ``elapsed`` is training seconds so far; ``bad`` counts skipped non-finite steps."""

    epoch: int = 0
    best_epoch: int = 0
    best_elbo: float = -math.inf
    elapsed: float = 0.0
    bad: int = 0
    start_elbo: float = math.nan  # the first batch's ELBO, before any step (guard.check_elbo)

    @classmethod
    def from_counters(cls, counters: dict, path: Path) -> LoopState:
        """The state a checkpoint's counters describe; counters of the wrong names or types
        are one :class:`VaelabError` naming ``path``."""
        kinds = {f.name: int if f.type == "int" else float for f in dataclasses.fields(cls)}
        counters = {"start_elbo": math.nan, **counters}  # checkpoints from before it was kept
        wrong = sorted(set(counters) ^ set(kinds)) + [
            name
            for name, kind in kinds.items()
            if name in counters
            and (
                isinstance(counters[name], bool)
                or not isinstance(counters[name], int if kind is int else (int, float))
                or (kind is int and counters[name] < 0)
            )
        ]
        if wrong:
            raise VaelabError(
                f"{path} holds counters that are not a run's ({', '.join(wrong)}); "
                "it belongs elsewhere"
            )
        return cls(**counters)


@dataclass
class StepSetup:
    """What every step of a run uses and does not change: the model, its objective (under
    torchrun wrapped in DDP, maybe compiled), the optimizer and FactorVAE's critic."""

    model: torch.nn.Module
    objective: Callable
    optimizer: torch.optim.Optimizer
    params: list[torch.Tensor]
    fused: bool  # fused Adam skips a non-finite step on the device, without a host sync
    critic: Critic | None
    config: object
    n_data: int
    steps_per_epoch: int
    total_steps: int
    run_start: float  # perf_counter() when the run started, less the time of earlier sessions
    fault: tuple[int, int] | None  # VAELAB_FAULT_NAN's (epoch, step), for the tests


def fit(
    model,
    dataset,
    config,
    binarization: str,
    device: torch.device,
    run_dir: Path,
    validate: Callable[[torch.nn.Module, torch.Tensor], dict],
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train ``model`` on ``dataset``; return the list of per-epoch metric records.

    Each epoch binarizes and shuffles the whole training set at once, then steps through it
    by index; then ``validate(model, x_valid)`` scores it (``valid_elbo`` and friends). Stops
    after ``epochs``, or before an epoch that would end past the ``minutes`` budget. The
    model ends with the weights of the best validation ELBO when ``keep_best``.
    """
    generator = torch.Generator().manual_seed(config.seed)  # data order and binarization
    x_train = _on_device(_training_split(dataset, binarization, config.seed), device)
    # memory for each epoch's binarization, taken once (a fresh one costs page faults)
    dynamic = binarization == "dynamic"
    buffer = torch.empty_like(x_train) if dynamic and not dataset.streamed else None
    x_valid = data_mod.eval_split(dataset, "valid", binarization)
    if dataset.streamed:  # each epoch's score on a fixed slice; the test score uses all
        x_valid = x_valid[:STREAM_VALID_ROWS]
    # fused Adam: one kernel for every parameter, and it can skip a step on the device (its
    # found_inf input), which spares the hot loop a host synchronisation per step
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, eps=config.adam_eps, fused=fused or None
    )
    # FactorVAE: the discriminator that estimates TC(z), with its own Adam
    critic = Critic(config.latent_dim, device) if config.factor_gamma else None
    checkpoints = run_dir / "checkpoints"
    state, metrics = LoopState(), []
    if resume:
        state, metrics = _resume(run_dir, model, optimizer, generator, critic, log)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    params = [p for p in model.parameters() if p.requires_grad]
    run_start = time.perf_counter() - state.elapsed  # compiling counts towards the budget
    # the networks' arithmetic in the steps (validation and the test score stay float32);
    # the objective is compiled under it, as it will run; runs._prepare resolved "auto"
    compute = functools.partial(model.computing_in, PRECISIONS[config.precision])
    with compute():
        objective = _objective(model, config, device, x_train, params, total_steps, log)
    setup = StepSetup(
        model=model,
        objective=objective,
        optimizer=optimizer,
        params=params,
        fused=fused and config.inference != "local",  # local q_i step themselves, on the host
        critic=critic,
        config=config,
        n_data=len(x_train),
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        run_start=run_start,
        fault=_fault_steps(),
    )
    budget = 60.0 * config.minutes if config.minutes else math.inf
    bad = BadSteps(state, checkpoints, log)
    bar = _progress_bar(config, state, steps_per_epoch, budget, progress)
    main = ranks.is_main()
    with bar, compute(), EpochLog(run_dir if main else None, resume, config.log) as epoch_log:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            start = time.perf_counter()
            if metrics and start - run_start + metrics[-1]["seconds"] > budget:
                break  # the next epoch would end past the budget
            model.train()
            # a fresh draw x ~ Bernoulli(pixels) every epoch with dynamic binarization
            batches = data_mod.epoch_batches(
                x_train, config.batch_size, generator, dynamic, device, buffer
            )
            sums, lr, beta = train_epoch(setup, batches, epoch, device, bar, bad, progress)
            ranks.all_reduce_sum(sums)  # the epoch's metrics over every rank's rows
            seen = int(sums[4].item())
            train_seconds = time.perf_counter() - start
            mean_loss, elbo, rec, kl = (sums[:4] / max(seen, 1)).tolist()
            bad.check_elbo(elbo, epoch, lr)  # before this epoch's checkpoint: the last is good
            model.eval()
            with model.computing_in(None):
                valid = validate(model, x_valid)
            if config.keep_best and valid["valid_elbo"] > state.best_elbo:
                state.best_elbo, state.best_epoch = valid["valid_elbo"], epoch
                if main:
                    save_weights(checkpoints / "best.safetensors", model)
            record = {
                "epoch": epoch,
                "train_loss": mean_loss,
                "train_elbo": elbo,
                "train_reconstruction": rec,
                "train_kl": kl,
                **valid,
                "lr": lr,
                "beta": beta,
            }
            if "valid_kl_per_dim" in valid:  # after the schedules' values, as it always was
                record["valid_kl_per_dim"] = record.pop("valid_kl_per_dim")
            record["seconds"] = time.perf_counter() - start  # all of the epoch's work
            record["train_samples_per_sec"] = seen / train_seconds
            metrics.append(record)
            epoch_log.write(record)  # metrics.jsonl, and TensorBoard if asked
            state.epoch, state.elapsed = epoch, time.perf_counter() - run_start
            if main and config.checkpoint_every and epoch % config.checkpoint_every == 0:
                counters = dataclasses.asdict(state)
                last = checkpoints / "last.safetensors"
                save_training_state(last, model, optimizer, generator, counters, critic)
            if progress:
                bar.write(
                    f"epoch {epoch:3d}  train ELBO {elbo:9.3f}  valid ELBO "
                    f"{valid['valid_elbo']:9.3f}  (rec {valid['valid_reconstruction']:.2f}, "
                    f"KL {valid['valid_kl']:.2f})  {record['seconds']:.1f}s",
                    file=sys.stderr,
                )
    if config.keep_best and 0 < state.best_epoch != len(metrics):
        if main:
            model.load_state_dict(load_weights(checkpoints / "best.safetensors"))
        ranks.broadcast_weights(model)  # the file is rank 0's
        log(f"vaelab: keeping the weights of epoch {state.best_epoch}, the best validation ELBO")
    return metrics


def train_epoch(setup: StepSetup, batches, epoch: int, device, bar, bad: BadSteps, progress: bool):
    """The steps of one epoch over ``batches`` of ``(index, x)``: ``(sums, lr, beta)``, the
    running sums of (loss, elbo, reconstruction, kl, examples) on the device, and the last
    step's learning rate and KL weight. The host looks every ``PROGRESS_EVERY`` steps."""
    config, per_epoch = setup.config, setup.steps_per_epoch
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    pending: list[tuple[int, torch.Tensor]] = []  # (step, finite), checked in bulk
    for i, (index, x) in enumerate(batches):
        global_step = (epoch - 1) * per_epoch + i
        elapsed = time.perf_counter() - setup.run_start
        lr = config.lr * lr_factor(config, global_step, setup.total_steps, elapsed)
        beta = kl_weight(config, epoch - 1 + i / per_epoch)
        finite, step_sum = train_step(setup, x, index, lr, beta, epoch, i, global_step)
        if math.isnan(bad.state.start_elbo):  # the guard's reference: the first finite step's
            first = ranks.all_reduce_sum(step_sum.clone())  # every rank decides alike
            if first[4] > 0:
                bad.state.start_elbo = (first[1] / first[4]).item()
        sums += step_sum
        pending.append((i, finite))
        if not config.minutes:
            bar.update()
        if (i + 1) % PROGRESS_EVERY == 0 or i + 1 == per_epoch:
            bad.check(pending, epoch)
            pending = []
            _show_progress(bar, sums, epoch, config, setup.run_start, progress)
    bad.check(pending, epoch)
    return sums, lr, beta


def train_step(
    setup: StepSetup, x, index, lr: float, beta: float, epoch: int, i: int, global_step: int
):
    """One optimizer step on the batch ``x`` ``(B, *x_shape)`` (rows ``index`` of the training
    set): ``(finite, sums)``, whether the step was taken (0-dim bool, on the device) and its
    share of the epoch's metric sums (:func:`step_sums`)."""
    config, model, optimizer = setup.config, setup.model, setup.optimizer
    distributed.fault(global_step)
    # this rank's rows of the global batch (all of them in one process), and the weight
    # that makes DDP's average of the ranks' gradients the batch's
    share, weight = distributed.shard(len(x))
    n_global = len(x)
    x, index = x[share], None if index is None else index[share]
    for group in optimizer.param_groups:
        group["lr"] = lr
    options = {
        "n_data": setup.n_data,
        "discriminator": setup.critic and setup.critic.discriminator,
    }
    with distributed.global_noise(model, share, n_global):
        terms, rows = setup.objective(x, index, beta, global_step, **options)
    loss = terms.loss
    fault = setup.fault
    if fault and (fault == (epoch, i) or fault[1] == -1 and epoch >= fault[0]):
        loss = loss * math.nan
    optimizer.zero_grad(set_to_none=True)
    (loss if weight == 1.0 else loss * weight).backward()
    # the step touches the weights only when the loss and every gradient are finite: decided
    # on the device (fused Adam skips the step), or by one host synchronisation where fused
    # Adam is not available or per-example posteriors (--inference local) take their own step
    grads = [p.grad for p in setup.params] + ([rows.grad] if rows is not None else [])
    finite = ranks.all_finite(all_finite(loss, grads))  # all ranks, or none
    guarded_step(optimizer, finite, setup.fused)
    if rows is not None and finite.item():
        model.local.adam_step(index, rows.grad, LOCAL_LR * lr / config.lr)
    if setup.critic is not None:  # FactorVAE: then the discriminator's own step
        setup.critic.step(model, x)
    # a stand-in row (more ranks than rows) counts for nothing
    counted = finite if weight > 0 else torch.zeros_like(finite)
    return finite, step_sums(loss, terms, len(x), counted)


def _training_split(dataset, binarization: str, seed: int):
    """The training examples; binarized once here with ``static`` binarization."""
    x_train = dataset.train
    if binarization == "static" and dataset.streamed:
        return x_train.binarized(seed + 1)
    if binarization == "static":
        return data_mod.binarize(x_train, torch.Generator().manual_seed(seed + 1))
    return x_train


def _on_device(x_train, device: torch.device):
    """The training split moved to a GPU once, where it fits in a quarter of the free memory
    with its binarization buffer, so that no epoch copies it over again; else as it is
    (the CPU's, a streamed file's, or one too large: copied a batch at a time)."""
    if device.type != "cuda" or not isinstance(x_train, torch.Tensor):
        return x_train
    free, _ = torch.cuda.mem_get_info(device)
    if 2 * x_train.numel() * x_train.element_size() > free / 4:
        return x_train
    return x_train.to(device)


def _resume(run_dir: Path, model, optimizer, generator, critic, log):
    """The state and metrics of the checkpoint in ``run_dir``, loaded into the model, the
    optimizer, the generators and the critic; metrics.jsonl cut back to the checkpoint."""
    last = run_dir / "checkpoints" / "last.safetensors"
    counters = load_training_state(last, model, optimizer, generator, critic)
    state = LoopState.from_counters(counters, last)
    metrics = _read_metrics(run_dir, state.epoch)
    if ranks.is_main():  # the log cut back atomically: a second kill loses nothing
        write_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
    log(f"vaelab: resuming {run_dir} after epoch {state.epoch}")
    return state, metrics


def _read_metrics(run_dir: Path, epochs: int) -> list[dict]:
    """The first ``epochs`` records of a run's metrics.jsonl (later ones postdate the
    checkpoint)."""
    path = run_dir / "metrics.jsonl"
    metrics = read_metrics(run_dir)[:epochs]
    if len(metrics) != epochs or not all("seconds" in m for m in metrics):
        raise VaelabError(f"{path} does not hold the {epochs} epochs its checkpoint has done")
    return metrics


def _objective(model, config, device, x_train, params, total_steps: int, log):
    """:func:`vaelab.build.batch_terms` under ``config``; under torchrun wrapped in DDP, whose
    backward all-reduces the gradients; through ``torch.compile`` when ``config.compile``
    asks for it and it works (:mod:`.compiled`). Compiling happens here, inside the run's
    clock."""
    objective = distributed.objective(model, config, device)
    wanted, why_not = compiled.wanted(config, device, ranks.world_size(), total_steps)
    if why_not:
        log(f"vaelab: --compile on: {why_not}")
    if not wanted or len(x_train) < config.batch_size:
        return objective
    fast = compiled.CompiledObjective(objective, config.batch_size, len(x_train))
    fast.prepare(x_train[: config.batch_size].to(device), params, log)
    return fast


def _progress_bar(config, state: LoopState, steps_per_epoch: int, budget: float, progress):
    """One bar over every step of the run (over the budget's seconds, under ``minutes``)."""
    return tqdm(
        total=config.epochs * steps_per_epoch if not config.minutes else round(budget),
        initial=state.epoch * steps_per_epoch if not config.minutes else 0,
        desc="training",
        unit="step" if not config.minutes else "s",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _show_progress(bar, sums, epoch: int, config, run_start: float, progress: bool) -> None:
    if not progress:
        return
    running, _, rec, kl = (sums[:4] / sums[4].clamp(min=1)).tolist()
    if config.minutes:
        bar.n = min(round(time.perf_counter() - run_start), bar.total)
    bar.set_postfix_str(
        f"epoch {epoch}  loss {running:.2f}  rec {rec:.2f}  kl {kl:.2f}",
        refresh=config.minutes > 0,
    )


def _fault_steps() -> tuple[int, int] | None:
    """Fault injection for the tests and docs/reliability.md: ``VAELAB_FAULT_NAN=E:S`` makes
    the loss NaN at step S of epoch E (``E:`` at every step from epoch E on)."""
    spec = os.environ.get("VAELAB_FAULT_NAN")
    if not spec:
        return None
    epoch, _, step = spec.partition(":")
    return int(epoch), int(step) if step else -1
