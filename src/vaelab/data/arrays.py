"""NumPy arrays as data: ``.npy`` (memory-mapped) and ``.npz`` (``x``, optional ``y``).

Any shape ``(N, ...)``: ``(N, H, W)`` and ``(N, C, H, W)`` are images (a channel axis is
added to the first), which must lie in [0, 1] (uint8 is scaled by 1/255); ``(N, P)`` and
other shapes are vectors of any finite real values.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import VaelabError
from .stream import NpyFile, to_unit_float

STREAM_BYTES = 1 << 30  # --stream auto reads a .npy into memory only below 1 GiB as float32


def example_shape(path: Path, shape: tuple[int, ...]) -> tuple[tuple[int, ...], str]:
    """The shape of one example and the kind of data (``images`` or ``arrays``)."""
    if len(shape) < 2:
        raise VaelabError(
            f"{path}: expected examples of shape (N, ...), got {shape}; a 1-D array has no "
            "feature axis (reshape it to (N, 1))"
        )
    if shape[0] < 10:
        raise VaelabError(f"{path} holds {shape[0]} examples; at least 10 are needed to split")
    if len(shape) == 3:
        return (1, *shape[1:]), "images"
    return tuple(shape[1:]), "images" if len(shape) == 4 else "arrays"


def should_stream(file: NpyFile, stream: str) -> bool:
    """``stream`` on/off as given; ``auto`` streams when the data as float32 exceeds
    :data:`STREAM_BYTES`."""
    if stream != "auto":
        return stream == "on"
    return file.shape[0] * (file.row_bytes // file.dtype.itemsize) * 4 > STREAM_BYTES


def is_npy(path: Path) -> bool:
    """Whether ``path`` holds a bare ``.npy`` array (by its magic bytes, not its name)."""
    try:
        with path.open("rb") as fh:
            return fh.read(6) == b"\x93NUMPY"
    except OSError as exc:
        raise VaelabError(f"cannot read array file {path}: {exc}") from None


def read_array(path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``(x, y, kind)``: the whole array as float32 ``(N, *x_shape)`` and its labels."""
    if is_npy(path):
        file = NpyFile.open(path)
        x, y = file.read(0, file.shape[0]), None
    else:
        x, y = _read_npz(path)
    if x.ndim == 0:
        raise VaelabError(
            f"{path} holds a single number, not examples; save an array of shape (N, ...)"
        )
    check_dtype(path, x.dtype)
    x_shape, kind = example_shape(path, x.shape)
    if x.size == 0:
        raise VaelabError(f"{path} holds no values (shape {x.shape}); save non-empty data")
    x = to_unit_float(x).reshape(len(x), *x_shape)
    if not np.isfinite(x).all():
        raise VaelabError(f"{path} contains NaN or Inf values; clean the data first")
    if kind == "images" and (x.min() < 0 or x.max() > 1):
        raise VaelabError(
            f"{path}: float images must lie in [0, 1] (got {x.min()}..{x.max()}); "
            "scale them, or save them as uint8"
        )
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise VaelabError(f"{path}: labels y must have shape ({len(x)},), got {y.shape}")
    if y is not None and not _whole_numbers(y):
        raise VaelabError(f"{path}: labels y must be integers, got {y.dtype} values")
    return x, y, kind


def check_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise VaelabError(f"{path}: dtype {dtype} is not uint8 or float; convert it")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        # we own the handle: np.load(path) leaks it when the file is a broken zip archive
        with path.open("rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):  # by content: a .npz may hold a bare array
                return loaded, None
            with loaded as archive:
                if "x" not in archive:
                    raise VaelabError(f"{path} has no array named 'x'; save it with x=...")
                return archive["x"], archive["y"] if "y" in archive else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise VaelabError(f"cannot read array file {path}: {exc}") from None


def _whole_numbers(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return True
    if np.issubdtype(y.dtype, np.floating):
        return bool(np.isfinite(y).all() and (y == np.round(y)).all())
    return False
