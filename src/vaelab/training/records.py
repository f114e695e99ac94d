"""Where each epoch's record goes: ``RUN/metrics.jsonl`` (one JSON object per line, always),
and with ``log = "tensorboard"`` TensorBoard event files in ``RUN/tensorboard/`` too: every
number of the record as a scalar at step = epoch, and at the end the run's plots as images.

TensorBoard is an optional extra (``pip install 'vaelab[tensorboard]'``); its writer is
imported only by runs that ask for it, since importing it takes seconds. Event files are
append-only logs that TensorBoard reads while they grow, so they are not written atomically;
a resumed run adds a new event file for the epochs after its checkpoint.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import VaelabError

TENSORBOARD = "tensorboard"  # the run's subfolder of event files


def check_tracking(log: str) -> None:
    """Refuse ``log = "tensorboard"`` up front when the package is not installed."""
    if log == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise VaelabError(
            "--log tensorboard needs the tensorboard package: pip install 'vaelab[tensorboard]'"
        )


def _writer(folder: Path):
    from torch.utils.tensorboard import SummaryWriter  # seconds to import: only when asked

    return SummaryWriter(str(folder))


class EpochLog:
    """A context manager taking each epoch's record: a line of ``metrics.jsonl`` (appended
    on resume) and, with ``log = "tensorboard"``, its numbers as scalars. Ranks other than 0
    write nothing (``run_dir`` is None)."""

    def __init__(self, run_dir: Path | None, resume: bool, log: str = "none"):
        self.file = (
            None if run_dir is None else (run_dir / "metrics.jsonl").open("a" if resume else "w")
        )
        self.board = _writer(run_dir / TENSORBOARD) if run_dir and log == "tensorboard" else None

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.board is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.board.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
            self.board.flush()

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()
        if self.board is not None:
            self.board.close()


def log_plots(run_dir: Path) -> None:
    """The run's plots (``RUN/plots/*.png``) as images in its TensorBoard event files."""
    board = _writer(run_dir / TENSORBOARD)
    for path in sorted((run_dir / "plots").glob("*.png")):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        board.add_image(f"plots/{path.stem}", pixels, dataformats="HWC")
    board.close()
