"""Time to quality: test NLL against training minutes, vaelab beside what users would run.

    VAELAB_DATA=path/to/mnist python benchmarks/time_to_nll.py [--minutes 1 2 5 10 15]
        [--vaelab-minutes 1 2 5] [--systems pytorch-example pythae mnist-vae-fp32 ...]
        [--k 1000] [--n-test 2000] [--out FOLDER]

One after another on this machine, each system trains on MNIST's 50,000 training images and
is scored at points in wall-clock training time by vaelab's importance-sampled test NLL,
-log p^(x) with K samples (:func:`vaelab.evaluate.log_likelihood`), on the first
``--n-test`` test images, binarized once with vaelab's fixed seed
(:func:`vaelab.data.eval_split`): the same binary images for every system. The NLL is a
property of p(z) and the decoder alone; the encoder only proposes the z.

- ``pytorch-example``: the pytorch/examples VAE recipe (``ReferenceVAE`` and
  ``reference_loss`` of throughput.py: 784-400-20 ReLU MLP, BCE summed, Adam 1e-3, batch
  128). The original trains on grey levels; here each batch is binarized afresh as it is
  drawn (a new Bernoulli draw every epoch), so that its Bernoulli likelihood is the one it
  is scored on, as for every other system. One model trains on; when the training clock
  (which stops while scoring) passes a point, the weights are copied into the equivalent
  vaelab model (:func:`twin`) and scored there.
- ``pythae``: pythae's ``VAE`` (BCE reconstruction) on the same networks, trained by its
  ``BaseTrainer`` with its default settings (Adam 1e-4, batch 64, the validation split
  choosing the kept model), the epochs unbounded: a callback watches the clock, scores the
  model the trainer keeps at each point, and stops it after the last. Needs the ``bench``
  extra (``pip install -e '.[bench]'``).
- ``mnist-vae-fp32``, ``mnist-vae-bf16``, ``mnist-vamp-fp32``, ``mnist-vamp-bf16``: vaelab's
  presets with ``--precision``. The model after m minutes is a run given ``minutes = m``
  (its cosine schedule fits the budget: how a user runs it), so each point is its own run:
  they cost the sum of ``--vaelab-minutes``.

Prints the machine's load at the start and the end, a Markdown table (NLL +- standard
error at each point, nats), where the JSON of every figure and the plot (NLL against
minutes, one line per system) were written, and last the headline: the best peer's NLL at
its last point, and the first point at which each vaelab system reached it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vaelab import VAE, Config, evaluate, load, train
from vaelab import data as data_mod
from vaelab.build import build_model
from vaelab.config import make_config
from vaelab.config.presets import preset

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402
from throughput import ReferenceVAE, reference_loss  # noqa: E402

try:  # the bench extra; without it the pythae row cannot run
    from pythae.data.datasets import BaseDataset, DatasetOutput
    from pythae.models import VAE as PythaeVAE
    from pythae.models import VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
except ImportError:
    BaseDataset = BaseEncoder = BaseDecoder = TrainingCallback = object
    PythaeVAE = None

X_SHAPE = (1, 28, 28)
HIDDEN, LATENT = 400, 20  # the pytorch/examples networks, for both peers
PEERS = {"pytorch-example": "pytorch/examples VAE", "pythae": "pythae VAE"}
OURS = {
    f"{name}-{precision}": (name, precision)
    for name in ("mnist-vae", "mnist-vamp")
    for precision in ("fp32", "bf16")
}
SYSTEMS = [*PEERS, *OURS]
DEFAULT_MINUTES = [1.0, 2.0, 5.0, 10.0, 15.0]


# --- the peers' weights, scored by vaelab -----------------------------------------------------


def reference_config() -> Config:
    """The vaelab configuration of the peers' model: 784-400-20 ReLU MLP, Bernoulli p(x|z),
    N(0, I) prior."""
    return Config(
        data="mnist",
        arch="mlp",
        hidden=[HIDDEN],
        latent_dim=LATENT,
        activation="relu",
        likelihood="bernoulli",
    )


def reference_state(model: ReferenceVAE) -> dict[str, torch.Tensor]:
    """``model``'s weights under vaelab's names: ``enc.i`` -> ``encoder.net.i``, ``dec.i`` ->
    ``decoder.net.i`` (both are Sequential(Linear, ReLU, Linear), layer for layer)."""
    prefixes = {"enc.": "encoder.net.", "dec.": "decoder.net."}
    return {
        prefixes[name[:4]] + name[4:]: tensor.detach().clone()
        for name, tensor in model.state_dict().items()
    }


def twin(state: dict[str, torch.Tensor]) -> VAE:
    """The vaelab model of :func:`reference_config` holding ``state`` (vaelab's names; every
    weight present, nothing left over). Its decoder's logits ``(*batch, 1, 28, 28)`` are the
    peer's, so p(x | z) = Bernoulli(sigmoid(logits)) and p(x) are the peer's own."""
    model = build_model(reference_config(), X_SHAPE)
    model.load_state_dict(state, strict=True)
    return model.eval()


def score(model: VAE, x_test: torch.Tensor, k: int, seed: int) -> dict:
    """vaelab's importance-sampled NLL of ``x_test`` ``(N, 1, 28, 28)`` under ``model``, with
    the seconds it took."""
    start = time.perf_counter()
    ll = evaluate.log_likelihood(model.eval(), x_test, k=k, seed=seed)
    return {
        "nll": ll["nll_nats"],
        "nll_se": ll["nll_se"],
        "ess_mean": ll["ess_mean"],
        "eval_seconds": time.perf_counter() - start,
    }


class Checkpoints:
    """Scores a training model as its training time passes each of ``minutes``.

    The clock starts on construction and stops while scoring, so a point's minutes are
    training alone. ``due`` is asked after every step; the points a step passes together
    share one score of the same weights."""

    def __init__(self, minutes: list[float], scorer: Callable[[VAE], dict], label: str):
        self.todo, self.scorer, self.label = sorted(minutes), scorer, label
        self.points: list[dict] = []
        self.paused = 0.0
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def due(self, state: Callable[[], dict], steps: int, epochs: float) -> bool:
        """Score ``state()`` (vaelab's names) if a point has passed; True once the last has."""
        seconds = self.seconds()
        passed = [m for m in self.todo if seconds >= 60 * m]
        if passed:
            pause = time.perf_counter()
            result = self.scorer(twin(state()))
            for minutes in passed:
                point = {
                    "minutes": minutes,
                    "train_seconds": seconds,
                    "steps": steps,
                    "epochs": epochs,
                    **result,
                }
                self.points.append(point)
                report(self.label, point)
            self.todo = self.todo[len(passed) :]
            self.paused += time.perf_counter() - pause
        return not self.todo


def report(label: str, point: dict) -> None:
    print(
        f"{label}: {point['minutes']:g} min: NLL {point['nll']:.2f} ± {point['nll_se']:.2f} "
        f"after {point['epochs']:.1f} epochs ({point['train_seconds']:.0f} s trained, "
        f"scored in {point['eval_seconds']:.0f} s)",
        flush=True,
    )


# --- (a) the pytorch/examples recipe ----------------------------------------------------------


def train_pytorch_example(
    x_train: torch.Tensor, minutes: list[float], scorer, seed: int, batch: int = 128
) -> list[dict]:
    """pytorch/examples' VAE on ``x_train`` ``(N, 1, 28, 28)`` grey levels, each batch
    binarized as it is drawn, until the last of ``minutes``; the points scored."""
    torch.manual_seed(seed)
    checkpoints = Checkpoints(minutes, scorer, PEERS["pytorch-example"])
    model = ReferenceVAE(HIDDEN, LATENT)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x_train.flatten(1)), batch_size=batch, shuffle=True)
    steps = 0
    while True:
        for (xb,) in loader:
            loss = reference_loss(model, torch.bernoulli(xb))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if checkpoints.due(lambda: reference_state(model), steps, steps / len(loader)):
                return checkpoints.points


# --- (b) pythae's VAE and trainer -------------------------------------------------------------


class PythaeEncoder(BaseEncoder):
    """The reference encoder for pythae: x -> 784-400 ReLU -> (loc, log_var), 20 each."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))

    def forward(self, x):
        loc, log_var = self.net(x.flatten(1)).chunk(2, dim=-1)
        return ModelOutput(embedding=loc, log_covariance=log_var)


class PythaeDecoder(BaseDecoder):
    """The reference decoder for pythae: z -> 400 ReLU -> 784 -> sigmoid, ``(B, 1, 28, 28)``
    (pythae's BCE takes probabilities; vaelab's twin takes the logits before the sigmoid)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 784))

    def forward(self, z):
        return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).unflatten(-1, X_SHAPE))


def pythae_model() -> PythaeVAE:
    """pythae's VAE with the reference networks; its state dict has vaelab's names."""
    config = VAEConfig(input_dim=X_SHAPE, latent_dim=LATENT, reconstruction_loss="bce")
    return PythaeVAE(config, encoder=PythaeEncoder(), decoder=PythaeDecoder())


class Rebinarized(BaseDataset):
    """Grey-level images ``(N, 1, 28, 28)``, each binarized afresh whenever it is read."""

    def __getitem__(self, index):
        return DatasetOutput(data=torch.bernoulli(self.data[index]), labels=self.labels[index])


class BudgetSpent(Exception):
    """Raised by :class:`OnTheClock` after the last point: ends pythae's training."""


class OnTheClock(TrainingCallback):
    """After each of the trainer's steps: score the model it keeps (the best on validation
    so far, the current one before the first epoch ends) at each point due; stop after the
    last."""

    def __init__(self, checkpoints: Checkpoints, steps_per_epoch: int):
        self.checkpoints, self.steps_per_epoch, self.steps = checkpoints, steps_per_epoch, 0
        self.trainer = None

    def on_train_step_end(self, training_config, **kwargs):
        self.steps += 1
        kept = getattr(self.trainer, "_best_model", None)
        kept = kwargs["model"] if kept is None else kept
        epochs = self.steps / self.steps_per_epoch
        if self.checkpoints.due(kept.state_dict, self.steps, epochs):
            raise BudgetSpent


def train_pythae(
    x_train, x_valid, minutes: list[float], scorer, seed: int, folder: Path
) -> list[dict]:
    """pythae's ``BaseTrainer`` with its defaults on ``x_train`` (binarized afresh whenever
    read) and ``x_valid`` (binary), until the last of ``minutes``; the points scored. Its
    progress bars go to ``folder/pythae.log``."""
    checkpoints = Checkpoints(minutes, scorer, PEERS["pythae"])
    config = BaseTrainerConfig(output_dir=str(folder), num_epochs=10**9, seed=seed)
    callback = OnTheClock(
        checkpoints, math.ceil(len(x_train) / config.per_device_train_batch_size)
    )
    folder.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(BaseTrainer.__module__)
    level = logger.level
    logger.setLevel(logging.WARNING)  # its per-epoch lines: ours report the points
    try:
        with open(folder / "pythae.log", "w") as log, contextlib.redirect_stderr(log):
            trainer = BaseTrainer(
                pythae_model(),
                Rebinarized(x_train, torch.zeros(len(x_train))),
                BaseDataset(x_valid, torch.zeros(len(x_valid))),
                training_config=config,
                callbacks=[callback],
            )
            callback.trainer = trainer
            trainer.train()
    except BudgetSpent:
        return checkpoints.points
    finally:
        logger.setLevel(level)
    raise RuntimeError("pythae's trainer ended before the budget")  # 10**9 epochs: never


# --- (c) vaelab's presets ---------------------------------------------------------------------


def train_vaelab(
    system: str, minutes: list[float], data_dir: str, seed: int, folder: Path, scorer
) -> list[dict]:
    """One run of the preset and precision ``system`` names per point, given that many
    minutes, in ``folder/SYSTEM-Mmin``; the kept model of each scored."""
    name, precision = OURS[system]
    points = []
    for m in sorted(minutes):
        config = make_config(
            preset(name),
            data="mnist",
            data_dir=data_dir,
            minutes=m,
            precision=precision,
            seed=seed,
            out=str(folder / f"{system}-{m:g}min"),
        )
        run = train(config, overwrite=True, progress=False, log=lambda _: None)
        summary = json.loads((run / "summary.json").read_text())
        point = {
            "minutes": m,
            "train_seconds": summary["train_seconds"],
            "epochs": summary["epochs"],
            "kept_epoch": summary["kept_epoch"],
            **scorer(load(run)),
        }
        points.append(point)
        report(system, point)
    return points


# --- the output -------------------------------------------------------------------------------


def label(system: str) -> str:
    return PEERS.get(system, f"vaelab {system}")


def table(results: dict[str, list[dict]]) -> str:
    """Markdown: one row per system, one column per point (NLL +- s.e., nats; '-': not run)."""
    minutes = sorted({p["minutes"] for points in results.values() for p in points})
    lines = [
        "| system | " + " | ".join(f"{m:g} min" for m in minutes) + " |",
        "| --- |" + " --- |" * len(minutes),
    ]
    for system, points in results.items():
        by_minute = {p["minutes"]: p for p in points}
        cells = [
            f"{by_minute[m]['nll']:.2f} ± {by_minute[m]['nll_se']:.2f}" if m in by_minute else "-"
            for m in minutes
        ]
        lines.append(f"| {label(system)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], k: int, n_test: int) -> Figure:
    """Test NLL against training minutes, one line per system (peers dashed), error bars of
    one standard error."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for system, points in results.items():
        ax.errorbar(
            [p["minutes"] for p in points],
            [p["nll"] for p in points],
            yerr=[p["nll_se"] for p in points],
            marker="o",
            capsize=3,
            linestyle="--" if system in PEERS else "-",
            label=label(system),
        )
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel(f"test NLL (nats; K = {k}, {n_test} images)")
    ax.set_title("binarized MNIST: test NLL against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def headline(results: dict[str, list[dict]]) -> tuple[str, dict]:
    """The best peer's NLL at its last point, and the first point at which each vaelab
    system's NLL was at most that: (one line, its figures)."""
    finals = {s: max(pts, key=lambda p: p["minutes"]) for s, pts in results.items() if s in PEERS}
    if not finals:
        return "headline: no peer was trained (see --systems), so there is nothing to reach", {}
    peer = min(finals, key=lambda s: finals[s]["nll"])
    target, at = finals[peer]["nll"], finals[peer]["minutes"]
    figures = {"peer": peer, "peer_nll": target, "peer_minutes": at, "reached": {}}
    parts = []
    for system, points in results.items():
        if system in PEERS:
            continue
        reached = [
            p["minutes"] for p in sorted(points, key=lambda p: p["minutes"]) if p["nll"] <= target
        ]
        first = reached[0] if reached else None
        figures["reached"][system] = first
        if first is None:
            last = max(p["minutes"] for p in points)
            parts.append(f"{system} not reached within {last:g} minutes")
        else:
            parts.append(f"{system} reached it at {first:g} min ({at / first:.1f}x sooner)")
    line = f"headline: best peer {label(peer)}: {target:.2f} nats after {at:g} min"
    return line + ("; " + "; ".join(parts) if parts else "; no vaelab system was trained"), figures


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} cores"


# --- the command ------------------------------------------------------------------------------


def positive(text: str) -> float:
    """argparse type: a number of minutes > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"minutes must be > 0, not {text}")
    return value


def parse_args(
    argv: list[str] | None = None,
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=positive,
        nargs="+",
        default=DEFAULT_MINUTES,
        help="points in training time to score at (default: 1 2 5 10 15)",
    )
    parser.add_argument(
        "--vaelab-minutes",
        type=positive,
        nargs="+",
        help="vaelab's points, each its own run (default: --minutes)",
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        default=SYSTEMS,
        metavar="SYSTEM",
        help=f"which systems to train, of {', '.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument("--k", type=int, default=1000, help="importance samples per image")
    parser.add_argument("--n-test", type=int, default=2000, help="the first N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        help="folder for the JSON, the plot and the runs (default: a new temporary folder)",
    )
    add_data_option(parser)
    args = parser.parse_args(argv)
    if args.k < 1 or args.n_test < 1:
        parser.error("--k and --n-test must be >= 1")
    if "pythae" in args.systems and PythaeVAE is None:
        parser.error(
            "pythae is not installed: pip install -e '.[bench]', or leave it out with --systems"
        )
    args.minutes = sorted(set(args.minutes))
    args.vaelab_minutes = sorted(set(args.vaelab_minutes or args.minutes))
    args.systems = list(dict.fromkeys(args.systems))
    return parser, args


def main(argv: list[str] | None = None) -> int:
    parser, args = parse_args(argv)
    dataset = load_mnist(parser, args)  # before training: a wrong folder is a usage error
    x_test = data_mod.eval_split(dataset, "test", "dynamic")
    if args.n_test > len(x_test):
        parser.error(f"--n-test {args.n_test} exceeds the {len(x_test)} test images")
    x_test = x_test[: args.n_test]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="time_to_nll-"))
    out.mkdir(parents=True, exist_ok=True)

    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}"
    )
    load_start = os.getloadavg()
    print(f"{machine}; load at the start: {load_line()}", flush=True)

    def scorer(model: VAE) -> dict:
        return score(model, x_test, args.k, args.seed)

    results: dict[str, list[dict]] = {}
    for system in args.systems:
        if system == "pytorch-example":
            results[system] = train_pytorch_example(dataset.train, args.minutes, scorer, args.seed)
        elif system == "pythae":
            x_valid = data_mod.eval_split(dataset, "valid", "dynamic")
            results[system] = train_pythae(
                dataset.train, x_valid, args.minutes, scorer, args.seed, out / "pythae"
            )
        else:
            results[system] = train_vaelab(
                system, args.vaelab_minutes, args.data_dir, args.seed, out / "runs", scorer
            )

    line, figures = headline(results)
    record = {
        "machine": machine,
        "load_start": list(load_start),
        "load_end": list(os.getloadavg()),
        "k": args.k,
        "n_test": args.n_test,
        "seed": args.seed,
        "systems": {s: {"label": label(s), "points": points} for s, points in results.items()},
        "headline": {**figures, "text": line},
    }
    (out / "time_to_nll.json").write_text(json.dumps(record, indent=2) + "\n")
    fig = plot(results, args.k, args.n_test)
    fig.savefig(out / "time_to_nll.png", dpi=120)
    print()
    print(table(results))
    print()
    print(f"load at the end: {load_line()}")
    print(f"figures: {out / 'time_to_nll.json'}; plot: {out / 'time_to_nll.png'}")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
