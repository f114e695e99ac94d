"""A training run from a configuration to a published run folder: check the data, build the
model, fit it (:mod:`vaelab.training.loop`), score it, draw its plots and report, publish it.

A run is built in ``OUT.partial`` and renamed to ``OUT`` only when it is complete, so a
folder named ``OUT`` always holds a finished run. Complete means: every file written
atomically, the plots and the report drawn, and ``manifest.json`` (every file with its size
and SHA-256) written last; ``--resume`` of a trained run without one draws what is missing.
Commands that add files to a published run (``plot``, ``report``, ``sample``) list them in
its manifest too. An existing run is replaced (with ``overwrite``) only once its successor
is complete. Every ``checkpoint_every`` epochs the
loop writes ``OUT.partial/checkpoints/last.safetensors`` (weights, Adam's moments, the random
generators, the counters), from which :func:`resume` continues the run exactly: on the CPU,
a run killed at any point and resumed ends with the same weights, bit for bit, as one never
stopped. A non-finite loss or gradient never reaches the weights: the batch is skipped, and
after ``MAX_BAD_STEPS`` such batches (:mod:`vaelab.training.guard`) the run stops with the
last checkpoint intact.

Launched by torchrun, the same loop runs data-parallel (:mod:`vaelab.training.distributed`):
each process takes its share of every global batch, DDP averages the gradients, and rank 0
alone writes the run.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from . import data as data_mod
from . import ranks
from .build import build_model
from .checkpoint import load_transform, open_run, read_metrics, save_model
from .config import CONV_ARCHS, Config, default, make_config, read_toml
from .core.model import VAE
from .core.networks import CONV_SIZES
from .device import fork_rng, resolve_device, resolve_precision
from .errors import VaelabError
from .evaluate import posterior_stats
from .evaluate.validation import score, validation_record
from .files import MANIFEST, remove_temporaries, write_atomic, write_json, write_manifest
from .plots import ACTIVE_KL, PLOT_EXAMPLES, draw_run
from .report import write_report
from .training.guard import checkpoint_status
from .training.loop import fit
from .training.records import check_tracking, log_plots


def train(
    config: Config,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data=None,
) -> Path:
    """Train a VAE as ``config`` says; return the finished run folder.

    ``data``, the data in memory instead of ``config.data``: a NumPy array or torch tensor
    ``(N, ...)``, an ``(x, y)`` pair with integer labels ``y``, or a map-style torch
    ``Dataset`` of such items (:mod:`vaelab.data.memory`). The run keeps a copy as
    ``data.npz``, so it resumes and is scored from its folder like any other.

    Every check a user's input can fail happens before anything is written; an ``out`` that
    may not be written, before the data are even loaded.
    """
    config.validate()
    log, progress = _quiet_unless_main(log, progress)
    if data is not None:
        if config.data != default("data"):
            raise VaelabError(
                f"give the data once: train(config, data=...) or Config(data={config.data!r})"
            )
        config = dataclasses.replace(config, data=data_mod.IN_RUN)
    out = Path(config.out) if config.out else default_out(config)
    config = dataclasses.replace(config, out=str(out))  # the caller's object stays as it was
    check_out(out, overwrite)  # every rank: they see one file system, and none waits yet
    with tempfile.TemporaryDirectory(prefix="vaelab-data-") as staging:
        # data in memory is read as the run will read its data.npz: from a file
        staged = None if data is None else Path(staging) / data_mod.RUN_DATA
        if staged is not None:
            staged.write_bytes(data_mod.npz_bytes(data))
        run = _prepare_staged(config, staged, log)
        # rank 0 makes the folder and holds its lock; its refusal (out exists, ...) stops all
        partial, lock = ranks.on_main(prepare_out, out, overwrite) or (partial_of(out), None)
        if staged is not None and lock is not None:
            write_atomic(partial / data_mod.RUN_DATA, staged.read_bytes())
    try:
        return _complete(run, out, partial, progress, log, resume=False)
    finally:
        if lock is not None:
            lock.release()


def _prepare_staged(config: Config, staged: Path | None, log) -> Prepared:
    """:func:`_prepare` of ``config``, or of the data in memory written to ``staged``; a
    mistake in those data is named as the caller's, not by the temporary file's name."""
    if staged is None:
        return _prepare(config, log)
    try:
        run = _prepare(dataclasses.replace(config, data=str(staged)), log)
    except VaelabError as exc:
        raise VaelabError(str(exc).replace(str(staged), "the data given to train()")) from None
    return dataclasses.replace(run, config=dataclasses.replace(run.config, data=config.data))


def _quiet_unless_main(log, progress):
    """Under torchrun, ranks other than 0 print nothing and draw no progress bar."""
    if ranks.launched() and os.environ.get("RANK", "0") != "0":
        return (lambda _: None), False
    return log, progress


def default_out(config: Config) -> Path:
    if config.data == data_mod.IN_RUN:
        name = "arrays"
    elif config.data in ("digits", "mnist"):
        name = config.data
    else:
        name = Path(config.data).stem
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def partial_of(out: str | Path) -> Path:
    """Where the run ``out`` is built until it is complete: ``OUT.partial``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


class RunLock:
    """One process per run folder: an advisory lock (``flock``) on ``OUT.partial/.lock``, taken
    before anything in the folder is touched and held until the run is published or the
    process ends; the OS releases it when a process dies, however it dies. A second process
    (a second ``train --out`` or a ``--resume`` of a run still training) gets one line."""

    NAME = ".lock"

    def __init__(self, partial: Path):
        partial.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(partial / self.NAME, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.release()
            raise VaelabError(
                f"{partial} is in use by another vaelab process; wait for it to finish, or "
                "train into another --out"
            ) from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that exists, unless ``overwrite`` and it is a vaelab run (or empty).
    :func:`train` asks before loading anything, :func:`prepare_out` again when it makes the
    folder (something may have appeared meanwhile)."""
    if out.exists():
        if not overwrite:
            raise VaelabError(
                f"output folder {out} exists; choose another --out or pass --overwrite"
            )
        if not out.is_dir() or (any(out.iterdir()) and not (out / "config.toml").is_file()):
            raise VaelabError(
                f"{out} exists and is not a vaelab run; --overwrite only replaces runs"
            )


def prepare_out(out: Path, overwrite: bool) -> tuple[Path, RunLock]:
    """Check ``out`` may be written (:func:`check_out`); return the fresh ``.partial`` folder
    to build the run in, and its lock, held.

    An unfinished run that has a checkpoint is not thrown away without ``overwrite``; one
    that another process holds, not at all."""
    check_out(out, overwrite)
    partial = partial_of(out)
    try:
        lock = RunLock(partial)
    except OSError as exc:
        raise VaelabError(f"cannot create the run folder {partial}: {exc}") from None
    try:
        if (partial / "checkpoints" / "last.safetensors").is_file() and not overwrite:
            raise VaelabError(
                f"{partial} holds an unfinished run; continue it with --resume {out}, "
                "or start over with --overwrite"
            )
        for child in partial.iterdir():  # all but the lock this process holds
            if child.name != RunLock.NAME:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        (partial / "plots").mkdir()
        (partial / "checkpoints").mkdir()
    except OSError as exc:
        lock.release()
        raise VaelabError(f"cannot create the run folder {partial}: {exc}") from None
    except BaseException:
        lock.release()
        raise
    return partial, lock


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
    lock = ranks.on_main(RunLock, partial)  # rank 0 holds it; a run still training refuses
    try:
        return _resume(out, partial, progress, log)
    finally:
        if lock is not None:
            lock.release()


def _resume(out: Path, partial: Path, progress, log) -> Path:
    if ranks.is_main():  # a kill in the middle of a write leaves its temporary file behind
        for path in remove_temporaries(partial):
            log(f"vaelab: removed {path}, left by an interrupted write")
    if (partial / MANIFEST).is_file():  # complete, stopped while being renamed into place
        ranks.on_main(_publish, partial, out)
        log(f"vaelab: {out} was complete; it is now in place")
        return out
    if _trained(partial):  # trained and scored, stopped before its plots, report or manifest
        if not ranks.is_main():
            return out
        log(f"vaelab: {partial} is trained; drawing its plots and report")
        run = open_run(partial)
        metrics = read_metrics(partial)
        return _finish(run.model, run.data(), metrics, run.config, partial, out, log)
    for name in ("config.toml", "metrics.jsonl"):
        if not (partial / name).is_file():
            raise VaelabError(f"{partial} has lost its {name}; start again with --overwrite")
    if not (partial / "checkpoints" / "last.safetensors").is_file():
        raise VaelabError(
            f"{partial} stopped before its first checkpoint; start it again with --overwrite"
        )
    # a run from before --precision existed trained in float32
    config = make_config({"precision": "fp32", **read_toml(partial / "config.toml")})
    run = _prepare(config, log, load_transform(partial) or {}, partial)  # data as first read
    return _complete(run, out, partial, progress, log, resume=True)


@dataclass
class Prepared:
    """A run ready to fit: its config with the likelihood and binarization resolved from the
    data, the data, and the freshly initialised (seeded) model on its device."""

    config: Config
    dataset: data_mod.Dataset
    model: VAE
    device: torch.device


def _prepare(
    config: Config, log, transform: dict | None = None, run_dir: Path | None = None
) -> Prepared:
    """The data and the freshly initialised model (seeded), checked before anything is
    written; ``transform`` and ``run_dir``, a resumed run's stored ``data.json`` and its folder
    (which holds data that came in memory). Each default the data
    decide (likelihood, binarization, σ, a batch no larger than the data) is printed with
    its reason."""
    device = resolve_device(config.device)
    check_tracking(config.log)
    dataset = data_mod.from_config(config, transform, run_dir)
    _check_data(dataset, config)
    # after the checks, so that a mistake stops every rank before any waits for another
    device = ranks.init(device)
    choice = data_mod.choose(dataset, config.likelihood, config.binarize)
    if choice.reason:
        log(f"vaelab: {choice.reason}")
    binarization = choice.binarize
    config = dataclasses.replace(config, likelihood=choice.likelihood, binarize=binarization)
    if choice.learn_sigma and not config.learn_sigma:  # one sigma: see data.choose
        config = dataclasses.replace(config, learn_sigma=True, shared_sigma=True)
    n_train = len(dataset.train)
    if config.batch_size > n_train:
        log(
            f"vaelab: --batch-size {config.batch_size} is more than the {n_train} training "
            f"examples: each step takes all {n_train}"
        )
        config = dataclasses.replace(config, batch_size=n_train)
    if data_mod.bernoulli_on_grey(dataset, config.likelihood, binarization):
        log(BERNOULLI_ON_GREY)
    precision, why = resolve_precision(config.precision, device, config.batch_size)
    if why:
        log(f"vaelab: {why}")
    config = dataclasses.replace(config, precision=precision)  # config.toml: what ran
    torch.manual_seed(config.seed)  # weights' initialisation and the reparameterization noise
    model = build_model(config, dataset.x_shape, len(dataset.train))
    if config.inference == "local":
        model.encoder.requires_grad_(False)  # unused: q_i(z) per example instead
    if config.decoder_bias == "data":
        train_x = dataset.train
        model.init_output_bias(train_x.mean()[None] if dataset.streamed else train_x)
    model = model.to(device)
    log(
        f"vaelab: {config.arch} VAE, {_n_parameters(model):,} parameters, latent "
        f"{config.latent_dim}, {config.likelihood} likelihood, binarization {binarization}, "
        f"device {device}" + (f"; streaming {config.data} from disk" if dataset.streamed else "")
    )
    return Prepared(config, dataset, model, device)


def _n_parameters(model: VAE) -> int:
    return sum(p.numel() for p in model.parameters())


def _complete(run: Prepared, out: Path, partial: Path, progress, log, resume: bool) -> Path:
    """Fit, save and score the model; then :func:`_finish` the run."""
    config, dataset, model = run.config, run.dataset, run.model
    main = ranks.is_main()
    try:
        if not resume and main:  # atomic, like every file of a run: --resume rebuilds from it
            write_atomic(partial / "config.toml", config.to_toml())
            if dataset.stored():  # standardization and class names: encode uses them
                write_json(partial / "data.json", dataset.stored())
        with ranks.lost_contact():  # every rank takes part until the test score
            validate = functools.partial(validation_record, config=config)
            metrics = fit(
                model, dataset, config, config.binarize, run.device, partial, validate,
                resume=resume, progress=progress, log=log,
            )  # fmt: skip
            summary = _summarise(model, dataset, config, metrics)
        if not math.isfinite(summary["test"]["elbo"]):  # never publish such a run
            raise _not_finite(summary, metrics, partial)
        if not main:
            return out
        save_model(partial, model, config)
        write_json(partial / "summary.json", summary)  # with the model: the run is trained
    except OSError as exc:  # a full disk, a folder made read-only under us, ...
        if not main:
            raise
        raise _cannot_write(partial, out, exc) from None
    except KeyboardInterrupt:
        if (partial / "checkpoints" / "last.safetensors").is_file():
            log(f"vaelab: interrupted; continue with vaelab train --resume {out}")
        else:
            log("vaelab: interrupted before the first checkpoint; run the same command again")
        raise
    except BaseException:
        log(f"vaelab: training stopped; the unfinished run is in {partial}")
        raise
    return _finish(model, dataset, metrics, config, partial, out, log)


def _finish(
    model: VAE, dataset, metrics: list[dict], config: Config, partial: Path, out: Path, log
) -> Path:
    """Draw the plots and the report of the trained, scored run in ``partial``, write its
    manifest last (every file with its size and SHA-256: the mark of a complete run), and
    publish it as ``out``. Every file is written atomically, so a kill here leaves whole files
    and no manifest, and ``--resume`` comes back here. Last, a posterior collapse is named."""
    binarization = config.resolved_binarize
    try:
        draw_run(model, dataset, metrics, partial / "plots", binarization)
        if config.log == "tensorboard":
            log_plots(partial)
        _write_report(partial, out, log)
        write_manifest(partial, skip=("checkpoints",))  # they go when the run is published
    except OSError as exc:
        raise _cannot_write(partial, out, exc) from None
    except BaseException:
        log(f"vaelab: drawing stopped; the trained run is in {partial}: --resume {out} draws it")
        raise
    _publish(partial, out)
    summary = json.loads((out / "summary.json").read_text())["test"]
    log(
        f"vaelab: test ELBO {summary['elbo']:.2f} nats "
        f"(reconstruction {summary['reconstruction']:.2f}, KL {summary['kl']:.2f})"
    )
    log(f"vaelab: run written to {out}/ ; plots in {out / 'plots'}/")
    if (out / "report.html").is_file():
        log(f"vaelab: open {out / 'report.html'} to see the run on one page")
    collapse = _collapse_warning(model, dataset, config)
    if collapse:
        log(collapse)
    return out


@torch.no_grad()
def _collapse_warning(model: VAE, dataset, config: Config) -> str:
    """The one line for a posterior collapse, else "": every latent dimension's mean
    KL(q(z_d | x) || p(z_d)) over the test set below :data:`ACTIVE_KL`, so q(z | x) is
    the prior whatever x is and the decoder has learnt to ignore z."""
    if config.inference == "local":  # its encoder is untrained: q_z(x) says nothing of the fit
        return ""
    x = data_mod.eval_split(dataset, "test", config.resolved_binarize)[:PLOT_EXAMPLES]
    with fork_rng(next(model.parameters()).device):  # a mixture prior's KL is Monte Carlo
        kl = posterior_stats(model.eval(), x)[2].mean(0)
    if not bool((kl < ACTIVE_KL).all()):
        return ""
    if config.likelihood != "gaussian":
        sigma = ""
    elif config.learn_sigma:
        sigma = ", a fixed --sigma (e.g. 0.05, without --learn-sigma)"
    else:
        sigma = f", a smaller --sigma (this run's: {config.sigma:g})"
    grey = len(model.x_shape) == 3 and model.x_shape[0] == 1  # colour: never binarized
    return (
        f"vaelab: warning: posterior collapse: every latent dimension's KL is below "
        f"{ACTIVE_KL} nats on the test set (largest {kl.max().item():.2g}), so z tells "
        f"the decoder nothing about x; try --kl-warmup 10, --free-bits 0.5{sigma}"
        + (", or --likelihood bernoulli" if grey and config.likelihood != "bernoulli" else "")
    )


def _not_finite(summary: dict, metrics: list[dict], partial: Path) -> VaelabError:
    """The one line for a test ELBO that is not finite: a diverged model, or test data the
    model cannot score (a validation ELBO that is finite says which)."""
    test, valid = summary["test"]["elbo"], metrics[-1].get("valid_elbo", math.nan)
    status = checkpoint_status(partial / "checkpoints")
    if math.isfinite(valid):
        return VaelabError(
            f"the test ELBO is {test} while the validation ELBO is {valid:.2f}: some test "
            f"examples have no finite likelihood under the model (values far outside the "
            f"training data?); check the test data. {status}"
        )
    return VaelabError(
        f"training diverged: the test ELBO is {test}. {status}; start again with a lower "
        "--lr, or check the data"
    )


def _cannot_write(partial: Path, out: Path, exc: OSError) -> VaelabError:
    """The one line for a write that failed: what is kept, and how to go on."""
    if _trained(partial):
        hint = f"the trained model is kept: make room, then --resume {out}"
    elif (partial / "checkpoints" / "last.safetensors").is_file():
        hint = f"its last checkpoint is intact: make room, then --resume {out}"
    else:
        shutil.rmtree(partial, ignore_errors=True)
        hint = "nothing was kept: make room and start again"
    return VaelabError(f"cannot write the run in {partial} ({exc.strerror or exc}); {hint}")


def _trained(partial: Path) -> bool:
    """Whether the run in ``partial`` is trained and scored (its plots may still be missing)."""
    return (partial / "summary.json").is_file() and (partial / "model.safetensors").is_file()


def _write_report(partial: Path, out: Path, log) -> None:
    """RUN/report.html, written (atomically) into the run before it is published; a report
    that cannot be drawn costs a warning, never the run (a failed write stops it, as any)."""
    try:
        write_report(partial)
    except OSError:
        raise
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
    (out / RunLock.NAME).unlink(missing_ok=True)  # the lock's file; its holder lets go next
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def record_in_manifest(run: str | Path, written: str | Path) -> None:
    """After a command has written ``written`` (a plot, the report, ...) into the finished run
    ``run``, list it in the run's manifest, so that the manifest keeps naming every file."""
    run = Path(run)
    if Path(written).resolve().is_relative_to(run.resolve()):
        write_manifest(run, skip=("checkpoints",))


def _check_data(dataset, config: Config) -> None:
    n_train = len(dataset.train)
    if n_train == 0 or len(dataset.valid) == 0 or len(dataset.test) == 0:
        raise VaelabError(f"data {config.data!r} has an empty split; it needs more examples")
    if not dataset.streamed and not torch.isfinite(dataset.train).all():
        raise VaelabError(f"data {config.data!r} contains NaN or Inf; clean it first")
    if config.inference == "local" and dataset.streamed:
        raise VaelabError(
            "--inference local keeps a posterior for every training example, in memory; "
            "stream with the encoder (--inference amortized), or use --stream off"
        )
    if ranks.launched() and (
        config.inference == "local" or config.minutes or config.factor_gamma or config.tc_beta
    ):
        raise VaelabError(
            "under torchrun, train with the encoder (no --inference local), --epochs "
            "(no --minutes), and without --factor-gamma or --tc-beta: each would need state, "
            "clocks or the whole batch's codes shared between processes"
        )
    if config.arch in CONV_ARCHS and dataset.kind != "images":
        raise VaelabError(
            f"--arch {config.arch} needs images, and {config.data!r} holds {dataset.kind} of "
            f"shape {dataset.x_shape}; use --arch mlp"
        )
    if config.arch in CONV_ARCHS:
        _check_conv_size(dataset, config)


def _check_conv_size(dataset, config: Config) -> None:
    """The conv networks take square images of the sides in ``CONV_SIZES``; for others, the
    nearest of those sides, by ``--image-size`` where vaelab can resize (image folders,
    shapes), else by resizing first."""
    _, height, width = dataset.x_shape
    if height == width and height in CONV_SIZES:
        return
    sides = sorted(CONV_SIZES)
    side = min(sides, key=lambda s: (abs(s - (height + width) / 2), s))
    what = f"--arch {config.arch} takes square {', '.join(f'{s}x{s}' for s in sides)} images"
    if config.data == "shapes" or dataset.files:  # files: an image folder's
        raise VaelabError(
            f"{what}, and these are {height}x{width}: add --image-size {side} to resize them "
            "(or use --arch mlp)"
        )
    raise VaelabError(
        f"{what}, and {config.data!r} holds {height}x{width}: use --arch mlp, or resize the "
        f"images to {side}x{side} first"
    )


BERNOULLI_ON_GREY = (
    "vaelab: warning: a Bernoulli likelihood on grey-level data that is not binarized is not a "
    'log-likelihood; its numbers are not comparable (summary.json says "comparable": false). '
    "Binarize (--binarize dynamic), or model the grey levels with --likelihood "
    "continuous-bernoulli, --likelihood logistic (discretized, for 8-bit images) or "
    "--likelihood gaussian."
)


def _summarise(model, dataset, config, metrics) -> dict:
    binarization = config.binarize
    x_test = data_mod.eval_split(dataset, "test", binarization)
    test = score(model, x_test, config)
    kept = max(metrics, key=lambda m: m["valid_elbo"]) if config.keep_best else metrics[-1]
    return {
        "data": config.data,
        "x_shape": list(dataset.x_shape),
        "n_train": len(dataset.train),
        "n_parameters": _n_parameters(model),
        "epochs": len(metrics),
        "kept_epoch": kept["epoch"],
        "budget_minutes": config.minutes or None,
        "train_seconds": sum(m["seconds"] for m in metrics),
        "train_samples_per_sec": metrics[-1]["train_samples_per_sec"],
        "valid": {k: kept[f"valid_{k}"] for k in ("elbo", "reconstruction", "kl")},
        "test": test,
        "units": "nats per example (log-densities summed over the data's dimensions)",
        # false when the "log-likelihood" is not one (Bernoulli on grey levels)
        "comparable": not data_mod.bernoulli_on_grey(dataset, config.likelihood, binarization),
    }
