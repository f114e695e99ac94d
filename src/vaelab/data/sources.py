"""From a data set's name (digits, mnist, shapes) or a path to a :class:`Dataset`, split.

:func:`load` looks at what the name or path holds (built-in, IDX folder, image folder,
array, table, or a ``.npy`` too large for memory) and hands it to the reader of that kind;
:func:`from_config` reads the options of a run's configuration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import DEFAULT_SPLIT, parse_split
from ..errors import VaelabError
from .arrays import check_dtype, example_shape, is_npy, read_array, should_stream
from .dataset import Dataset, split_arrays
from .digits import load_digits
from .idx import find_idx, load_idx_folder
from .images import has_images, read_image_folder
from .mnist import load_mnist
from .shapes import load_shapes
from .stream import NpyFile, StreamSplit, check_values, split_blocks
from .tables import TABLE_SUFFIXES, apply_transform, read_table, standardize


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
    if path.is_dir() and (find_idx(path) is not None or not has_images(path)):
        if own_split:
            raise VaelabError(f"the IDX files in {path} have their own split; drop --split")
        return load_idx_folder(path, name=path.name)
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
