"""The ``vaelab`` command: it parses, calls the library, prints.

This module holds the parser (``vaelab train``'s many flags in :mod:`.train_flags`);
:mod:`.commands` holds what each subcommand does with them.
A user's mistake (a :class:`VaelabError` or a bad flag) ends with one line on stderr and
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from importlib.metadata import PackageNotFoundError, version

import torch

from ..config import CHOICES, LIMITS
from ..core.inference import PROTOCOL_LR, PROTOCOL_SAMPLES
from ..errors import VaelabError
from ..evaluate import DEFAULT_K, ais
from ..evaluate.disentangle import N_POINTS, N_TREES
from ..progress import EVERY, EVERY_VARIABLE
from .commands import COMMANDS
from .train_flags import add_train_flags


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (not usage + error) and exit status 2;
    ``commands`` holds the subcommands' parsers by name."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def whole(low: int, high: int, what: str = "a whole number"):
    """An argparse type: an integer from ``low`` to ``high``, refused at parsing (one line)
    before any run is opened, so no value can overflow torch or run for ever."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} is from {low} to {high}, got {text!r}")
        return value

    return parse


def positive(text: str) -> float:
    """An argparse type: a finite number > 0 (a learning rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a finite number > 0, got {text!r}")
    return value


port = whole(0, 65_535, "a port")  # 0: a free one
seed = whole(0, LIMITS["seed"], "a seed")
k = whole(1, LIMITS["k"], "K")
STEPS = 10_000_000  # Adam or AIS steps: far past any protocol, short of for ever
SAMPLE_MAX = 10_000  # images in one sample grid
QUIET = (
    "show no progress on stderr (otherwise a bar with the time left on a terminal, else one "
    f"line every {EVERY:.0f} s, or every S seconds with {EVERY_VARIABLE}=S, and before a long "
    "stage its expected time)"
)


try:
    VERSION = version("vaelab")  # pyproject.toml's, as installed
except PackageNotFoundError:  # run from a source tree never installed
    VERSION = "unknown"


def _did_you_mean(unknown: list[str], command: argparse.ArgumentParser) -> str:
    """ "; did you mean --latent-dim?" for ``--latnet-dim`` (the closest flag of ``command``),
    or nothing when no flag is close."""
    flags = sorted(set(re.findall(r"--[a-z0-9][a-z0-9-]*", command.format_help())))
    for word in unknown:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=")[0], flags, n=1, cutoff=0.7)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vaelab",
        description="Train, evaluate and look at variational autoencoders.",
    )
    parser.add_argument(
        "--version", action="version", version=f"vaelab {VERSION} (torch {torch.__version__})"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train a VAE and write a run folder",
        usage="vaelab train [--preset NAME] [--config FILE] [--FLAG VALUE ...] [--out RUN]\n"
        "       vaelab train --resume RUN",
    )
    add_train_flags(t)

    e = sub.add_parser("eval", help="score a run on its test split")
    e.add_argument("run")
    e.add_argument("--split", choices=["test", "valid", "train"], default="test")
    e.add_argument(
        "--k",
        type=k,
        default=DEFAULT_K,
        help="importance samples per example for the log-likelihood estimate "
        f"(default {DEFAULT_K})",
    )
    e.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="the encoder's and decoder's matrix products in the importance-sampled estimate; "
        "bf16 agreed with fp32 within 0.003 nats on the mnist-vae and mnist-vamp models at "
        "K = 5000 and ran 1.6-1.7x faster on a CPU with native bf16 (docs/benchmarks.md); "
        "every sum stays float32 (default fp32)",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--save",
        action="store_true",
        help="also write that JSON object into the run: RUN/eval.json (the report shows it; "
        "--split valid or train: eval-SPLIT.json)",
    )
    e.add_argument(
        "--exact",
        action="store_true",
        help="also the exact log p(x) (runs with --arch linear --likelihood gaussian)",
    )
    e.add_argument(
        "--ais",
        type=whole(1, STEPS, "STEPS"),
        nargs="?",
        const=ais.STEPS,
        metavar="STEPS",
        help="also annealed importance sampling with HMC, STEPS intermediate targets "
        f"({ais.STEPS}), {ais.CHAINS} chains",
    )
    e.add_argument("--device", choices=CHOICES["device"], default="auto")
    e.add_argument("--quiet", action="store_true", help=QUIET)

    g = sub.add_parser("gap", help="approximation and amortization gaps (Cremer et al. 2018)")
    g.add_argument("run")
    g.add_argument(
        "--n", type=whole(1, LIMITS["batch_size"]), default=1000, help="test images (default 1000)"
    )
    g.add_argument(
        "--steps",
        type=whole(0, STEPS),
        help="Adam steps per datapoint (default: to convergence)",
    )
    g.add_argument(
        "--k", type=k, default=DEFAULT_K, help=f"importance samples (default {DEFAULT_K})"
    )
    g.add_argument(
        "--samples",
        type=k,
        default=PROTOCOL_SAMPLES,
        help=f"z per datapoint and step ({PROTOCOL_SAMPLES})",
    )
    g.add_argument(
        "--lr",
        type=positive,
        default=PROTOCOL_LR,
        help=f"Adam's learning rate for q* ({PROTOCOL_LR})",
    )
    g.add_argument(
        "--ais-steps",
        type=whole(0, STEPS),
        default=ais.STEPS,
        help=f"AIS targets; 0: no AIS ({ais.STEPS})",
    )
    g.add_argument(
        "--ais-chains",
        type=whole(1, LIMITS["k"]),
        default=ais.CHAINS,
        help=f"AIS chains per image ({ais.CHAINS})",
    )
    g.add_argument("--json", action="store_true", help="print one JSON object")
    g.add_argument("--device", choices=CHOICES["device"], default="auto")
    g.add_argument("--quiet", action="store_true", help=QUIET)

    s = sub.add_parser("sample", help="a PNG grid of samples from the prior")
    s.add_argument("run")
    s.add_argument("--n", type=whole(1, SAMPLE_MAX), default=64, help="images (default 64)")
    s.add_argument("--seed", type=seed, default=0)
    s.add_argument("--out", help="PNG path (default RUN/plots/samples_grid.png)")

    p = sub.add_parser("plot", help="draw every plot of a run again")
    p.add_argument("run")
    p.add_argument(
        "--gap",
        action="store_true",
        help="only the posterior-gap plots (2-D latent runs; drawn by default for those)",
    )
    p.add_argument("--quiet", action="store_true", help=QUIET)

    n = sub.add_parser(
        "encode", help="q(z|x) for every example of a data set: means, std devs, samples"
    )
    n.add_argument("run")
    n.add_argument("--data", required=True, help="data to encode (as for train --data)")
    n.add_argument(
        "--out", required=True,
        help=".npz: loc, scale (+ scale_tril, the Cholesky factor L, for --posterior full; for "
        "iaf samples, mean_estimate, mean_estimate_se, covariance_estimate), y, ...; or .npy "
        "(N, 2+K, D) for a diagonal q",
    )  # fmt: skip
    n.add_argument(
        "--samples", type=whole(0, LIMITS["k"]), default=0,
        help="K draws z ~ q(z|x) per example (an iaf run needs K >= 2: its mean and covariance "
        "are estimated from them)",
    )  # fmt: skip
    n.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    n.add_argument("--seed", type=seed, default=0)
    n.add_argument("--device", choices=CHOICES["device"], default="auto")
    n.add_argument("--quiet", action="store_true", help=QUIET)

    r = sub.add_parser("report", help="one self-contained HTML page of a run, or runs compared")
    r.add_argument("runs", nargs="+", metavar="RUN")
    r.add_argument("--out", help="HTML path (default RUN/report.html; several runs: compare.html)")
    r.add_argument("--quiet", action="store_true", help=QUIET)

    x = sub.add_parser("explore", help="a local web page to explore a run's latent space")
    x.add_argument("run")
    x.add_argument("--port", type=port, default=0, help="TCP port (default: a free one)")
    x.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    x.add_argument("--open", action="store_true", help="open the page in the web browser")
    x.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (repeatable; loopback and --host always)",
    )

    d = sub.add_parser("disentangle", help="β-VAE, FactorVAE, MIG, DCI, SAP of a shapes run")
    d.add_argument("run")
    d.add_argument(
        "--n",
        type=whole(10, LIMITS["batch_size"]),
        default=N_POINTS,
        help=f"points per metric (default {N_POINTS})",
    )
    d.add_argument(
        "--trees",
        type=whole(1, STEPS),
        default=N_TREES,
        help=f"DCI: boosting stages (default {N_TREES})",
    )
    d.add_argument("--seed", type=seed, default=0)
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.add_argument("--quiet", action="store_true", help=QUIET)
    parser.commands = sub.choices
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse's own message, with the flag a typo most likely meant
        command = parser.commands[args.command]
        command.error(
            f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(unknown, command)}"
        )
    try:
        COMMANDS[args.command](args)
    except VaelabError as exc:
        print(f"vaelab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
