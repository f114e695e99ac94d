"""The defaults that follow the data: which likelihood p(x | z) and which binarization, and
whether a Bernoulli "likelihood" would be one at all. Decided here once, for every command."""

from __future__ import annotations

import torch

from ..config import binarization_for
from ..errors import VaelabError
from .dataset import Dataset


def choose_likelihood(dataset: Dataset, likelihood: str, binarize: str) -> tuple[str, str, str]:
    """``(likelihood, binarization, reason)``: the defaults that follow the data.

    ``auto`` likelihood: Gaussian for tables and real values outside [0, 1]; Bernoulli for
    binary data (not binarized again) and for grey levels in [0, 1] (binarized afresh each
    epoch, the standard MNIST protocol). Judged from up to 65,536 training examples.
    """
    sample = dataset.train[: 1 << 16]
    in_unit = bool(sample.min() >= 0 and sample.max() <= 1)
    reason = ""
    if likelihood == "auto":
        if dataset.kind == "table" or not in_unit:
            likelihood = "gaussian"
            what = "a table" if dataset.kind == "table" else "real values outside [0, 1]"
            reason = f"{what}: Gaussian likelihood"
        elif is_binary(sample):
            likelihood, binarize = "bernoulli", "none" if binarize == "auto" else binarize
            reason = "binary (0/1) data: Bernoulli likelihood"
        else:
            likelihood = "bernoulli"
            reason = (
                "grey levels in [0, 1]: Bernoulli likelihood on a fresh binarization each "
                "epoch (--likelihood gaussian models the grey levels instead)"
            )
    if likelihood == "bernoulli" and not in_unit:
        raise VaelabError(
            "a Bernoulli likelihood needs data in [0, 1], and these are real values; use "
            "--likelihood gaussian"
        )
    if likelihood in ("continuous-bernoulli", "logistic") and not in_unit:
        raise VaelabError(
            f"--likelihood {likelihood} models values in [0, 1], and these lie outside; use "
            "--likelihood gaussian"
        )
    return likelihood, binarization_for(likelihood, binarize), reason


def is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def bernoulli_on_grey(dataset: Dataset, likelihood: str, binarization: str) -> bool:
    """A Bernoulli likelihood on grey levels left as they are: its "log-likelihood" is a
    cross-entropy, not the log of any density of the data, so its numbers compare to nothing."""
    return (
        likelihood == "bernoulli"
        and binarization == "none"
        and not is_binary(dataset.train[: 1 << 16])
    )
