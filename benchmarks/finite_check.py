"""The finite check of the training step: vaelab's (one sum per gradient) against the other
ways to ask "is every gradient finite?", on the gradients of the 784-400-20 MLP VAE.

    python benchmarks/finite_check.py [--repeats 2000] [--rounds 3]

Times, in turn over ``--rounds`` rounds, the median microseconds per call of:
``sums`` (vaelab.training.guard.all_finite), ``amp`` (the fused check mixed precision runs,
``torch._amp_foreach_non_finite_check_and_unscale_``, a private call vaelab no longer makes),
``isfinite`` (``isfinite(g).all()`` per tensor) and ``max-norm``
(``torch.nn.utils.get_total_norm(grads, inf)``, public from torch 2.6). Also checks that each
answers False when one gradient holds a NaN or an infinity.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from vaelab.training.guard import all_finite


def gradients() -> list[torch.Tensor]:
    """Tensors of the shapes of the 784-400-20 MLP VAE's parameters (about 650,000 numbers)."""
    shapes = [(400, 784), (400,), (40, 400), (40,), (400, 20), (400,), (784, 400), (784,)]
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=generator) for s in shapes]


def amp(grads: list[torch.Tensor]) -> torch.Tensor:
    found = torch.zeros(1)
    torch._amp_foreach_non_finite_check_and_unscale_(grads, found, torch.ones_like(found))
    return found[0] == 0


CHECKS = {
    "sums": lambda g: all_finite(torch.tensor(0.0), g),
    "amp": amp,
    "isfinite": lambda g: torch.stack([torch.isfinite(x).all() for x in g]).all(),
    "max-norm": lambda g: torch.isfinite(torch.nn.utils.get_total_norm(g, math.inf)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="calls per timing")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each timing every check")
    args = parser.parse_args()
    if min(args.repeats, args.rounds) < 1:
        parser.error("--repeats and --rounds must be >= 1")
    grads = gradients()
    for name, check in CHECKS.items():
        for bad in (math.nan, math.inf):
            broken = [g.clone() for g in grads]
            broken[3][5] = bad
            assert bool(check(grads)) and not bool(check(broken)), name
    times: dict[str, list[float]] = {name: [] for name in CHECKS}
    for _ in range(args.rounds):
        for name, check in CHECKS.items():
            start = time.perf_counter()
            for _ in range(args.repeats):
                check(grads)
            times[name].append((time.perf_counter() - start) / args.repeats * 1e6)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| check | µs per call (median of rounds) | over sums |")
    print("| --- | --- | --- |")
    base = statistics.median(times["sums"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {median / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
