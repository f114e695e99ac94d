"""The MNIST benchmark: train a preset under a wall-clock budget, then score the test set.

    VAELAB_DATA=../shared/data/mnist python benchmarks/mnist_nll.py --preset mnist-vae --minutes 30
        [--precision auto|fp32|bf16] [--epochs N]

Protocol (docs/benchmarks.md): 50,000 training images binarized afresh every epoch, 10,000
validation images (binarized once) choose the kept weights, 10,000 test images binarized once
with a fixed seed; the test -log p(x) is the importance-sampled estimate with K = 5000.
Prints one Markdown table row: preset, minutes, epochs, test ELBO, test NLL +- s.e., active
units, and the time the evaluation took. ``--precision`` sets the training's (the scoring is
float32 always); ``--epochs N`` trains N epochs without a time budget, to compare runs at equal
epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from vaelab import data as data_mod
from vaelab import evaluate, load
from vaelab.checkpoint import load_config
from vaelab.config import make_config
from vaelab.config.presets import PRESETS, preset
from vaelab.device import resolve_device
from vaelab.runs import train

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="mnist-vae")
    parser.add_argument(
        "--minutes", type=float, help="training budget (default: the preset's, else 30)"
    )
    parser.add_argument("--epochs", type=int, help="train this many epochs, without a time budget")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="run folder (default runs/bench-PRESET)")
    add_data_option(parser)
    args = parser.parse_args()
    load_mnist(parser, args)  # before training: a wrong folder is a usage error
    if args.epochs is not None and (args.epochs < 1 or args.minutes is not None):
        parser.error("--epochs must be at least 1, and excludes --minutes")

    budget = {}
    if args.epochs is not None:
        budget = {"epochs": args.epochs, "minutes": 0.0}
        args.minutes = 0.0
    elif args.minutes is None:
        args.minutes = preset(args.preset).get("minutes") or 30.0
    out = Path(args.out or f"runs/bench-{args.preset}")
    config = make_config(
        preset(args.preset),
        data_dir=args.data_dir,
        minutes=args.minutes,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        **budget,
        out=str(out),
    )
    run = train(config, overwrite=True, progress=False)
    summary = json.loads((run / "summary.json").read_text())

    model = load(run, device=resolve_device(args.device))  # scored where it trained
    x_test = data_mod.eval_split(data_mod.load("mnist", args.data_dir), "test", "dynamic")
    start = time.perf_counter()
    ll = evaluate.log_likelihood(model, x_test, k=args.k, seed=config.seed)
    eval_seconds = time.perf_counter() - start
    means = evaluate.posterior_means(model, x_test)
    row = {
        "preset": args.preset,
        "minutes": args.minutes,
        "precision": load_config(run).precision,  # what auto chose
        "train_seconds": summary["train_seconds"],
        "epochs": summary["epochs"],
        "kept_epoch": summary["kept_epoch"],
        "test_elbo": summary["test"]["elbo"],
        "test_nll": ll["nll_nats"],
        "test_nll_se": ll["nll_se"],
        "k": args.k,
        "ess_mean": ll["ess_mean"],
        "active_units": evaluate.active_units(means),
        "eval_seconds": eval_seconds,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (run / "benchmark.json").write_text(json.dumps(row, indent=2) + "\n")
    print(
        "| preset | precision | minutes | epochs (kept) | test ELBO | test NLL, K=5000 "
        "| active units | eval time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {row['preset']} | {row['precision']} | {row['train_seconds'] / 60:.1f} | "
        f"{row['epochs']} "
        f"({row['kept_epoch']}) | {row['test_elbo']:.2f} | {row['test_nll']:.2f} ± "
        f"{row['test_nll_se']:.2f} | {row['active_units']} | {eval_seconds / 60:.1f} min |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
