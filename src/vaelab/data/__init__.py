"""Data sources -> tensors in [0, 1] with fixed train / valid / test splits; binarization.

Every source returns a :class:`Dataset` whose splits are float32 tensors of shape
``(N, C, H, W)`` (images) with values in [0, 1], and integer labels of shape ``(N,)`` where
the source has them.

Sources:

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), scaled by 1/16, split
  1,437 / 180 / 180 with a fixed permutation. Embedded: needs no files.
- ``mnist``: the four standard IDX files (``.gz`` or not). Training file -> 50,000 train and
  the last 10,000 valid; test file -> 10,000 test. Looked up in ``--data-dir``, else in
  ``$VAELAB_DATA``, else in the cache folder, where missing files are downloaded from the
  standard mirrors and checked against their SHA-256.
- a folder of images (PNG, JPEG, BMP), flat or one sub-folder per class; split 80 / 10 / 10.
- a path: a folder holding IDX files named like MNIST's (Fashion-MNIST, KMNIST ...), or a
  ``.npy`` / ``.npz`` array (``x``, optional ``y``) of shape ``(N, H, W)`` or ``(N, C, H, W)``,
  uint8 (scaled by 1/255) or float in [0, 1], split 80 / 10 / 10 with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VaelabError
from .arrays import _load_array
from .dataset import Dataset
from .digits import load_digits
from .idx import MNIST_FILES, _find_idx, _load_idx_folder, read_idx
from .images import IMAGE_SUFFIXES, has_images, load_image_folder
from .mnist import MNIST_MIRRORS, MNIST_SHA256, cache_dir, download_mnist, load_mnist

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "IMAGE_SUFFIXES",
    "Dataset",
    "binarize",
    "cache_dir",
    "download_mnist",
    "eval_split",
    "from_config",
    "is_binary",
    "load",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "read_idx",
]

# valid and test are binarized once with this seed, the same for every run, so that
# numbers from different runs are measured on the same binary test images.
EVAL_BINARIZE_SEED = 20_151_001


def load(
    name: str, data_dir: str | Path | None = None, channels: int = 0, image_size: int = 0
) -> Dataset:
    """The data set called ``name`` (``digits``, ``mnist`` or a path); ``channels`` and
    ``image_size`` apply to a folder of images (:func:`load_image_folder`)."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(data_dir)
    path = Path(name).expanduser()
    if not path.exists():
        raise VaelabError(
            f"data {name!r} is neither a built-in (digits, mnist) nor an existing path; "
            "check the spelling"
        )
    if path.is_dir():
        if _find_idx(path) is None and has_images(path):
            return load_image_folder(path, channels, image_size)
        if not any(path.iterdir()):
            raise VaelabError(f"data folder {path} is empty; it needs images or IDX files")
        return _load_idx_folder(path, name=path.name)
    if path.suffix in (".npy", ".npz"):
        return _load_array(path)
    raise VaelabError(
        f"cannot read data from {path}: give a folder of images or IDX files, or a .npy/.npz array"
    )


def from_config(config) -> Dataset:
    """The data set a run's :class:`~vaelab.config.Config` names."""
    return load(config.data, config.data_dir or None, config.channels, config.image_size)


# --- binarization -----------------------------------------------------------------------------


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw x_b ~ Bernoulli(x) per pixel, same shape and dtype as ``x``."""
    return torch.bernoulli(x, generator=generator)


def is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


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
    generator = torch.Generator().manual_seed(EVAL_BINARIZE_SEED + offset)
    return binarize(x, generator)
