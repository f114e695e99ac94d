"""Where a training step's time goes: torch.profiler over vaelab's own trainer.

    VAELAB_DATA=path/to/mnist python benchmarks/profile_step.py [--batch 128] [--compile off]
        [--precision fp32|bf16]

Trains the 784-400-20 MLP VAE on MNIST for two epochs under ``torch.profiler`` (the first
epoch as warm-up is included: the profile covers the whole run's steps and its
validation) and prints the operations that took the most CPU time, with their share, and
the share of the matrix products (``aten::mm``, ``aten::addmm``), which bound the model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from torch.profiler import ProfilerActivity, profile

from vaelab import Config, train

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--compile", choices=["off", "on"], default="off")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--rows", type=int, default=15, help="operations to list")
    add_data_option(parser)
    args = parser.parse_args()
    load_mnist(parser, args)  # a wrong folder is a usage error, before the profile starts
    # (a second or two to read the files, freed at once: train() loads its own copy)
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(data="mnist", data_dir=args.data_dir, hidden=[400], latent_dim=20,
                        batch_size=args.batch, epochs=args.epochs, compile=args.compile,
                        precision=args.precision, out=os.path.join(tmp, "run"))  # fmt: skip
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train(config, progress=False, log=lambda _: None)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    print(f"batch {args.batch}, compile {args.compile}, precision {args.precision}: "
          f"{total / 1e6:.1f} s of CPU time profiled")  # fmt: skip
    print("| operation | calls | self CPU ms | share |")
    print("| --- | --- | --- | --- |")
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]
    for e in top:
        print(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e3:,.0f} "
              f"| {e.self_cpu_time_total / total:.1%} |")  # fmt: skip
    print(f"matrix products: {matmul / total:.1%} of the CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
