"""Evaluation in bfloat16 against float32: the same importance-sampled estimate, the same noise.

    VAELAB_DATA=path/to/mnist python benchmarks/eval_precision.py RUN [RUN ...] [--k 5000]
        [--n 10000]

For each trained run, scores its first ``--n`` test images (binarized as the run was scored)
with ``vaelab.evaluate.importance_sampled_log_px`` twice, one after the other with the same
seed, so the same z are drawn: once in float32 and once with the encoder's and decoder's
matrix products in bfloat16 (``VAE.computing_in``; every density and log-sum-exp stays
float32 or float64). Prints, per run, both NLLs with their standard errors, the paired
difference of the per-image NLLs (bf16 − fp32) with its standard error, and both times.
The question it answers: may ``vaelab eval`` offer bf16? Only if the difference is within
:data:`TOLERANCE` nats.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

from vaelab import VaelabError, open_run
from vaelab.evaluate import importance_sampled_log_px

TOLERANCE = 0.05  # nats: issue 27's bar for offering bf16 evaluation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="trained run folders")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image")
    parser.add_argument("--n", type=int, default=10_000, help="test images (default all)")
    args = parser.parse_args()
    if args.k < 1 or args.n < 1:
        parser.error("--k and --n must be at least 1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print("| run | images | K | NLL fp32 | NLL bf16 | NLL bf16 − fp32, paired | fp32 s | bf16 s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in args.runs:
        try:
            run = open_run(path)
            x = run.split("test")[: args.n]
        except VaelabError as error:
            parser.error(str(error))
        estimates, seconds = {}, {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            start = time.perf_counter()
            with run.model.computing_in(dtype):
                estimates[name], _ = importance_sampled_log_px(run.model, x, k=args.k)
            seconds[name] = time.perf_counter() - start
        diff = estimates["fp32"] - estimates["bf16"]  # (N,) float64: NLL bf16 - NLL fp32
        n = len(x)
        cells = [
            f"{-estimates[p].mean():.3f} ± {estimates[p].std() / math.sqrt(n):.2f}"
            for p in ("fp32", "bf16")
        ]
        paired = f"{diff.mean():+.4f} ± {diff.std() / math.sqrt(n):.4f}"
        print(f"| {path} | {n:,} | {args.k:,} | {cells[0]} | {cells[1]} | {paired} | "
              f"{seconds['fp32']:.0f} | {seconds['bf16']:.0f} |")  # fmt: skip
    print(f"load {os.getloadavg()[0]:.2f} at the end; tolerance for offering bf16: "
          f"{TOLERANCE} nats")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
