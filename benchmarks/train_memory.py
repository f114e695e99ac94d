"""Peak memory of a full MNIST training run, as a user starts it.

    VAELAB_DATA=path/to/mnist python benchmarks/train_memory.py [--epochs 10] [-- FLAGS]

Runs ``vaelab train --data mnist`` (784-400-20 MLP by default; FLAGS after ``--`` are passed
on, e.g. ``-- --preset mnist-vae``) in a child process from start to finish: loading the
60,000 training images, every epoch with its validation score and checkpoint, the test
score, the plots and the report. Prints the wall time and the child's own peak resident
memory (``benchmarks/peak.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import peak

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    add_data_option(parser)
    parser.add_argument("flags", nargs="*", help="more `vaelab train` flags, after --")
    args = parser.parse_args()
    load_mnist(parser, args)  # a wrong folder is a usage error, not a failed training run
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        command = ["train", "--data", "mnist", "--data-dir", args.data_dir,
                   "--epochs", str(args.epochs), *args.flags, "--out", run, "--quiet"]  # fmt: skip
        start = time.perf_counter()
        gib, result = peak.run(command)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"train_memory.py: training failed: {result.stderr.strip()}")
    print("| command | epochs | wall s | peak RSS (GiB) |")
    print("| --- | --- | --- | --- |")
    shown = " ".join(["vaelab train --data mnist", *args.flags])
    print(f"| `{shown}` | {args.epochs} | {seconds:.0f} | {gib:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
