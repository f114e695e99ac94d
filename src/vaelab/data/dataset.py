"""The :class:`Dataset` every source returns, and the fixed 80 / 10 / 10 split of one array."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import VaelabError


@dataclass
class Dataset:
    """Three splits of images in [0, 1], shape ``(N, C, H, W)``, with optional labels."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in ("train", "valid", "test"):
            raise VaelabError(f"unknown split {name!r}; use train, valid or test")
        return getattr(self, name), getattr(self, f"{name}_labels")


def split_80_10_10(name: str, x: np.ndarray, y: np.ndarray | None, seed: int = 0) -> Dataset:
    """``x`` ``(N, C, H, W)`` float32 in [0, 1] (and labels ``y``) split 80 / 10 / 10 by a
    fixed permutation."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_train, n_valid = int(0.8 * len(x)), int(0.1 * len(x))
    parts = np.split(order, [n_train, n_train + n_valid])
    xs = [torch.from_numpy(np.ascontiguousarray(x[p])) for p in parts]
    ys = [None] * 3 if y is None else [torch.from_numpy(y[p].astype(np.int64)) for p in parts]
    return Dataset(name, *xs, *ys)
