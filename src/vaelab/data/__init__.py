"""Data sources -> tensors with fixed train / valid / test splits; binarization.

Every source returns a :class:`Dataset`: images as float32 ``(N, C, H, W)`` in [0, 1], other
arrays as ``(N, ...)``, tables as standardized rows ``(N, P)``; integer labels ``(N,)``
where the source has them.

Sources:

- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images), scaled by 1/16, split
  1,437 / 180 / 180 with a fixed permutation. Embedded: needs no files.
- ``shapes``: generated binary 64x64 (or ``--image-size``) images of a square, an ellipse or
  a heart with the dSprites factors (:mod:`~vaelab.data.shapes`); a fixed random 20,000 /
  2,000 / 2,000 of the 737,280 combinations, labelled by shape.
- ``mnist``: the four standard IDX files (``.gz`` or not). Training file -> 50,000 train and
  the last 10,000 valid; test file -> 10,000 test. Looked up in ``--data-dir``, else in
  ``$VAELAB_DATA``, else in the cache folder, where missing files are downloaded from the
  standard mirrors and checked against their SHA-256.
- a folder holding IDX files named like MNIST's (Fashion-MNIST, KMNIST ...), with their split.
- a folder of images (PNG, JPEG, BMP), flat or one sub-folder per class;
- a ``.npy`` (memory-mapped; streamed from disk when larger than memory) or ``.npz``
  (``x``, optional ``y``) array of any shape ``(N, ...)``, uint8 (scaled by 1/255) or float;
- a CSV or Parquet table of numeric columns (optional label column), standardized with the
  training split's statistics.

Your own data is split ``--split`` (default 0.8,0.1,0.1) by a fixed permutation, or given
as three files or folders (``--data``, ``--valid-data``, ``--test-data``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from .arrays import check_dtype, example_shape, is_npy, read_array, should_stream
from .binarization import binarize
from .dataset import Dataset, parse_split, split_arrays
from .digits import load_digits
from .idx import MNIST_FILES, _find_idx, _load_idx_folder, read_idx
from .images import IMAGE_SUFFIXES, has_images, load_image_folder, read_image_folder
from .mnist import MNIST_MIRRORS, MNIST_SHA256, cache_dir, download_mnist, load_mnist
from .shapes import load_shapes
from .stream import NpyFile, StreamSplit, check_values, split_blocks, to_unit_float
from .tables import TABLE_SUFFIXES, apply_transform, read_table, standardize

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "IMAGE_SUFFIXES",
    "Dataset",
    "binarize",
    "choose_likelihood",
    "epoch_batches",
    "cache_dir",
    "download_mnist",
    "eval_split",
    "from_config",
    "is_binary",
    "load",
    "load_digits",
    "load_image_folder",
    "load_mnist",
    "NpyFile",
    "StreamSplit",
    "apply_transform",
    "check_dtype",
    "example_shape",
    "existing_path",
    "is_npy",
    "read_source",
    "to_unit_float",
    "read_idx",
]

# valid and test are binarized once with this seed, the same for every run, so that
# numbers from different runs are measured on the same binary test images.
EVAL_BINARIZE_SEED = 20_151_001


DEFAULT_SPLIT = "0.8,0.1,0.1"


def load(
    name: str,
    data_dir: str | Path | None = None,
    channels: int = 0,
    image_size: int = 0,
    *,
    split: str = DEFAULT_SPLIT,
    stream: str = "auto",
    label_column: str = "",
    valid_data: str = "",
    test_data: str = "",
    transform: dict | None = None,
) -> Dataset:
    """The data set called ``name`` (``digits``, ``mnist``, ``shapes`` or a path), split.

    ``channels`` and ``image_size`` apply to image folders (``image_size`` also to shapes),
    ``label_column`` to tables, ``stream`` (auto, on, off) to ``.npy`` files; ``transform`` is
    a run's stored table standardization, used instead of recomputing it.
    """
    fractions = parse_split(split)
    own_split = split != DEFAULT_SPLIT or valid_data or test_data
    if name in ("digits", "mnist", "shapes"):
        if own_split:
            raise VaelabError(
                f"{name} has its standard split; drop --split/--valid-data/--test-data"
            )
        if name == "shapes":
            return load_shapes(image_size)
        return load_digits() if name == "digits" else load_mnist(data_dir)
    path = existing_path(name)
    if bool(valid_data) != bool(test_data):
        raise VaelabError("give both --valid-data and --test-data, or neither (to use --split)")
    if valid_data and split != DEFAULT_SPLIT:
        raise VaelabError("--split and --valid-data/--test-data exclude each other; drop one")
    if label_column and path.suffix not in TABLE_SUFFIXES:
        raise VaelabError("--label-column applies to CSV and Parquet tables only")
    if path.is_dir() and not any(path.iterdir()):
        raise VaelabError(f"data folder {path} is empty; it needs images or IDX files")
    if path.is_dir() and (_find_idx(path) is not None or not has_images(path)):
        if own_split:
            raise VaelabError(f"the IDX files in {path} have their own split; drop --split")
        return _load_idx_folder(path, name=path.name)
    options = (channels, image_size, label_column)
    if valid_data:
        parts = [read_source(existing_path(p), *options) for p in (name, valid_data, test_data)]
        shapes = {p[0].shape[1:] for p in parts}
        if len(shapes) > 1 or len({p[2] for p in parts}) > 1:
            raise VaelabError(
                f"--data, --valid-data and --test-data differ in kind or shape {sorted(shapes)}; "
                "they must hold the same kind of examples"
            )
        xs = [torch.from_numpy(p[0]) for p in parts]
        ys = [None if p[1] is None else torch.from_numpy(p[1].astype(np.int64)) for p in parts]
        if any(y is None for y in ys):
            ys = [None] * 3
        dataset = Dataset(path.stem, *xs, *ys, kind=parts[0][2], transform=parts[0][3])
    elif (npy := _npy_header(path)) is not None and should_stream(npy, stream):
        return _streamed(npy, fractions)
    else:
        x, y, kind, info = read_source(path, *options)
        if len(x) < 10:
            raise VaelabError(f"{path} holds {len(x)} examples; at least 10 are needed to split")
        dataset = split_arrays(path.stem, x, y, fractions, kind=kind)
        dataset.transform = info
    if dataset.kind == "table":
        _standardize(dataset, transform)
    return dataset


def from_config(config, transform: dict | None = None) -> Dataset:
    """The data set a run's :class:`~vaelab.config.Config` names."""
    return load(
        config.data,
        config.data_dir or None,
        config.channels,
        config.image_size,
        split=config.split,
        stream=config.stream,
        label_column=config.label_column,
        valid_data=config.valid_data,
        test_data=config.test_data,
        transform=transform,
    )


def existing_path(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.exists():
        raise VaelabError(
            f"data {name!r} is neither a built-in (digits, mnist, shapes) nor an existing path; "
            "check the spelling"
        )
    return path


def read_source(
    path: Path, channels: int, image_size: int, label_column: str, optional_label: bool = False
):
    """``(x, y, kind, info)`` of one file or folder, whole, unsplit; with ``optional_label``
    a table may lack its label column."""
    if path.is_dir():
        if not has_images(path):
            raise VaelabError(f"{path} holds no PNG, JPEG or BMP images; give an image folder")
        x, y = read_image_folder(path, channels, image_size)
        return x, y, "images", {}
    if path.suffix in (".npy", ".npz"):
        x, y, kind = read_array(path)
        return x, y, kind, {}
    if path.suffix in TABLE_SUFFIXES:
        x, y, info = read_table(path, label_column, optional_label=optional_label)
        return x, y, "table", info
    raise VaelabError(
        f"cannot read data from {path}: give a folder of images or IDX files, a .npy/.npz "
        "array, or a .csv/.parquet table"
    )


def _standardize(dataset: Dataset, transform: dict | None) -> None:
    """Standardize a table's splits in place with the training split's statistics (or the
    run's stored ones); record them in ``dataset.transform``."""
    if transform is None:
        mean, std = standardize(dataset.train.double().numpy())
        transform = {**dataset.transform, "mean": mean.tolist(), "std": std.tolist()}
    if len(transform["mean"]) != dataset.x_shape[0]:
        raise VaelabError(
            f"the table has {dataset.x_shape[0]} feature columns but the run was trained on "
            f"{len(transform['mean'])}; give a table with the run's columns"
        )
    for name in ("train", "valid", "test"):
        x = getattr(dataset, name).double().numpy()
        setattr(dataset, name, torch.from_numpy(apply_transform(x, transform)))
    dataset.transform = transform


def _npy_header(path: Path) -> NpyFile | None:
    """The header of a bare ``.npy`` array (by content, whatever its suffix), else None."""
    if path.suffix in (".npy", ".npz") and is_npy(path):
        return NpyFile.open(path)
    return None


def _streamed(file: NpyFile, fractions) -> Dataset:
    """A ``.npy`` too large for memory: three :class:`StreamSplit` views of the file."""
    path = file.path
    check_dtype(path, file.dtype)
    x_shape, kind = example_shape(path, file.shape)
    check_values(file, images=kind == "images")
    splits = [
        StreamSplit(file, blocks, x_shape) for blocks in split_blocks(file.shape[0], fractions)
    ]
    return Dataset(path.stem, *splits, kind=kind)


def epoch_batches(
    x_train, batch_size: int, generator: torch.Generator, dynamic: bool, device, buffer=None
):
    """One epoch of shuffled training batches on ``device``: ``(index, x)`` pairs, ``x`` of
    shape ``(<= batch_size, *x_shape)`` and ``index`` its rows of the training split.

    In memory: the whole split is binarized at once (with ``dynamic``; into ``buffer``, a
    tensor like ``x_train`` the caller keeps from epoch to epoch, when given), then indexed by
    one random permutation. Streamed: blocks and windows (:meth:`StreamSplit.batches`), and
    ``index`` is None.
    """
    if isinstance(x_train, StreamSplit):
        for x in x_train.batches(batch_size, generator, dynamic):
            yield None, x.to(device)
        return
    epoch_x = binarize(x_train, generator, buffer) if dynamic else x_train
    epoch_x = epoch_x.to(device)
    order = torch.randperm(len(x_train), generator=generator).to(device)
    for start in range(0, len(x_train), batch_size):
        index = order[start : start + batch_size]
        # whole rows copied one by one (index_select), rather than indexing's general kernel
        yield index, epoch_x.index_select(0, index)


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
    if binarize == "auto":
        binarize = "dynamic" if likelihood == "bernoulli" else "none"
    return likelihood, binarize, reason


# --- binarization -----------------------------------------------------------------------------


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
    if isinstance(x, StreamSplit):
        return x.binarized(EVAL_BINARIZE_SEED + offset)
    generator = torch.Generator().manual_seed(EVAL_BINARIZE_SEED + offset)
    return binarize(x, generator)
