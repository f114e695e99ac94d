"""The :class:`Dataset` every source returns, and the seeded train / valid / test split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import VaelabError

SPLIT_SEED = 0  # one fixed permutation per data set: every run of it sees the same test set
SPLITS = ("train", "valid", "test")


@dataclass
class Dataset:
    """Three splits of examples, shape ``(N, *x_shape)``, with optional labels.

    Images are ``(N, C, H, W)`` in [0, 1]; rows of a table ``(N, P)``, standardized. A split
    is a float32 tensor, or for data larger than memory a :class:`~vaelab.data.stream.
    StreamSplit` that reads its rows from disk when sliced. ``kind`` is ``images``,
    ``arrays`` (any other shape) or ``table``; ``transform`` holds what a table's rows or a
    real-valued array's examples were standardized with (``mean``, ``std``, and a table's
    ``columns``), to encode new examples the same way. ``label_names[i]`` names label i (a
    class folder, a table's label string; empty when the labels are only numbers); ``files``
    gives, for an image folder, each split's images as paths relative to the folder.
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
    label_names: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])

    @property
    def streamed(self) -> bool:
        return not isinstance(self.train, torch.Tensor)

    @property
    def standardized(self) -> bool:
        """Whether the examples are (x - mean) / std with the training split's statistics."""
        return "mean" in self.transform

    def stored(self) -> dict:
        """What a run keeps of its data in ``RUN/data.json``: the standardization (as in
        ``transform``) and the class names, ``label_names``; empty when there is neither."""
        stored = dict(self.transform)
        if self.label_names:
            stored["label_names"] = list(self.label_names)
        return stored

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in SPLITS:
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
    files: list[str] | None = None,
) -> Dataset:
    """``x`` ``(N, ...)`` float32 (and labels ``y``, the examples' source ``files``) split by a
    fixed permutation (:data:`SPLIT_SEED`) into ``fractions`` of train, valid and test."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_train, n_valid, _ = split_sizes(len(x), fractions)
    parts = np.split(order, [n_train, n_train + n_valid])
    xs = [torch.from_numpy(np.ascontiguousarray(x[p])) for p in parts]
    ys = [None] * 3 if y is None else [torch.from_numpy(y[p].astype(np.int64)) for p in parts]
    dataset = Dataset(name, *xs, *ys, kind=kind)
    if files:
        dataset.files = {s: [files[i] for i in p] for s, p in zip(SPLITS, parts, strict=True)}
    return dataset


def recode_labels(
    y: np.ndarray | None, names: list[str], into: list[str]
) -> tuple[np.ndarray | None, list[str]]:
    """Labels ``y`` whose class i is ``names[i]``, renumbered by ``into`` (names it lacks are
    added after its own): ``(y', names')`` with ``names'[y'[n]] == names[y[n]]``, so one class
    has one number across files. Labels without names are returned as they are, unnamed."""
    if y is None:
        return None, list(into)
    if not names:
        return y, []
    merged = list(into) + [n for n in names if n not in into]
    index = {n: i for i, n in enumerate(merged)}
    return np.array([index[n] for n in names], dtype=np.int64)[y], merged


def valid_stored(stored) -> bool:
    """Whether ``stored`` (a run's ``data.json``) is what :meth:`Dataset.stored` writes: a
    dict; ``mean`` and ``std`` finite, of one shape, the std positive, and as many as a
    table's ``columns``; ``label_names`` a list of names (a Parquet label may be a number)."""
    if not isinstance(stored, dict) or ("mean" in stored) != ("std" in stored):
        return False
    if "mean" in stored:
        mean = np.asarray(stored["mean"], dtype=np.float64)  # ValueError when ragged
        std = np.asarray(stored["std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim == 0 or not np.isfinite(mean).all():
            return False
        if not (np.isfinite(std).all() and (std > 0).all()):
            return False
        if "columns" in stored and len(stored["columns"]) != len(mean):
            return False
    elif "columns" in stored:  # a table's rows are always standardized
        return False
    names = stored.get("label_names", [])
    return isinstance(names, list) and all(
        isinstance(n, (str, int, float)) and not isinstance(n, bool) for n in names
    )
