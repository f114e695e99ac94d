"""Data larger than memory: a ``.npy`` file read block by block, never whole.

The file's rows are grouped in blocks of :data:`BLOCK_ROWS` consecutive rows; the train,
valid and test splits are fixed random sets of blocks, so every read is one contiguous
range of the file. Reads go through ``np.fromfile`` (``pread``), not a long-lived memory
map, so pages already used do not stay in the process's resident memory.

Shuffle quality. An epoch visits the training blocks in a fresh random order, reads them
:data:`WINDOW_BYTES` (64 MB as float32) at a time, and shuffles the rows inside each
window (rows left over from a window join the next). Two rows meet in a batch only if their
blocks fall in the same window, so a batch mixes the window's random blocks (20 blocks of
1,024 rows for 28 x 28 images), not the whole file: on data stored in a meaningful order
(sorted by class, by time), each batch still draws from 20 places spread over the file.
Memory: about three windows at once, some 200 MB, whatever the file's size.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import VaelabError
from .binarization import binarize
from .dataset import SPLIT_SEED, split_sizes

BLOCK_ROWS = 1024
WINDOW_BYTES = 64 << 20  # float32 bytes read and shuffled together: 20 blocks of MNIST rows


@dataclass(frozen=True)
class NpyFile:
    """Where a C-ordered ``.npy`` array's data lie: byte offset, dtype, shape ``(N, ...)``."""

    path: Path
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @classmethod
    def open(cls, path: Path) -> NpyFile:
        try:
            header = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise VaelabError(f"cannot read array file {path}: {exc}") from None
        if not isinstance(header, np.memmap):
            raise VaelabError(f"{path} is not a plain .npy array; save it with numpy.save")
        fortran = header.ndim > 1 and not header.flags.c_contiguous
        found = cls(path, header.offset, header.dtype, tuple(header.shape))
        header._mmap.close()  # only the header was wanted; close the mapping now
        if header.ndim == 0:
            raise VaelabError(
                f"{path} holds a single number, not examples; save an array of shape (N, ...)"
            )
        if fortran:
            raise VaelabError(
                f"{path} is stored in Fortran order; save it with numpy.save(path, "
                "numpy.ascontiguousarray(x)) to stream it"
            )
        return found

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop - 1``, shape ``(stop - start, ...)``."""
        count = (stop - start) * math.prod(self.shape[1:])
        rows = np.fromfile(
            self.path, dtype=self.dtype, count=count, offset=self.offset + start * self.row_bytes
        )
        if rows.size != count:
            raise VaelabError(f"{self.path} is shorter than its header says; it is truncated")
        return rows.reshape(stop - start, *self.shape[1:])


def to_unit_float(rows: np.ndarray) -> np.ndarray:
    """uint8 scaled by 1/255, floats as float32."""
    if rows.dtype == np.uint8:
        return rows.astype(np.float32) / np.float32(255.0)
    return rows.astype(np.float32, copy=False)


@dataclass(frozen=True)
class StreamSplit:
    """One split of a streamed ``.npy``: the file's blocks ``blocks`` (sorted), in order.

    Sliced with ``split[a:b]`` it reads those rows and returns a float32 tensor of shape
    ``(b - a, *x_shape)``, so the scoring functions take it like a tensor. With
    ``binarize_seed`` set, block j of the split is binarized with the seed
    (binarize_seed, j): the same draw whatever the slicing.
    """

    file: NpyFile
    blocks: np.ndarray
    x_shape: tuple[int, ...]
    binarize_seed: int | None = None

    def __post_init__(self) -> None:
        n = self.file.shape[0]
        sizes = np.minimum(BLOCK_ROWS, n - self.blocks * BLOCK_ROWS)
        object.__setattr__(self, "_starts", np.concatenate([[0], np.cumsum(sizes)]))
        object.__setattr__(self, "_cache", OrderedDict())

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.x_shape)

    def binarized(self, seed: int) -> StreamSplit:
        return replace(self, binarize_seed=seed)

    def _block(self, j: int) -> torch.Tensor:
        """Block j of the split as float32 ``(rows, *x_shape)``; the last two are cached."""
        if j not in self._cache:
            x = self._read_block(j)
            if self.binarize_seed is not None:
                seed = self.binarize_seed * 1_000_003 + j
                x = binarize(x, torch.Generator().manual_seed(seed))
            self._cache[j] = x
            if len(self._cache) > 2:
                self._cache.popitem(last=False)
        return self._cache[j]

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("a streamed split is read by contiguous slices, split[a:b]")
        start, stop, _ = index.indices(len(self))
        if stop <= start:
            return torch.empty(0, *self.x_shape)
        first, last = np.searchsorted(self._starts, [start, stop - 1], side="right") - 1
        parts = [self._block(j) for j in range(first, last + 1)]
        joined = parts[0] if len(parts) == 1 else torch.cat(parts)
        offset = start - int(self._starts[first])
        return joined[offset : offset + stop - start]

    @property
    def window_blocks(self) -> int:
        """Blocks per window: :data:`WINDOW_BYTES` of float32 rows, at least one block."""
        return max(1, WINDOW_BYTES // (4 * math.prod(self.x_shape) * BLOCK_ROWS))

    def chunks(self, rows: int = 0) -> Iterator[torch.Tensor]:
        """The split in order, ``rows`` rows (default: a window's worth) at a time."""
        rows = rows or self.window_blocks * BLOCK_ROWS
        for start in range(0, len(self), rows):
            yield self[start : start + rows]

    def batches(
        self, batch_size: int, generator: torch.Generator, dynamic: bool
    ) -> Iterator[torch.Tensor]:
        """One epoch of shuffled batches (see the module's note on shuffle quality): blocks
        in random order, rows shuffled within windows of :data:`WINDOW_BYTES`; with
        ``dynamic`` a fresh Bernoulli draw. ``ceil(len / batch_size)`` batches; all but the
        last hold ``batch_size`` rows."""
        order = torch.randperm(len(self.blocks), generator=generator).numpy()
        per_window = self.window_blocks
        carry = torch.empty(0, *self.x_shape)
        for w in range(0, len(order), per_window):
            x = torch.cat([carry, *(self._read_block(int(j)) for j in order[w : w + per_window])])
            if dynamic:
                x = binarize(x, generator)
            x = x[torch.randperm(len(x), generator=generator)]
            full = len(x) // batch_size * batch_size
            yield from x[:full].split(batch_size)
            carry = x[full:].clone()  # a view would keep the whole window alive
        if len(carry):
            yield carry

    def _read_block(self, j: int) -> torch.Tensor:
        b = int(self.blocks[j])
        stop = min((b + 1) * BLOCK_ROWS, self.file.shape[0])
        x = torch.from_numpy(to_unit_float(self.file.read(b * BLOCK_ROWS, stop)))
        return x.reshape(-1, *self.x_shape)

    def mean(self) -> torch.Tensor:
        """The mean example ``x_shape``, summed in float64 over chunks."""
        total = torch.zeros(self.x_shape, dtype=torch.float64)
        for x in self.chunks():
            total += x.double().sum(0)
        return (total / len(self)).float()


def split_blocks(n_rows: int, fractions: tuple[float, float, float]) -> list[np.ndarray]:
    """The file's blocks dealt into train, valid and test by a fixed permutation; each
    split's blocks sorted, so reading a split in order reads the file forwards."""
    n_blocks = -(-n_rows // BLOCK_ROWS)
    if n_blocks < 3:
        raise VaelabError(
            f"{n_rows} rows are too few to stream; use --stream off for data that fits in memory"
        )
    order = np.random.default_rng(SPLIT_SEED).permutation(n_blocks)
    n_train, n_valid, _ = split_sizes(n_blocks, fractions)
    parts = np.split(order, [n_train, n_train + n_valid])
    return [np.sort(p) for p in parts]


def check_values(file: NpyFile, images: bool) -> None:
    """Float data: every value finite (and in [0, 1] for images), checked chunk by chunk."""
    if file.dtype == np.uint8:
        return
    n = file.shape[0]
    step = max(1, WINDOW_BYTES // max(1, 4 * file.row_bytes // file.dtype.itemsize))
    for start in range(0, n, step):
        rows = file.read(start, min(n, start + step))
        if not np.isfinite(rows).all():
            raise VaelabError(
                f"{file.path} contains NaN or Inf values (rows {start}..{start + len(rows) - 1}); "
                "clean the data first"
            )
        if images and (rows.min() < 0 or rows.max() > 1):
            raise VaelabError(
                f"{file.path}: float images must lie in [0, 1] (rows {start}.."
                f"{start + len(rows) - 1} hold {rows.min()}..{rows.max()}); scale them, or "
                "save them as uint8"
            )
