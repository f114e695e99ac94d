"""Training throughput: vaelab's trainer against a plain PyTorch loop and the matmul bound.

    VAELAB_DATA=path/to/mnist python benchmarks/throughput.py [--rounds 3] [--compile both]
        [--rows mlp-128 mlp-512 conv-128] [--precision both|fp32]

In one process: (a) the single-precision matrix-product rate of this machine for the model's
own layer shapes, and from it the bound in samples/s given the model's FLOPs (forward plus
backward = 3x the forward matmul FLOPs), the median of windows measured between the loops;
(b) a hand-written reference loop (784-400-20 MLP, Bernoulli decoder, Adam 1e-3, a
DataLoader over a TensorDataset); (c) vaelab's trainer on the same model, data, batch size
and optimizer, without and with torch.compile (``--compile off`` and ``on``; a line says
which of the two ``--compile auto`` picks for a long run); (d) the floor: the step alone,
compiled, without any of a trainer's own work (:func:`floor_loop`). Each is timed after a
warm-up epoch, as the median of the remaining epochs of ``--rounds`` runs, taken in turn
with the other loops so that the machine's slow spells fall on all of them alike. Prints
samples/s, each vaelab rate over the reference and over the bound, and the floor's over
the bound. With ``--precision both`` (the default), the same rounds also run vaelab's eager
trainer with ``--precision bf16`` and measure the bfloat16 matrix-product bound, and a
second table sets them beside the float32 reference and vaelab's float32 trainer.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from vaelab import Config, VaelabError, train
from vaelab import data as data_mod
from vaelab.device import resolve_device
from vaelab.training import compiled

sys.path.insert(0, os.path.dirname(__file__))
from mnist_folder import add_data_option, load_mnist  # noqa: E402

# where every loop and the bound run: --device (the CPU unless asked; set by main)
DEVICE = torch.device("cpu")
# the table's rows: issue 4's targets are for the MLP at batch 128 and 512
ROWS = {"mlp-128": ("mlp", 128), "mlp-512": ("mlp", 512), "conv-128": ("conv", 128)}


def mlp_shapes(hidden: int, latent: int) -> list[tuple[int, int]]:
    """(in, out) of every Linear of the 784-hidden-latent VAE, encoder then decoder."""
    return [(784, hidden), (hidden, 2 * latent), (latent, hidden), (hidden, 784)]


def forward_rows_per_sec(
    rows: int, shapes: list[tuple[int, int]], seconds: float = 2.0, dtype=torch.float32
) -> float:
    """Rows per second this machine pushes through the forward matrix products of layers of
    these (in, out) shapes, ``rows`` at a time, in ``dtype``: measured, after one warm-up."""
    new = functools.partial(torch.randn, dtype=dtype, device=DEVICE)
    mats = [(new(rows, i), new(i, o)) for i, o in shapes]
    for a, b in mats:  # warm-up
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a, b in mats:
            a @ b
        n += 1
        synchronize()
    return n * rows / (time.perf_counter() - start)


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a clock read after it counts it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def rate_windows(
    rows: int, shapes: list[tuple[int, int]], windows: int, seconds: float, dtype=torch.float32
):
    """:func:`forward_rows_per_sec` over ``windows`` back-to-back windows of ``seconds``.

    This machine's matmul rate moves by 10 to 25 % from one second to the next (a shared
    virtual machine), so a bound is the median of windows taken before and after the
    workload it is compared with, never one window."""
    return [forward_rows_per_sec(rows, shapes, seconds, dtype) for _ in range(windows)]


def add_bound_options(parser: argparse.ArgumentParser, windows: int, when: str) -> None:
    """``--bound-windows`` (``windows`` by default, taken ``when``) and ``--bound-seconds``:
    the windows of :func:`rate_windows` whose median is a benchmark's bound."""
    parser.add_argument(
        "--bound-windows",
        type=int,
        default=windows,
        help=f"matmul-rate windows {when} (bound: their median)",
    )
    parser.add_argument("--bound-seconds", type=float, default=1.0, help="length of one window")


def matmul_bound(batch: int, shapes: list[tuple[int, int]], rows_per_sec: float) -> dict:
    """GFLOP/s of the forward products at these shapes, given their measured rate in rows
    per second, and the implied bound on training samples/s (forward + backward = 3
    forward-sized products per layer)."""
    flops_per_row = sum(2 * i * o for i, o in shapes)
    return {
        "gflops": rows_per_sec * flops_per_row / 1e9,
        "bound_samples_per_sec": rows_per_sec / 3,
    }


class ReferenceVAE(nn.Module):
    def __init__(self, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def forward(self, x):
        mu, log_var = self.enc(x).chunk(2, dim=-1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        return self.dec(z), mu, log_var


def reference_loss(model: ReferenceVAE, xb: torch.Tensor) -> torch.Tensor:
    """The negative ELBO per example, as a user writes it: binary cross-entropy summed over
    pixels and the batch, plus the closed-form KL to N(0, I), over the batch size."""
    logits, mu, log_var = model(xb)
    rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return (rec + kl) / len(xb)


def reference_loop(x: torch.Tensor, batch: int, epochs: int) -> list[float]:
    """The loop a user writes in 30 lines; samples/s of each epoch."""
    torch.manual_seed(0)
    model = ReferenceVAE().to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x.flatten(1)), batch_size=batch, shuffle=True)
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        for (xb,) in loader:
            xb = torch.bernoulli(xb.to(DEVICE))
            loss = reference_loss(model, xb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        synchronize()
        rates.append(len(x) / (time.perf_counter() - start))
    return rates


class FloorFailed(Exception):
    """torch.compile could not build the floor's step."""


def floor_loop(x: torch.Tensor, batch: int, epochs: int, compile: bool) -> list[float]:
    """The step alone: the reference's network and loss, through ``torch.compile`` when
    ``compile``, with fused Adam, on batches gathered by index from an epoch binarized at
    once, and nothing else: no finite check, no metrics, no schedules, no validation. Not a
    trainer (one NaN would ruin its weights): the ceiling of this machine for what any
    trainer can reach, to see how much of the gap to the bound is the trainer's own work.
    Samples/s of each epoch."""
    torch.manual_seed(0)
    model = ReferenceVAE().to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = x.flatten(1).to(DEVICE)
    generator, buffer = torch.Generator(DEVICE).manual_seed(0), torch.empty_like(x)

    def loss_of(xb):
        return reference_loss(model, xb)

    step = loss_of
    if compile:  # torch's generator for the noise, as vaelab's compiled step draws it
        step = torch.compile(loss_of, dynamic=False, options={"fallback_random": True})
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        epoch_x = data_mod.binarize(x, generator, buffer)
        order = torch.randperm(len(x), generator=generator, device=DEVICE)
        for first in range(0, len(x), batch):
            xb = epoch_x.index_select(0, order[first : first + batch])
            try:
                loss = step(xb)
            except Exception as error:  # inductor's failures (no C++ compiler) have many types
                raise FloorFailed(f"{type(error).__name__}: {error}".splitlines()[0]) from None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize()
        rates.append(len(x) / (time.perf_counter() - start))
    return rates


def vaelab_loop(
    data_dir: str, batch: int, epochs: int, arch: str, compile: str, precision: str = "fp32"
) -> list[float]:
    """vaelab's own trainer; samples/s of the training steps of each epoch (metrics.jsonl).

    ``compile``: ``off`` or ``on`` (``--compile auto`` compiles long runs on CUDA only);
    ``precision``: ``fp32`` or ``bf16``."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(
            data="mnist",
            data_dir=data_dir,
            arch=arch,
            hidden=[400],
            latent_dim=20,
            batch_size=batch,
            epochs=epochs,
            compile=compile,
            precision=precision,
            device=DEVICE.type,
            out=os.path.join(tmp, "run"),
        )
        run = train(config, progress=False, log=lambda _: None)
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["train_samples_per_sec"] for line in lines]


def bf16_row(arch: str, batch: int, shapes, epochs: dict, windows) -> str:
    """The second table's row: vaelab's eager bf16 trainer beside the float32 reference, its
    float32 self (eager, when it ran) and both bounds; the bounds' last windows taken now."""
    label = "MLP 784-400-20" if arch == "mlp" else "conv"
    ours = statistics.median(epochs["bf16"])
    fp32 = statistics.median(epochs["off"]) if epochs.get("off") else None
    if arch != "mlp":
        cells = ["-", "-", "-", f"{fp32:,.0f}" if fp32 else "-", f"{ours:,.0f}", "-",
                 f"{ours / fp32:.2f}" if fp32 else "-", "-"]  # fmt: skip
        return f"| {label} | {batch} | " + " | ".join(cells) + " |"
    epochs["bound16"] += rate_windows(batch, shapes, *windows, torch.bfloat16)
    bounds = {
        key: statistics.median(
            matmul_bound(batch, shapes, r)["bound_samples_per_sec"] for r in epochs[key]
        )
        for key in ("bound", "bound16")
    }
    ref = statistics.median(epochs["reference"])
    cells = [
        f"{bounds['bound']:,.0f}", f"{bounds['bound16']:,.0f}", f"{ref:,.0f}",
        f"{fp32:,.0f}" if fp32 else "-", f"{ours:,.0f}", f"{ours / ref:.2f}",
        f"{ours / fp32:.2f}" if fp32 else "-", f"{ours / bounds['bound16']:.2f}",
    ]  # fmt: skip
    return f"| {label} | {batch} | " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="per run, the first is warm-up")
    add_data_option(parser)
    parser.add_argument(
        "--compile",
        choices=["both", "off", "on"],
        default="both",
        help="vaelab's trainer without torch.compile, with it, or both (default)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds per row: each runs every loop once, so slow spells hit them all alike",
    )
    parser.add_argument(
        "--floor",
        choices=["compiled", "eager", "off"],
        default="compiled",
        help="also time the step alone (floor_loop), compiled (default) or eager, or not",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=list(ROWS),
        default=list(ROWS),
        help="the table's rows to measure (default: all), e.g. --rows mlp-512 to time one "
        "target with more --rounds",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "both"],
        default="both",
        help="both (default): also vaelab's eager trainer with --precision bf16 and the "
        "bfloat16 matmul bound, in a second table; fp32: the float32 table alone",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where every loop and the bound run (default cpu)",
    )
    add_bound_options(parser, 2, "before each round and after the last")
    args = parser.parse_args()
    global DEVICE
    try:
        DEVICE = resolve_device(args.device)
    except VaelabError as error:
        parser.error(str(error))
    if min(args.rounds, args.bound_windows, args.epochs - 1) < 1 or args.bound_seconds <= 0:
        parser.error("--rounds and --bound-windows must be >= 1, --epochs >= 2, "
                     "and --bound-seconds > 0")  # fmt: skip
    x = load_mnist(parser, args).train
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {DEVICE}, "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        "| model | batch | bound | reference | vaelab eager | vaelab compiled "
        "| eager/reference | eager/bound | compiled/reference | compiled/bound | floor "
        "| floor/bound |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    modes = ("off", "on") if args.compile == "both" else (args.compile,)
    shapes = mlp_shapes(400, 20)
    windows = args.bound_windows, args.bound_seconds
    spreads, bf16_rows = [], []
    bf16 = args.precision != "fp32"
    for arch, batch in (ROWS[row] for row in dict.fromkeys(args.rows)):  # each row once
        # every round runs each loop once, the bound's windows between them: samples/s of
        # every epoch after each run's warm-up epoch, pooled over the rounds
        epochs = {mode: [] for mode in (*modes, "reference", "bound", "floor", "bf16", "bound16")}
        for _ in range(args.rounds):
            if arch == "mlp":
                epochs["bound"] += rate_windows(batch, shapes, *windows)
                if bf16:
                    epochs["bound16"] += rate_windows(batch, shapes, *windows, torch.bfloat16)
            for mode in modes:
                epochs[mode] += vaelab_loop(args.data_dir, batch, args.epochs, arch, mode)[1:]
            if bf16:
                epochs["bf16"] += vaelab_loop(
                    args.data_dir, batch, args.epochs, arch, "off", "bf16"
                )[1:]
            if arch == "mlp":
                epochs["reference"] += reference_loop(x, batch, args.epochs)[1:]
            if arch == "mlp" and args.floor != "off":
                try:
                    compile = args.floor == "compiled"
                    epochs["floor"] += floor_loop(x, batch, args.epochs, compile)[1:]
                except FloorFailed as error:
                    print(f"floor: torch.compile failed ({error}); timed eager from here on")
                    args.floor = "eager"
        rates = {mode: statistics.median(epochs[mode]) for mode in modes}
        cells = [f"{rates[m]:,.0f}" if m in rates else "-" for m in ("off", "on")]
        if arch == "mlp":
            ref = statistics.median(epochs["reference"])
            epochs["bound"] += rate_windows(batch, shapes, *windows)
            bounds = [
                matmul_bound(batch, shapes, r)["bound_samples_per_sec"] for r in epochs["bound"]
            ]
            bound = statistics.median(bounds)
            spreads.append(f"batch {batch}: {min(bounds):,.0f} to {max(bounds):,.0f}")
            for m in ("off", "on"):
                ratios = (rates[m] / ref, rates[m] / bound) if m in rates else None
                cells += [f"{r:.2f}" for r in ratios] if ratios else ["-", "-"]
            floor = statistics.median(epochs["floor"]) if epochs["floor"] else None
            cells += [f"{floor:,.0f}", f"{floor / bound:.2f}"] if floor else ["-", "-"]
            row = [f"{bound:,.0f}", f"{ref:,.0f}", *cells]
            print(f"| MLP 784-400-20 | {batch} | " + " | ".join(row) + " |")
        else:
            print(f"| conv | {batch} | - | - | {cells[0]} | {cells[1]} |" + " - |" * 6)
        if bf16:
            bf16_rows.append(bf16_row(arch, batch, shapes, epochs, windows))
    if bf16_rows:
        print()
        print(
            "| model | batch | fp32 bound | bf16 bound | reference (fp32) | vaelab fp32 "
            "| vaelab bf16 | bf16/reference | bf16/vaelab fp32 | bf16/bf16 bound |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print("\n".join(bf16_rows))
    if args.floor != "off":
        print(f"floor: the step alone ({args.floor}), no checks, metrics or schedules")
    # which column a user's default run takes: --compile auto on a run long enough to repay it
    device, long = DEVICE, compiled.MIN_STEPS  # vaelab_loop's device
    picks = {
        arch: compiled.wanted(Config(arch=arch), device, 1, long)[0] for arch in ("mlp", "conv")
    }
    auto = [f"{arch} {'compiled' if on else 'eager'}" for arch, on in picks.items()]
    print(f"--compile auto (the default) on a run of {long:,}+ steps here: {', '.join(auto)}")
    n = (args.rounds + 1) * args.bound_windows
    if spreads:  # the conv row alone has no bound
        seconds, ranges = f"{args.bound_seconds:g} s", "; ".join(spreads)
        print(f"{args.rounds} rounds; bound: the median of {n} windows of {seconds} between "
              f"the loops, which ranged over {ranges} samples/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
