"""Data-parallel throughput: samples/s of one training process against W under torchrun.

    python benchmarks/distributed.py [--processes 2] [--epochs 3] [--batch-size 256]

Trains the 784-400-20 MLP VAE (Bernoulli decoder, the mnist-vae shape) on generated binary
784-pixel data, the same run three ways: 1 process with 1 thread, 1 process with W threads
(all the cores in one process), and W processes of 1 thread each under
``torchrun --nproc-per-node W`` (gloo on the CPU). samples/s is the median over the epochs
after the first of the run's own ``train_samples_per_sec`` (global examples over the
training seconds of an epoch). Also prints what one step sends between processes: DDP
all-reduces the gradient, one float32 per parameter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def write_data(path: Path, n: int) -> None:
    """``n`` binary 28x28 images as a uint8 .npy (0 or 255, so scaled to 0/1 on load)."""
    rng = np.random.default_rng(0)
    x = (rng.random((n, 28, 28)) < 0.13).astype(np.uint8) * 255  # MNIST's ink fraction
    np.save(path, x)


def run(data: Path, out: Path, processes: int, threads: int, args) -> dict:
    """One training run; its summary and median samples/s after the first epoch."""
    train = ["train", "--data", str(data), "--hidden", "400", "--latent-dim", "20"]
    train += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    train += ["--out", str(out), "--quiet", "--checkpoint-every", "0", "--device", "cpu"]
    if processes == 1:
        cmd = [sys.executable, "-m", "vaelab", *train]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc-per-node={processes}", "-m", "vaelab", *train]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"benchmark run failed:\n{done.stderr}")
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    rates = [m["train_samples_per_sec"] for m in epochs[1:]] or [
        epochs[0]["train_samples_per_sec"]
    ]
    return {"samples_per_sec": statistics.median(rates), "n_parameters": summary["n_parameters"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n", type=int, default=20_000, help="examples (80%% train)")
    args = parser.parse_args()
    w = args.processes
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "binary.npy"
        write_data(data, args.n)
        rows = [
            (1, 1, run(data, Path(tmp) / "p1t1", 1, 1, args)),
            (1, w, run(data, Path(tmp) / f"p1t{w}", 1, w, args)),
            (w, 1, run(data, Path(tmp) / f"p{w}t1", w, 1, args)),
        ]
    base = rows[0][2]["samples_per_sec"]
    n_params = rows[0][2]["n_parameters"]
    print(
        f"784-400-20 MLP VAE, {n_params:,} parameters, global batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs; gradient all-reduced per step: {4 * n_params / 1e6:.2f} MB"
    )
    print()
    print("| processes | threads each | samples/s | vs 1 process, 1 thread |")
    print("|---|---|---|---|")
    for processes, threads, result in rows:
        rate = result["samples_per_sec"]
        print(f"| {processes} | {threads} | {rate:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
