"""Amortized versus per-datapoint (local) inference in training, at equal wall-clock budgets.

    VAELAB_DATA=path/to/mnist python benchmarks/amortization.py --minutes 1

For each training-set size (the first 1,000 or 10,000 of MNIST's 50,000 training images, or
all 50,000) the mnist-vae model is trained twice for the same budget: with its encoder, and
with one Gaussian q_i per training image and no encoder (``--inference local``). Both are then
scored on the first ``--n-test`` MNIST test images: -log p^(x) by importance sampling with K
samples, the proposal being the encoder's q for the amortized model and, for the local model
(which has no q for new images), q* fitted to each test image by :func:`fit_local` (from the
prior, ``--fit-steps`` Adam steps at learning rate 0.05, 10 samples a step). Prints one
Markdown table: size, inference, epochs, training seconds per epoch (validation excluded),
test NLL +- s.e.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vaelab import data as data_mod
from vaelab import evaluate, load
from vaelab.config import make_config
from vaelab.config.presets import preset
from vaelab.core.inference import fit_local
from vaelab.runs import train

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402


def _subset_file(dataset, n: int, folder: Path) -> str:
    """An .npy of the first n / 0.8 training images: vaelab's 80/10/10 split of an array file
    then trains on n of them."""
    path = folder / f"mnist-{n}.npy"
    np.save(path, dataset.train[: round(n / 0.8)].numpy())
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="budget per training run")
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--fit-steps", type=int, default=300)
    add_data_option(parser)
    parser.add_argument("--out", default="runs/bench-amortization")
    args = parser.parse_args()
    mnist = load_mnist(parser, args)
    x_test = data_mod.eval_split(mnist, "test", "dynamic")[: args.n_test]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            data = "mnist" if size == len(mnist.train) else _subset_file(mnist, size, Path(tmp))
            for inference in ("amortized", "local"):
                config = make_config(
                    preset("mnist-vae"), data=data, data_dir=args.data_dir,
                    minutes=args.minutes, inference=inference,
                    out=f"{args.out}/{size}-{inference}",
                )  # fmt: skip
                run = train(config, overwrite=True, progress=False, log=lambda _: None)
                summary = json.loads((run / "summary.json").read_text())
                model = load(run)
                start = time.perf_counter()
                q = None
                if inference == "local":
                    q = fit_local(
                        model, x_test, steps=args.fit_steps, init="prior", lr=0.05, samples=10
                    ).posteriors
                log_px, _ = evaluate.importance_sampled_log_px(model, x_test, k=args.k, q=q)
                nll = -log_px
                rows.append(
                    f"| {size:,} | {inference} | {summary['epochs']} | "
                    f"{summary['n_train'] / summary['train_samples_per_sec']:.2f} | "
                    f"{nll.mean().item():.2f} ± {(nll.std() / len(nll) ** 0.5).item():.2f} | "
                    f"{time.perf_counter() - start:.0f} |"
                )
                print(rows[-1], flush=True)
    print(
        f"\n{args.minutes:g} min of training per run; test NLL on {args.n_test} test images, "
        f"K = {args.k}\n"
    )
    print("| training images | inference | epochs | s / epoch | test NLL (nats) | eval s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
