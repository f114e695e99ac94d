"""MNIST: where its files are looked up, and their checked download."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import VaelabError
from .dataset import Dataset
from .idx import MNIST_FILES, find_idx, load_idx_folder

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


def cache_dir() -> Path:
    """``$VAELAB_CACHE`` or ``~/.cache/vaelab``."""
    return Path(os.environ.get("VAELAB_CACHE") or Path.home() / ".cache" / "vaelab")


def load_mnist(data_dir: str | Path | None = None) -> Dataset:
    """MNIST from ``data_dir``, else ``$VAELAB_DATA``, else the cache (downloading if missing)."""
    if data_dir:
        return load_idx_folder(Path(data_dir).expanduser(), name="mnist")
    if os.environ.get("VAELAB_DATA"):
        return load_idx_folder(Path(os.environ["VAELAB_DATA"]).expanduser(), name="mnist")
    folder = cache_dir() / "mnist"
    if find_idx(folder) is None:
        download_mnist(folder)
    return load_idx_folder(folder, name="mnist")


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
