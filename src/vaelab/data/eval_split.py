"""The valid and test splits as every run is scored on them: binarized once, with one seed
for every run, so that numbers from different runs are measured on the same binary images."""

from __future__ import annotations

import torch

from ..errors import VaelabError
from .binarization import binarize
from .dataset import Dataset
from .stream import StreamSplit

EVAL_BINARIZE_SEED = 20_151_001


def eval_split(dataset: Dataset, split: str, binarization: str) -> torch.Tensor:
    """A valid or test split as the model is scored on it.

    With any binarization the split is binarized once with :data:`EVAL_BINARIZE_SEED`, the
    same draw for every run; with ``none`` it is returned as is.
    """
    if binarization not in ("none", "static", "dynamic"):
        raise VaelabError(f"unknown binarization {binarization!r}; use none, static or dynamic")
    x, _ = dataset.split(split)
    if binarization == "none":
        return x
    offset = ("train", "valid", "test").index(split)
    if isinstance(x, StreamSplit):
        return x.binarized(EVAL_BINARIZE_SEED + offset)
    generator = torch.Generator().manual_seed(EVAL_BINARIZE_SEED + offset)
    return binarize(x, generator)
