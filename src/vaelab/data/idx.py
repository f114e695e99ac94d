"""IDX files (the MNIST format): reading one, and a folder of the four MNIST-named files."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from .dataset import Dataset

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into an array of its stated shape."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; bad deflate data
        raise VaelabError(f"cannot read IDX file {path}: {exc}") from None
    except EOFError:
        raise VaelabError(f"IDX file {path} is a truncated gzip stream; fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise VaelabError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise VaelabError(f"IDX file {path} has a truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize  # exact: np.prod would wrap at 2**64
    if len(raw) - header != expected:
        raise VaelabError(
            f"IDX file {path} holds {len(raw) - header} data bytes but its header "
            f"promises {expected} (shape {shape}); the file is truncated or corrupt"
        )
    try:  # an empty array may still state dimensions too large for NumPy
        return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    except ValueError as exc:
        raise VaelabError(f"IDX file {path} states an impossible shape {shape}: {exc}") from None


def find_idx(folder: Path) -> dict[str, Path] | None:
    """Paths of the four IDX files in ``folder`` (plain or .gz), or None if any is missing."""
    found = {}
    for key, stem in MNIST_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def load_idx_folder(folder: Path, name: str) -> Dataset:
    files = find_idx(folder)
    if files is None:
        raise VaelabError(
            f"{folder} lacks the IDX files {', '.join(MNIST_FILES.values())} (each may end in "
            ".gz); point --data-dir at the folder that holds them"
        )
    arrays = {key: read_idx(path) for key, path in files.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise VaelabError(
                f"IDX files in {folder}: {part} images {images.shape} and labels "
                f"{labels.shape} do not match (expected (N, H, W) and (N,))"
            )
        if images.dtype != np.uint8:  # _to_unit scales by 1/255
            raise VaelabError(
                f"IDX {part} images in {folder} hold {images.dtype} values; expected uint8 pixels"
            )
    train_hw, test_hw = arrays["train_images"].shape[1:], arrays["test_images"].shape[1:]
    if train_hw != test_hw:
        raise VaelabError(
            f"IDX files in {folder}: train images are {train_hw} but test images {test_hw}; "
            "both must have the same height and width"
        )
    x_train = _to_unit(arrays["train_images"])
    y_train = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    n_valid = len(x_train) // 6  # 60,000 -> 50,000 train + 10,000 valid
    if n_valid == 0:
        raise VaelabError(f"IDX training file in {folder} has too few images to split")
    return Dataset(
        name,
        x_train[:-n_valid],
        x_train[-n_valid:],
        _to_unit(arrays["test_images"]),
        y_train[:-n_valid],
        y_train[-n_valid:],
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )


def _to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
