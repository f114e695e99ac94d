"""The per-dimension KL under a VampPrior: ``posterior_stats`` with the old and the new KL.

    python benchmarks/kl_per_dim.py [--n 10000] [--samples 16]

Builds a VampPrior model of the mnist-vamp shape (784-300-300-40 tanh MLP, K = 500
pseudo-inputs; random weights, since the cost does not depend on them) and scores ``--n``
random binary 28 x 28 images with :func:`vaelab.evaluate.posterior_stats`, once with the
library's :func:`vaelab.core.kl.kl_per_dim` ("new") and once with the implementation it
replaced, kept here only ("old": torch's ``MixtureSameFamily.log_prob`` on the per-dimension
marginals, 2^22 (row, dimension, component) elements at a time). Each runs in a child process
of its own, so each peak resident memory (``VmHWM``) is its own. Both draw z from the same
seed; the table gives the largest difference between their KLs. CPU seconds (the process's
own, ``time.process_time``) are the fairer comparison on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from peak import peak_kib
from vaelab import VAE, Config, evaluate
from vaelab.build import build_model
from vaelab.core import kl as kl_mod

OLD_ELEMENTS = 1 << 22  # the old chunk: (rows, D, K) elements per MixtureSameFamily.log_prob


def old_kl_per_dim(qz, pz, samples: int = 16) -> torch.Tensor:
    """The per-dimension KL as computed before (mixture priors only): ``(B, D)``."""
    normal = pz.component_distribution.base_dist  # batch (K, D)
    weights = pz.mixture_distribution.logits  # (K,)
    marginal = MixtureSameFamily(
        Categorical(logits=weights.expand(normal.loc.shape[-1], -1)),
        Normal(normal.loc.T, normal.scale.T, validate_args=False),
    )  # batch (D,): one mixture of K normals per dimension
    z = qz.base_dist.sample((samples,))  # (S, B, D)
    flat = z.reshape(-1, z.shape[-1])
    rows = max(1, OLD_ELEMENTS // (z.shape[-1] * len(weights)))
    log_p = torch.cat([marginal.log_prob(c) for c in flat.split(rows)]).view_as(z)
    return (qz.base_dist.log_prob(z) - log_p).mean(0)


def vamp_model() -> VAE:
    torch.manual_seed(0)
    config = Config(
        arch="mlp",
        hidden=[300, 300],
        activation="tanh",
        latent_dim=40,
        prior="vamp",
        prior_components=500,
        likelihood="bernoulli",
    )
    return build_model(config, (1, 28, 28)).eval()


def child(which: str, n: int, samples: int, out: str) -> None:
    """Time ``posterior_stats`` with the ``which`` KL; print seconds and peak RSS; save the KLs."""
    model = vamp_model()
    x = (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    kl = old_kl_per_dim if which == "old" else kl_mod.kl_per_dim
    # where posterior_stats reads it
    evaluate.posterior.kl_per_dim = lambda qz, pz: kl(qz, pz, samples=samples)
    before = peak_kib()
    torch.manual_seed(2)
    start, cpu = time.perf_counter(), time.process_time()
    _, _, kls = evaluate.posterior_stats(model, x)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(out, kls.numpy())
    print(f"{seconds} {cpu} {before / 2**20} {peak_kib() / 2**20}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images (default 10,000)")
    parser.add_argument("--samples", type=int, default=16, help="z per image for the KL")
    parser.add_argument("--child", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.samples, args.out)
        return 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| KL | images | samples | seconds | CPU s | peak RSS before (GiB) | after (GiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    kls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("old", "new"):
            out = str(Path(tmp) / f"{which}.npy")
            command = [sys.executable, __file__, "--child", which, "--out", out]
            command += ["--n", str(args.n), "--samples", str(args.samples)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            seconds, cpu, before, after = map(float, result.stdout.split())
            kls[which] = np.load(out)
            print(
                f"| {which} | {args.n:,} | {args.samples} | {seconds:.2f} | {cpu:.2f} "
                f"| {before:.2f} | {after:.2f} |"
            )
    diff = np.abs(kls["old"] - kls["new"]).max()
    print(f"largest |KL_old - KL_new| over the {kls['new'].size:,} (image, dimension) pairs: "
          f"{diff:.2e} nats (mean KL {kls['new'].mean():.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
