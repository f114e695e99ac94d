"""Evaluation speed: the importance-sampled log-likelihood, against the matmul bound.

    VAELAB_DATA=path/to/mnist python benchmarks/eval_speed.py [--run RUN] [--n 10000] [--k 5000]

Scores the first ``--n`` MNIST test images (all 10,000 by default) with K importance samples
each (``vaelab.evaluate.log_likelihood``: batches of 100 images, 20 samples each at a time) and
prints the rate in samples (image x z pairs) per second, the bound for that rate from this
machine's measured matrix-product rate at the evaluation's own shapes, their ratio, and the
process's peak resident memory. The model is ``--run``'s, or else a freshly initialised
784-400-20 MLP VAE: the speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch

from vaelab import Config, VaelabError, load
from vaelab import data as data_mod
from vaelab.build import build_model
from vaelab.evaluate import EVAL_ROWS, log_likelihood

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402
from throughput import add_bound_options, rate_windows  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained run (default: a fresh 784-400-20 MLP VAE)")
    parser.add_argument("--n", type=int, default=10_000, help="test images (default all)")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image")
    add_data_option(parser)
    add_bound_options(parser, 3, "before the estimate and as many after")
    args = parser.parse_args()
    if args.bound_windows < 1 or args.bound_seconds <= 0:
        parser.error("--bound-windows must be >= 1 and --bound-seconds > 0")
    x = data_mod.eval_split(load_mnist(parser, args), "test", "dynamic")[: args.n]
    if args.run:
        try:
            model = load(args.run)
        except VaelabError as error:  # not a run folder: one line, status 2
            parser.error(str(error))
    else:
        torch.manual_seed(0)
        config = Config(likelihood="bernoulli", hidden=[400], latent_dim=20)
        model = build_model(config, (1, 28, 28)).eval()
    # per (image, z) pair the decoder runs all its layers, on chunk x 100 rows at a time (the
    # default chunk: EVAL_ROWS // 100 samples); the encoder's cost (once per image) is K times
    # smaller and left out of the bound. The bound is the faster of the matmul rates at those
    # rows and at 50,000 rows, so a chunk size cannot flatter the ratio. The machine's rate
    # drifts, so each is the median of windows before and after the estimate
    layers = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    shapes = [(m.in_features, m.out_features) for m in layers]
    rows = max(1, EVAL_ROWS // 100) * 100
    windows = args.bound_windows, args.bound_seconds
    small, large = rate_windows(rows, shapes, *windows), rate_windows(50_000, shapes, *windows)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    result = log_likelihood(model, x, k=args.k)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    small += rate_windows(rows, shapes, *windows)
    large += rate_windows(50_000, shapes, *windows)
    bound = max(statistics.median(small), statistics.median(large))
    rate = len(x) * args.k / seconds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| images | K | NLL (nats) | seconds | samples/s | bound | ratio | peak RSS (GiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {len(x):,} | {args.k:,} | {result['nll_nats']:.2f} | {seconds:.0f} | {rate:,.0f} "
        f"| {bound:,.0f} | {rate / bound:.2f} | {peak:.2f} (before: {before:.2f}) |"
    )
    spread = small if statistics.median(small) >= statistics.median(large) else large
    low, high = min(spread), max(spread)
    print(f"bound: the median of {len(spread)} windows of {args.bound_seconds:g} s before and "
          f"after; they ranged over {low:,.0f} to {high:,.0f} samples/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
