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
- a path: a folder holding IDX files named like MNIST's (Fashion-MNIST, KMNIST ...), or a
  ``.npy`` / ``.npz`` array (``x``, optional ``y``) of shape ``(N, H, W)`` or ``(N, C, H, W)``,
  uint8 (scaled by 1/255) or float in [0, 1], split 80 / 10 / 10 with a fixed seed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .errors import VaelabError

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the original gzip files as published.
MNIST_SHA256 = {
    f"{MNIST_FILES['train_images']}.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    f"{MNIST_FILES['train_labels']}.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    f"{MNIST_FILES['test_images']}.gz": (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    f"{MNIST_FILES['test_labels']}.gz": (
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# valid and test are binarized once with this seed, the same for every run, so that
# numbers from different runs are measured on the same binary test images.
EVAL_BINARIZE_SEED = 20_151_001


@dataclass
class Dataset:
    """Three splits of images in [0, 1], shape ``(N, C, H, W)``, with optional labels."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    @property
    def x_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if name not in ("train", "valid", "test"):
            raise VaelabError(f"unknown split {name!r}; use train, valid or test")
        return getattr(self, name), getattr(self, f"{name}_labels")


def load(name: str, data_dir: str | Path | None = None) -> Dataset:
    """The data set called ``name`` (``digits``, ``mnist`` or a path)."""
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
        return _load_idx_folder(path, name=path.name)
    if path.suffix in (".npy", ".npz"):
        return _load_array(path)
    raise VaelabError(
        f"cannot read data from {path}: give a folder of IDX files or a .npy/.npz array"
    )


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits scaled to [0, 1]; split 1,437 / 180 / 180 (fixed)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return Dataset("digits", x[:1437], x[1437:1617], x[1617:], y[:1437], y[1437:1617], y[1617:])


# --- IDX files -------------------------------------------------------------------------------

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
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(folder: Path) -> dict[str, Path] | None:
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


def _load_idx_folder(folder: Path, name: str) -> Dataset:
    files = _find_idx(folder)
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


# --- MNIST: lookup and download ---------------------------------------------------------------


def cache_dir() -> Path:
    """``$VAELAB_CACHE`` or ``~/.cache/vaelab``."""
    return Path(os.environ.get("VAELAB_CACHE") or Path.home() / ".cache" / "vaelab")


def load_mnist(data_dir: str | Path | None = None) -> Dataset:
    """MNIST from ``data_dir``, else ``$VAELAB_DATA``, else the cache (downloading if missing)."""
    if data_dir:
        return _load_idx_folder(Path(data_dir).expanduser(), name="mnist")
    if os.environ.get("VAELAB_DATA"):
        return _load_idx_folder(Path(os.environ["VAELAB_DATA"]).expanduser(), name="mnist")
    folder = cache_dir() / "mnist"
    if _find_idx(folder) is None:
        download_mnist(folder)
    return _load_idx_folder(folder, name="mnist")


def download_mnist(
    dest: str | Path,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    checksums: dict[str, str] = MNIST_SHA256,
    timeout: float = 30.0,
) -> Path:
    """Download the four MNIST ``.gz`` files into ``dest``, trying each mirror in turn.

    Each file is streamed to a temporary file beside its destination, its SHA-256 compared
    with ``checksums``, and only then renamed into place: a failed or corrupt download never
    leaves a file that looks complete.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaelabError(f"cannot create the data folder {dest}: {exc}") from None
    for filename, sha256 in checksums.items():
        target = dest / filename
        if target.is_file() and _sha256(target) == sha256:
            continue
        errors = []
        for mirror in mirrors:
            try:
                _fetch(mirror.rstrip("/") + "/" + filename, target, sha256, timeout)
                break
            # HTTPException: e.g. IncompleteRead when the connection drops mid-body
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{mirror}: {exc}")
        else:
            raise VaelabError(
                f"could not download {filename} ({'; '.join(errors)}); put the MNIST files "
                f"in a folder and pass --data-dir (or set $VAELAB_DATA)"
            )
    return dest


def _fetch(url: str, target: Path, sha256: str, timeout: float) -> None:
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(f"SHA-256 mismatch for {url}: got {digest.hexdigest()}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- arrays -----------------------------------------------------------------------------------


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
    order = np.random.default_rng(0).permutation(len(x))
    n_train, n_valid = int(0.8 * len(x)), int(0.1 * len(x))
    parts = np.split(order, [n_train, n_train + n_valid])
    xs = [torch.from_numpy(x[p]) for p in parts]
    ys = [None] * 3 if y is None else [torch.from_numpy(y[p].astype(np.int64)) for p in parts]
    return Dataset(path.stem, *xs, *ys)


def _whole_numbers(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return True
    if np.issubdtype(y.dtype, np.floating):
        return bool(np.isfinite(y).all() and (y == np.round(y)).all())
    return False


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
