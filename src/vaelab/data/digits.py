"""The embedded data set: scikit-learn's 8x8 digits."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits scaled to [0, 1]; split 1,437 / 180 / 180 (fixed)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return Dataset("digits", x[:1437], x[1437:1617], x[1617:], y[:1437], y[1437:1617], y[1617:])
