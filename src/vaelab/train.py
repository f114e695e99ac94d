"""The training loop, in one place: data -> model -> objective -> step -> log -> run folder.

A run is built in ``OUT.partial`` and renamed to ``OUT`` only when it is complete, so a
folder named ``OUT`` always holds a finished run, and an existing run is replaced (with
``overwrite``) only once its successor is complete. Every ``checkpoint_every`` epochs the
loop writes ``OUT.partial/checkpoints/last.safetensors`` (weights, Adam's moments, the random
generators, the counters), from which :func:`resume` continues the run exactly: on the CPU,
a run killed at any point and resumed ends with the same weights, bit for bit, as one never
stopped. A non-finite loss or gradient never reaches the weights: the batch is skipped, and
after ``MAX_BAD_STEPS`` such batches the run stops with the last checkpoint intact.

Launched by torchrun, the same loop runs data-parallel (:mod:`vaelab.distributed`): each
process takes its share of every global batch, DDP averages the gradients, and rank 0 alone
writes the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from . import compiled, distributed
from . import data as data_mod
from .checkpoint import (
    default_out,
    load_training_state,
    load_weights,
    partial_of,
    prepare_out,
    save_model,
    save_training_state,
    save_weights,
    write_atomic,
    write_json,
)
from .config import Config, make_config, read_toml
from .device import resolve_device
from .errors import VaelabError
from .evaluate import evaluate_elbo
from .factor import Critic
from .inference import evaluate_local
from .model import VAE
from .schedules import kl_weight, lr_factor
from .steps import all_finite, guarded_step

PROGRESS_EVERY = 20  # steps between progress-bar updates: each costs one host sync
STREAM_VALID_ROWS = 10_000  # streamed data: validation examples scored after each epoch
# q_i moves once per epoch, when example i is in a batch: it needs larger steps than the
# weights (follows the weights' schedule, scaled)
LOCAL_LR = 0.05
LOCAL_SCORE_N = 500  # examples scored with fitted q per epoch, without an encoder
MAX_BAD_STEPS = 10  # batches with a non-finite loss or gradient a run may skip before it stops


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
    log, progress = _quiet_unless_main(log, progress)
    out = Path(config.out) if config.out else default_out(config)
    config = dataclasses.replace(config, out=str(out))  # the caller's object stays as it was
    config, setup = _setup(config, log)
    # rank 0 makes the folder; its refusal (out exists, ...) stops every rank
    partial = distributed.on_main(prepare_out, out, overwrite) or partial_of(out)
    return _complete(setup, config, out, partial, progress, log, resume=False)


def _quiet_unless_main(log, progress):
    """Under torchrun, ranks other than 0 print nothing and draw no progress bar."""
    if distributed.launched() and os.environ.get("RANK", "0") != "0":
        return (lambda _: None), False
    return log, progress


def resume(run: str | Path, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Continue the unfinished run ``run`` (built in ``run.partial``) from its last checkpoint.

    The run goes on exactly as it would have without the interruption (on the CPU, bit for
    bit; under a ``minutes`` budget, with the time it had left). A finished run is left as
    it is.
    """
    log, progress = _quiet_unless_main(log, progress)
    out = Path(run)
    if out.name.endswith(".partial"):
        out = out.with_name(out.name[: -len(".partial")])
    partial = partial_of(out)
    if not partial.is_dir():
        if (out / "summary.json").is_file():
            log(f"vaelab: {out} is a finished run; there is nothing to resume")
            return out
        raise VaelabError(f"there is no unfinished run at {partial}; check the path")
    if (partial / "summary.json").is_file() and (partial / "model.safetensors").is_file():
        # it was complete, stopped while being renamed into place
        distributed.on_main(_publish, partial, out)
        log(f"vaelab: {out} was complete; it is now in place")
        return out
    for name in ("config.toml", "metrics.jsonl"):
        if not (partial / name).is_file():
            raise VaelabError(f"{partial} has lost its {name}; start again with --overwrite")
    if not (partial / "checkpoints" / "last.safetensors").is_file():
        raise VaelabError(
            f"{partial} stopped before its first checkpoint; start it again with --overwrite"
        )
    config = make_config(read_toml(partial / "config.toml"))
    config, setup = _setup(config, log)
    return _complete(setup, config, out, partial, progress, log, resume=True)


def _setup(config: Config, log):
    """The data and the freshly initialised model (seeded), checked before anything is written.

    Returns the config with its likelihood and binarization resolved from the data."""
    device = resolve_device(config.device)
    dataset = data_mod.from_config(config)
    _check_data(dataset, config)
    # after the checks, so that a mistake stops every rank before any waits for another
    device = distributed.init(device)
    likelihood, binarization, reason = data_mod.choose_likelihood(
        dataset, config.likelihood, config.binarize
    )
    if reason:
        log(f"vaelab: {reason}")
    config = dataclasses.replace(config, likelihood=likelihood, binarize=binarization)
    _warn_bernoulli_on_grey(dataset, config, log)
    torch.manual_seed(config.seed)  # weights' initialisation and the reparameterization noise
    model = VAE.from_config(config, dataset.x_shape, len(dataset.train))
    if config.inference == "local":
        model.encoder.requires_grad_(False)  # unused: q_i(z) per example instead
    if config.decoder_bias == "data":
        train_x = dataset.train
        model.init_output_bias(train_x.mean()[None] if dataset.streamed else train_x)
    model = model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"vaelab: {config.arch} VAE, {n_params:,} parameters, latent {config.latent_dim}, "
        f"{config.likelihood} likelihood, binarization {binarization}, device {device}"
        + (f"; streaming {config.data} from disk" if dataset.streamed else "")
    )
    return config, (model, dataset, binarization, device, n_params)


def _complete(setup, config, out: Path, partial: Path, progress, log, resume: bool) -> Path:
    """Fit, save, score, draw; then rename ``partial`` to ``out``."""
    model, dataset, binarization, device, n_params = setup
    main = distributed.is_main()
    try:
        if not resume and main:  # atomic, like every file of a run: --resume rebuilds from it
            write_atomic(partial / "config.toml", config.to_toml())
            if dataset.transform:  # a table's standardization, to encode new rows alike
                write_json(partial / "data.json", dataset.transform)
        with distributed.lost_contact():  # every rank takes part until the test score
            metrics = _fit(
                model, dataset, config, binarization, device, partial, progress, log, resume
            )
            summary = _summarise(model, dataset, config, binarization, metrics, n_params)
        if not main:
            return out
        save_model(partial, model, config)
        write_json(partial / "summary.json", summary)
        from .plots import draw_run

        draw_run(model, dataset, metrics, partial / "plots", binarization)
    except OSError as exc:  # a full disk, a folder made read-only under us, ...
        if not main:
            raise
        if (partial / "checkpoints" / "last.safetensors").is_file():
            hint = f"its last checkpoint is intact: make room, then --resume {out}"
        else:
            shutil.rmtree(partial, ignore_errors=True)
            hint = "nothing was kept: make room and start again"
        raise VaelabError(
            f"cannot write the run in {partial} ({exc.strerror or exc}); {hint}"
        ) from None
    except BaseException:
        log(f"vaelab: training stopped; the unfinished run is in {partial}")
        raise
    _write_report(partial, out, log)
    _publish(partial, out)
    log(
        f"vaelab: test ELBO {summary['test']['elbo']:.2f} nats "
        f"(reconstruction {summary['test']['reconstruction']:.2f}, KL {summary['test']['kl']:.2f})"
    )
    log(f"vaelab: run written to {out}/ ; plots in {out / 'plots'}/")
    if (out / "report.html").is_file():
        log(f"vaelab: open {out / 'report.html'} to see the run on one page")
    return out


def _write_report(partial: Path, out: Path, log) -> None:
    """RUN/report.html, written (atomically) into the run before it is published; a report
    that cannot be written costs a warning, never the run."""
    from .report import write_report

    try:
        write_report(partial)
    except Exception as exc:  # noqa: BLE001  (any failure here must leave the run intact)
        log(f"vaelab: warning: no report.html ({exc}); write it with: vaelab report {out}")


def _publish(partial: Path, out: Path) -> None:
    """Put the complete run ``partial`` in place as ``out``, by renames only: a kill at any
    moment leaves either the old ``out`` or the new one whole (and ``--resume`` finishes the
    job). The checkpoints go last: the finished run's model.safetensors supersedes them."""
    old = out.with_name(out.name + ".old")
    if out.exists():
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def _check_data(dataset, config: Config) -> None:
    n_train = len(dataset.train)
    if n_train == 0 or len(dataset.valid) == 0 or len(dataset.test) == 0:
        raise VaelabError(f"data {config.data!r} has an empty split; it needs more examples")
    if config.batch_size > n_train:
        raise VaelabError(
            f"--batch-size {config.batch_size} is larger than the {n_train} training "
            "examples; choose a smaller batch"
        )
    if not dataset.streamed and not torch.isfinite(dataset.train).all():
        raise VaelabError(f"data {config.data!r} contains NaN or Inf; clean it first")
    if config.inference == "local" and dataset.streamed:
        raise VaelabError(
            "--inference local keeps a posterior for every training example, in memory; "
            "stream with the encoder (--inference amortized), or use --stream off"
        )
    if distributed.launched() and (
        config.inference == "local" or config.minutes or config.factor_gamma or config.tc_beta
    ):
        raise VaelabError(
            "under torchrun, train with the encoder (no --inference local), --epochs "
            "(no --minutes), and without --factor-gamma or --tc-beta: each would need state, "
            "clocks or the whole batch's codes shared between processes"
        )
    if config.arch in ("conv", "gated-conv") and dataset.kind != "images":
        raise VaelabError(
            f"--arch {config.arch} needs images, and {config.data!r} holds {dataset.kind} of "
            f"shape {dataset.x_shape}; use --arch mlp"
        )


def _bernoulli_on_grey(dataset, config: Config) -> bool:
    """A Bernoulli likelihood on grey levels left as they are: its "log-likelihood" is a
    cross-entropy, not the log of any density of the data, so its numbers compare to nothing."""
    return (
        config.likelihood == "bernoulli"
        and config.binarize == "none"
        and not data_mod.is_binary(dataset.train[: 1 << 16])
    )


def _warn_bernoulli_on_grey(dataset, config: Config, log) -> None:
    if _bernoulli_on_grey(dataset, config):
        log(
            "vaelab: warning: a Bernoulli likelihood on grey-level data that is not "
            "binarized is not a log-likelihood; its numbers are not comparable (summary.json "
            'says "comparable": false). Binarize (--binarize dynamic), or model the grey '
            "levels with --likelihood continuous-bernoulli, --likelihood logistic "
            "(discretized, for 8-bit images) or --likelihood gaussian."
        )


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


def _fit(model, dataset, config, binarization, device, run_dir: Path, progress, log, resume):
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
    objective = _maybe_compiled(objective, model, config, device, x_train, total_steps, log)
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
                x_train, batch_size, generator, binarization == "dynamic", device
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
                b = len(x) if weight > 0 else 0
                values = torch.stack(
                    [
                        loss.detach() * b,
                        # the ELBO itself, also under the IWAE objective (whose loss is -L_K)
                        (terms.reconstruction - terms.kl).detach().sum(),
                        terms.reconstruction.detach().sum(),
                        terms.kl.detach().sum(),
                        torch.tensor(float(b), device=device),
                    ]
                ).double()
                if weight == 0:  # a stand-in row (more ranks than rows): counts for nothing
                    values = torch.zeros_like(values)
                sums += torch.where(finite, values, torch.zeros_like(values))
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
            valid = _score(model, x_valid, config)
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
                **_kl_per_dim_record(model, x_valid, config),
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


def _maybe_compiled(objective, model, config, device, x_train, total_steps: int, log):
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
    params = [p for p in model.parameters() if p.requires_grad]
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


def _score(model, x, config) -> dict:
    """ELBO, reconstruction and KL of ``x``: under the encoder's q, or, for a model trained
    without one (``--inference local``), under per-datapoint q fitted to at most
    ``LOCAL_SCORE_N`` of the examples (see :func:`vaelab.inference.evaluate_local`)."""
    if config.inference == "local":
        return evaluate_local(model, x[:LOCAL_SCORE_N], seed=config.seed)
    return evaluate_elbo(model, x, seed=config.seed, distributed=True)


# validation examples whose KL per dimension is logged each epoch: fewer under a mixture
# prior, whose per-dimension KL is Monte Carlo over K components (a VampPrior's 1,000 rows
# cost a fifth of an mnist-vamp epoch)
KL_PER_DIM_ROWS = 1000
KL_PER_DIM_ROWS_MIXTURE = 200


def _kl_per_dim_record(model, x, config) -> dict:
    """``valid_kl_per_dim``: the mean over (up to 1,000; 200 under a mixture prior) validation
    examples of each latent dimension's KL, so a collapsing dimension (KL -> 0) shows in
    metrics.jsonl epoch by epoch. Nothing for ``--inference local``, which has no encoder to
    ask."""
    if config.inference == "local":
        return {}
    from .evaluate import posterior_stats

    rows = KL_PER_DIM_ROWS if config.prior == "normal" else KL_PER_DIM_ROWS_MIXTURE
    with torch.random.fork_rng():  # a mixture prior's per-dimension KL is Monte Carlo
        torch.manual_seed(config.seed)
        _, _, kls = posterior_stats(model, x[:rows])
    return {"valid_kl_per_dim": kls.double().mean(0).tolist()}


def _summarise(model, dataset, config, binarization, metrics, n_params) -> dict:
    x_test = data_mod.eval_split(dataset, "test", binarization)
    test = _score(model, x_test, config)
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
        # false when the "log-likelihood" is not one (Bernoulli on grey levels)
        "comparable": not _bernoulli_on_grey(dataset, config),
    }
