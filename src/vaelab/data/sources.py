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
from .dataset import SPLITS, Dataset, recode_labels, split_arrays
from .digits import load_digits
from .idx import find_idx, load_idx_folder
from .images import has_images, read_image_folder
from .memory import IN_RUN, RUN_DATA
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
    ``label_column`` to tables, ``stream`` (auto, on, off) to ``.npy`` files. Tables, and
    arrays of real values outside [0, 1], are standardized per feature with the training
    split's mean and standard deviation; ``transform`` is a run's stored description of its
    data (``RUN/data.json``), whose standardization is used instead of recomputing it (an
    array run that stored none is not standardized: it was trained before vaelab did so).
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
        dataset = _joined(path.stem, parts)
    elif (npy := _npy_header(path)) is not None and should_stream(npy, stream):
        return _streamed(npy, fractions)
    else:
        x, y, kind, info = read_source(path, *options)
        if len(x) < 10:
            raise VaelabError(f"{path} holds {len(x)} examples; at least 10 are needed to split")
        dataset = split_arrays(path.stem, x, y, fractions, kind=kind, files=info.pop("files", []))
        dataset.label_names = info.pop("label_names", [])
        dataset.transform = info
    if dataset.kind == "table" or _real_valued(dataset, transform):
        _standardize(dataset, transform)
    return dataset


def _joined(name: str, parts: list) -> Dataset:
    """The three splits given as three sources (:func:`read_source`'s results), their labels
    coded alike: a class keeps its number in every split (the training split's order, then
    names only the others hold)."""
    label_names = parts[0][3].get("label_names", [])
    ys = []
    for _, y, _, info in parts:
        y, label_names = recode_labels(y, info.get("label_names", []), label_names)
        ys.append(None if y is None else torch.from_numpy(y.astype(np.int64)))
    if any(y is None for y in ys):
        ys, label_names = [None] * 3, []
    xs = [torch.from_numpy(p[0]) for p in parts]
    info = {k: v for k, v in parts[0][3].items() if k not in ("label_names", "files")}
    dataset = Dataset(name, *xs, *ys, kind=parts[0][2], transform=info)
    dataset.label_names = label_names
    if all(p[3].get("files") for p in parts):
        dataset.files = {s: p[3]["files"] for s, p in zip(SPLITS, parts, strict=True)}
    return dataset


def _real_valued(dataset: Dataset, transform: dict | None) -> bool:
    """Whether ``dataset`` is an array of real values to standardize: by its training split's
    values (outside [0, 1]), or for a run's data by what the run stored."""
    if dataset.kind != "arrays" or dataset.streamed:
        return False
    if transform is not None:
        return "mean" in transform
    return bool(dataset.train.min() < 0 or dataset.train.max() > 1)


def from_config(config, transform: dict | None = None, run_dir: Path | None = None) -> Dataset:
    """The data set a run's :class:`~vaelab.config.Config` names; data that came in memory
    (:data:`~vaelab.data.memory.IN_RUN`), from the run folder ``run_dir``."""
    name = config.data
    if name == IN_RUN:
        if run_dir is None:
            raise VaelabError(
                f"data {IN_RUN!r} is the data a run keeps in its folder; to train on them "
                f"again, give the file: --data RUN/{RUN_DATA}"
            )
        name = str(Path(run_dir) / RUN_DATA)
    return load(
        name,
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
        x, y, info = read_image_folder(path, channels, image_size)
        return x, y, "images", info
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
    """Standardize the splits of a table or real-valued array in place, per feature, with
    the training split's statistics (or the run's stored ones); record them in
    ``dataset.transform``."""
    if transform is None or "mean" not in transform:
        mean, std = standardize(dataset.train.double().numpy())
        transform = {**dataset.transform, "mean": mean.tolist(), "std": std.tolist()}
    transform = {k: v for k, v in transform.items() if k != "label_names"}  # the data's own
    shape = np.shape(transform["mean"])
    if shape != dataset.x_shape:
        if dataset.kind == "table":
            raise VaelabError(
                f"the table has {dataset.x_shape[0]} feature columns but the run was trained "
                f"on {shape[0] if shape else 0}; give a table with the run's columns"
            )
        raise VaelabError(
            f"the data hold examples of shape {dataset.x_shape} but the run was trained on "
            f"{shape}; give data of the run's shape"
        )
    for name in SPLITS:
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
