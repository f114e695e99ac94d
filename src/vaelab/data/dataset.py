"""The :class:`Dataset` every source returns, and the seeded train / valid / test split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import VaelabError

SPLIT_SEED = 0  # one fixed permutation per data set: every run of it sees the same test set


@dataclass
class Dataset:
    """Three splits of examples, shape ``(N, *x_shape)``, with optional labels.

    Images are ``(N, C, H, W)`` in [0, 1]; rows of a table ``(N, P)``, standardized. A split
    is a float32 tensor, or for data larger than memory a :class:`~vaelab.data.stream.
    StreamSplit` that reads its rows from disk when sliced. ``kind`` is ``images``,
    ``arrays`` (any other shape) or ``table``; ``transform`` holds what a table's rows were
    standardized with (``columns``, ``mean``, ``std``), to encode new rows the same way.
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    kind: str = "images"
    transform: dict = field(default_factory=dict)

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])

    @property
    def streamed(self) -> bool:
        return not isinstance(self.train, torch.Tensor)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in ("train", "valid", "test"):
            raise VaelabError(f"unknown split {name!r}; use train, valid or test")
        return getattr(self, name), getattr(self, f"{name}_labels")


def split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Examples per split: valid and test rounded down (at least 1 each), train the rest."""
    n_valid = max(1, int(fractions[1] * n))
    n_test = max(1, int(fractions[2] * n))
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise VaelabError(f"{n} examples are too few to split {fractions}; add data")
    return n_train, n_valid, n_test


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray | None,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    kind: str = "images",
) -> Dataset:
    """``x`` ``(N, ...)`` float32 (and labels ``y``) split by a fixed permutation
    (:data:`SPLIT_SEED`) into ``fractions`` of train, valid and test."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_train, n_valid, _ = split_sizes(len(x), fractions)
    parts = np.split(order, [n_train, n_train + n_valid])
    xs = [torch.from_numpy(np.ascontiguousarray(x[p])) for p in parts]
    ys = [None] * 3 if y is None else [torch.from_numpy(y[p].astype(np.int64)) for p in parts]
    return Dataset(name, *xs, *ys, kind=kind)
