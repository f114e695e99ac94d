""".npy and .npz arrays of images."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import VaelabError
from .dataset import Dataset, split_80_10_10


def _load_array(path: Path) -> Dataset:
    try:
        # we own the handle: np.load(path) leaks it when the file is a broken zip archive
        with path.open("rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):  # by content: a .npz may hold a bare array
                x, y = loaded, None
            else:
                with loaded as archive:
                    if "x" not in archive:
                        raise VaelabError(f"{path} has no array named 'x'; save it with x=...")
                    x = archive["x"]
                    y = archive["y"] if "y" in archive else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise VaelabError(f"cannot read array file {path}: {exc}") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise VaelabError(
            f"{path}: expected images of shape (N, H, W) or (N, C, H, W), got {x.shape}"
        )
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    else:
        raise VaelabError(f"{path}: dtype {x.dtype} is not uint8 or float")
    if x.size == 0:
        raise VaelabError(f"{path} holds no pixels (shape {x.shape}); save non-empty images")
    if not np.isfinite(x).all():
        raise VaelabError(f"{path} contains NaN or Inf values; clean the data first")
    if x.min() < 0 or x.max() > 1:
        raise VaelabError(f"{path}: float values must lie in [0, 1] (got {x.min()}..{x.max()})")
    if len(x) < 10:
        raise VaelabError(f"{path} holds {len(x)} examples; at least 10 are needed to split")
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise VaelabError(f"{path}: labels y must have shape ({len(x)},), got {y.shape}")
    if y is not None and not _whole_numbers(y):
        raise VaelabError(f"{path}: labels y must be integers, got {y.dtype} values")
    return split_80_10_10(path.stem, x, y)


def _whole_numbers(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return True
    if np.issubdtype(y.dtype, np.floating):
        return bool(np.isfinite(y).all() and (y == np.round(y)).all())
    return False
