"""What vaelab's training step costs beyond its networks: one step, taken apart.

    VAELAB_DATA=path/to/mnist python benchmarks/step_parts.py [--batch 128] [--rounds 30]

The same binarized MNIST batches go through four steps of the 784-400-20 Bernoulli VAE,
each missing a part of the one before it:

- ``trainer``: the training loop's step (:mod:`vaelab.training.loop`): the objective
  (:func:`vaelab.objectives.elbo` on the model's distributions), backward, the fused
  finite check of the loss and every gradient, fused Adam told to skip a non-finite step,
  and the per-step metric sums kept on the device;
- ``objective``: the same objective, backward and Adam step, without the check or the sums;
- ``networks``: the model's own encoder and decoder modules with the loss written out
  inline, -mean(sum_i [x_i l_i - softplus(l_i)] - KL): no distributions, no bend of
  log sigma^2 (``bounded_log_var``), the KL in the closed form for N(0, I);
- ``floor``: :class:`throughput.ReferenceVAE` with that inline loss.

The four are timed in turn, ``--rounds`` times over the same ``--batches`` batches, so the
machine's slow spells fall on all of them alike; prints the median ms per step of each and
the difference from the next. Eager (uncompiled) steps, on this machine's CPU threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch.nn import functional as F

from mnist_folder import add_data_option, load_mnist
from throughput import ReferenceVAE
from vaelab import VAE, Config
from vaelab import data as data_mod
from vaelab.build import build_model
from vaelab.objectives import elbo
from vaelab.training.guard import all_finite, guarded_step, step_sums


def inline_loss(logits: torch.Tensor, x: torch.Tensor, mu, log_var) -> torch.Tensor:
    """-mean_B (log p(x | z) - KL(N(mu, e^log_var) || N(0, I))); ``logits``, ``x`` (B, 784)."""
    rec = F.softplus(logits, threshold=40.0).neg_().addcmul_(logits, x).sum(1)
    kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
    return -(rec - kl).mean()


def steps(model: VAE, reference: ReferenceVAE) -> dict:
    """The four steps, ``name -> f(x)``, ``x`` ``(B, 1, 28, 28)``; each its own fused Adam."""
    adam = {"model": torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)}
    adam["reference"] = torch.optim.Adam(reference.parameters(), lr=1e-3, fused=True)
    params = list(model.parameters())
    sums = torch.zeros(5, dtype=torch.float64)

    def trainer(x):
        terms = elbo(model, x)
        adam["model"].zero_grad(set_to_none=True)
        terms.loss.backward()
        finite = all_finite(terms.loss, [p.grad for p in params])
        guarded_step(adam["model"], finite, fused=True)
        sums.add_(step_sums(terms.loss, terms, len(x), finite))

    def objective(x):
        loss = elbo(model, x).loss
        adam["model"].zero_grad(set_to_none=True)
        loss.backward()
        adam["model"].step()

    def networks(x):
        mu, log_var = model.encoder(x)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        loss = inline_loss(model.decoder(z).flatten(1), x.flatten(1), mu, log_var)
        adam["model"].zero_grad(set_to_none=True)
        loss.backward()
        adam["model"].step()

    def floor(x):
        flat = x.flatten(1)
        logits, mu, log_var = reference(flat)
        loss = inline_loss(logits, flat, mu, log_var)
        adam["reference"].zero_grad(set_to_none=True)
        loss.backward()
        adam["reference"].step()

    return {"trainer": trainer, "objective": objective, "networks": networks, "floor": floor}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="distinct batches per round")
    parser.add_argument("--rounds", type=int, default=30)
    add_data_option(parser)
    args = parser.parse_args()
    if min(args.batch, args.batches, args.rounds) < 1:
        parser.error("--batch, --batches and --rounds must be >= 1")
    x_train = load_mnist(parser, args).train
    rows = args.batch * args.batches
    if len(x_train) < rows:
        parser.error(f"{args.batches} batches of {args.batch} need {rows} training images; "
                     f"the data has {len(x_train)}: lower --batch or --batches")  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    batches = data_mod.binarize(x_train[:rows], generator).split(args.batch)
    torch.manual_seed(0)
    config = Config(likelihood="bernoulli", hidden=[400], latent_dim=20)
    model = build_model(config, tuple(x_train.shape[1:]))
    model.init_output_bias(x_train[:rows])
    named = steps(model, ReferenceVAE())
    for step in named.values():  # warm-up: first-call allocations, Adam's state
        for x in batches[:3]:
            step(x)
    ms = {name: [] for name in named}
    for _ in range(args.rounds):
        for name, step in named.items():
            start = time.perf_counter()
            for x in batches:
                step(x)
            ms[name].append((time.perf_counter() - start) / len(batches) * 1e3)
    print(f"batch {args.batch}, {args.rounds} rounds of {args.batches} batches, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print("| step | ms per step | more than the next |")
    print("| --- | --- | --- |")
    medians = [statistics.median(ms[name]) for name in named]
    for i, name in enumerate(named):
        extra = f"{medians[i] - medians[i + 1]:+.3f}" if i + 1 < len(medians) else "-"
        print(f"| {name} | {medians[i]:.3f} | {extra} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
