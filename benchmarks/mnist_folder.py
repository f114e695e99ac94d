"""The MNIST folder the benchmarks read: ``--data-dir``, by default ``$VAELAB_DATA``.

A missing variable or a folder without the four IDX files is a usage error, as bad input is
everywhere in vaelab: argparse's usage line, one line naming the problem and the fix, and
exit status 2; no traceback, nothing run.
"""

from __future__ import annotations

import argparse
import os

from vaelab import data as data_mod
from vaelab.errors import VaelabError


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, defaulting to ``$VAELAB_DATA``."""
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("VAELAB_DATA", ""),
        help="the folder of MNIST's four IDX files (default: $VAELAB_DATA)",
    )


def load_mnist(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """MNIST from ``args.data_dir`` (:func:`vaelab.data.load`: ``.train`` ``(N, 1, 28, 28)``
    in [0, 1], ...), or ``parser.error`` (exit status 2) when the folder is unset or lacks
    the files."""
    if not args.data_dir:
        parser.error("set $VAELAB_DATA (or --data-dir) to the MNIST IDX folder")
    try:
        return data_mod.load("mnist", args.data_dir)
    except VaelabError as error:
        parser.error(str(error))
