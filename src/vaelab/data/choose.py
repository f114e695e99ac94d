"""The defaults that follow the data: which likelihood p(x | z) and which binarization, and
whether a Bernoulli "likelihood" would be one at all. Decided here once, for every command."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import binarization_for
from ..errors import VaelabError
from .dataset import Dataset


@dataclass(frozen=True)
class Choice:
    """What ``auto`` resolved to: the likelihood, the binarization, whether a Gaussian's σ is
    learned (one σ shared by every dimension, for data whose noise scale nobody told us),
    and the reason, one line for the user (empty when nothing was left to choose)."""

    likelihood: str
    binarize: str
    learn_sigma: bool
    reason: str


def choose(dataset: Dataset, likelihood: str, binarize: str) -> Choice:
    """The defaults that follow the data, for ``likelihood = "auto"``:

    - a table: Gaussian (its rows standardized; σ fixed at ``--sigma``);
    - real values outside [0, 1] (arrays, standardized per feature): Gaussian with one learned
      σ: after standardization each feature has unit variance, but how much of it is noise
      is unknown, and a fixed σ = 0.1 would pay for every 0.1 of error with KL;
    - binary (0/1) data: Bernoulli, not binarized again;
    - colour images (C = 3) of levels in [0, 1]: Gaussian with one learned σ (Rybkin et al.
      2021, "σ-VAE"): binarizing each channel would model 8 colours, not the image;
    - grey levels in [0, 1]: Bernoulli on a fresh binarization each epoch (MNIST's protocol).

    Judged from up to 65,536 training examples. A likelihood the data cannot have (a Bernoulli
    on real values, ...) is refused.
    """
    sample = dataset.train[: 1 << 16]
    in_unit = bool(sample.min() >= 0 and sample.max() <= 1)
    reason, learn_sigma = "", False
    if likelihood == "auto":
        colour = dataset.kind == "images" and dataset.x_shape[0] == 3
        if dataset.kind == "table":
            likelihood, reason = "gaussian", "a table: Gaussian likelihood"
        elif dataset.standardized or not in_unit:
            likelihood, learn_sigma = "gaussian", True
            how = (
                "standardized per feature with the training split's mean and std"
                if dataset.standardized
                else "as they are"
            )
            reason = (
                f"real values outside [0, 1]: Gaussian likelihood with a learned σ (the noise "
                f"scale is unknown), the data {how}"
            )
        elif is_binary(sample):
            likelihood, binarize = "bernoulli", "none" if binarize == "auto" else binarize
            reason = "binary (0/1) data: Bernoulli likelihood"
        elif colour:
            likelihood, learn_sigma = "gaussian", True
            reason = (
                "colour images: Gaussian likelihood with a learned σ, not binarized (a "
                "Bernoulli on binarized channels would model 8 colours; --likelihood "
                "continuous-bernoulli is the other choice)"
            )
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
    return Choice(likelihood, binarization_for(likelihood, binarize), learn_sigma, reason)


def choose_likelihood(dataset: Dataset, likelihood: str, binarize: str) -> tuple[str, str, str]:
    """``(likelihood, binarization, reason)`` of :func:`choose`."""
    choice = choose(dataset, likelihood, binarize)
    return choice.likelihood, choice.binarize, choice.reason


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
