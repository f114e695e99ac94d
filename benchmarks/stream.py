"""Training on a .npy larger than memory: samples/s and peak resident memory.

    VAELAB_DATA=path/to/mnist python benchmarks/stream.py [--gb 5] [--work DIR]

Builds a uint8 ``.npy`` of ``--gb`` gigabytes from MNIST's training images (repeated, each
copy in a fresh random order; 5 GB is 6.4 million 28 x 28 images, 25 GB as float32) in
``--work``, then, side by side in one run, trains one epoch of the same model (784-200-20
MLP, Bernoulli, batch 1024) on it streamed from disk (``--stream on``) and on MNIST's
50,000 training images held in memory. Each run is its own process, so its peak resident
memory (``VmHWM``, read by the child itself) is its own. Prints samples/s for both, their
ratio, and the peak RSS.
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

import peak as vaelab_peak

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402

MODEL = ["--hidden", "200", "--latent-dim", "20", "--batch-size", "1024", "--epochs", "1"]


def build(path: Path, gigabytes: float, mnist) -> int:
    """Write the big file by appending shuffled copies of ``mnist``'s training images."""
    images = (mnist.train.numpy()[:, 0] * 255).round()
    images = images.astype(np.uint8)
    n = int(gigabytes * 1e9) // images[0].size
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    rng = np.random.default_rng(0)
    for start in range(0, n, len(images)):
        stop = min(n, start + len(images))
        out[start:stop] = images[rng.permutation(len(images))[: stop - start]]
        out.flush()
    del out
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=5.0)
    parser.add_argument("--work", default=tempfile.gettempdir())
    add_data_option(parser)
    args = parser.parse_args()
    mnist = load_mnist(parser, args)  # the in-memory run's data too: a wrong folder stops here
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    big = work / f"mnist-{args.gb:g}gb.npy"
    if not big.exists():
        t = time.perf_counter()
        n = build(big, args.gb, mnist)
        print(f"built {big}: {n:,} images, {big.stat().st_size / 1e9:.2f} GB "
              f"in {time.perf_counter() - t:.0f} s", flush=True)  # fmt: skip
    del mnist  # each training run is a child process that loads its own
    rows = []
    for label, data in (("streamed", ["--data", str(big), "--stream", "on"]),
                        ("in memory", ["--data", "mnist"])):  # fmt: skip
        out = work / f"stream-bench-{label.replace(' ', '-')}"
        extra = ["--data-dir", args.data_dir] if label == "in memory" else []
        record, rss, seconds = measure([*data, *extra, *MODEL, "--out", str(out), "--overwrite"])
        rows.append((label, record["train_samples_per_sec"], rss, seconds))
        print(f"{label}: {record['train_samples_per_sec']:,.0f} samples/s, peak RSS "
              f"{rss:.2f} GiB, {seconds:.0f} s", flush=True)  # fmt: skip
    print("| data | samples/s | peak RSS (GiB) | wall s |")
    print("|---|---|---|---|")
    for label, rate, rss, seconds in rows:
        print(f"| {label} | {rate:,.0f} | {rss:.2f} | {seconds:.0f} |")
    print(f"streamed / in memory: {rows[0][1] / rows[1][1]:.2f}")


def measure(args: list[str]) -> tuple[dict, float, float]:
    """Train in a child process; its epoch record, its own peak RSS in GiB, wall seconds."""
    start = time.perf_counter()
    peak, result = vaelab_peak.run(["train", *args, "--quiet"])
    if result.returncode != 0:
        sys.exit(f"training failed: {result.stderr.strip()}")
    run_dir = Path(args[args.index("--out") + 1])
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return record, peak, time.perf_counter() - start


if __name__ == "__main__":
    main()
