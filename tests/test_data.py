"""Data sources as a user relies on them: real IDX / array files and a real local HTTP mirror.

Every file is written here by hand (IDX with ``struct``), every download goes to a
``ThreadingHTTPServer`` on 127.0.0.1; nothing touches the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import json
import struct
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab.checkpoint import open_run
from vaelab.cli import main
from vaelab.config import read_toml
from vaelab.data import Dataset, binarize, epoch_batches, eval_split, load
from vaelab.data.binarization import BLOCK_ROWS
from vaelab.data.dataset import split_arrays
from vaelab.data.digits import load_digits
from vaelab.data.idx import MNIST_FILES, read_idx
from vaelab.data.mnist import MNIST_SHA256, cache_dir, download_mnist, load_mnist
from vaelab.errors import VaelabError

REAL_MNIST = Path("/work/shared/data/mnist")

# --- writing IDX files by hand ----------------------------------------------------------------

_IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, _IDX_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist_folder(folder: Path, n_train=60, n_test=12, side=4, gz=True, seed=0) -> dict:
    """The four MNIST-named IDX files with random uint8 images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    # the extremes must survive scaling: 0 -> 0.0 and 255 -> 1.0
    arrays["train_images"][0, 0, 0], arrays["train_images"][0, 0, 1] = 0, 255
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        write_idx(folder / (MNIST_FILES[key] + (".gz" if gz else "")), array, gz)
    return arrays


def unit(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


# --- 1. IDX round trip and the MNIST-style split ----------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_returns_exactly_what_was_written(tmp_path, gz, dtype):
    rng = np.random.default_rng(1)
    images = (rng.normal(size=(7, 5, 3)) * 100).astype(dtype)
    labels = rng.integers(0, 10, 7).astype(dtype)
    for name, array in [("images", images), ("labels", labels)]:
        got = read_idx(write_idx(tmp_path / f"{name}.idx", array, gz))
        assert got.shape == array.shape
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize(("side", "gz"), [(4, True), (28, False)], ids=["4x4-gz", "28x28-plain"])
def test_idx_folder_splits_train_five_sixths_valid_last_sixth(tmp_path, side, gz):
    arrays = write_mnist_folder(tmp_path / "fashion", side=side, gz=gz)
    for ds in (load(str(tmp_path / "fashion")), load_mnist(data_dir=tmp_path / "fashion")):
        assert isinstance(ds, Dataset)
        assert ds.train.shape == (50, 1, side, side)
        assert ds.valid.shape == (10, 1, side, side)
        assert ds.test.shape == (12, 1, side, side)
        assert ds.x_shape == (1, side, side)
        for x in (ds.train, ds.valid, ds.test):
            assert x.dtype == torch.float32
            assert x.min() >= 0 and x.max() <= 1
        assert ds.train[0, 0, 0, 0] == 0.0 and ds.train[0, 0, 0, 1] == 1.0
        torch.testing.assert_close(ds.train, unit(arrays["train_images"][:50]))
        torch.testing.assert_close(ds.valid, unit(arrays["train_images"][50:]))
        torch.testing.assert_close(ds.test, unit(arrays["test_images"]))
        assert ds.train_labels.tolist() == arrays["train_labels"][:50].tolist()
        assert ds.valid_labels.tolist() == arrays["train_labels"][50:].tolist()
        assert ds.test_labels.tolist() == arrays["test_labels"].tolist()
        assert ds.split("valid")[1] is ds.valid_labels
    assert load(str(tmp_path / "fashion")).name == "fashion"
    assert load_mnist(data_dir=tmp_path / "fashion").name == "mnist"


def test_plain_and_gz_files_may_be_mixed_in_one_folder(tmp_path):
    arrays = write_mnist_folder(tmp_path, gz=True)
    stem = MNIST_FILES["test_labels"]
    (tmp_path / f"{stem}.gz").unlink()
    write_idx(tmp_path / stem, arrays["test_labels"], gz=False)
    assert load(str(tmp_path)).test_labels.tolist() == arrays["test_labels"].tolist()


# --- 2. bad IDX input always raises VaelabError -----------------------------------------------


def _header(shape, code=0x08) -> bytes:
    return struct.pack(">BBBB", 0, 0, code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


_BAD_IDX = {
    "truncated-data": _header((5, 4, 4)) + bytes(4 * 16),
    "too-much-data": _header((2,)) + bytes(3),
    "truncated-header": _header((5, 4, 4))[:9],
    "bad-magic": b"\x01\x02\x08\x01" + struct.pack(">I", 3) + bytes(3),
    "unknown-type": _header((3,), code=0x07) + bytes(3),
    "zero-dims": b"\x00\x00\x08\x00",
    "empty": b"",
    "garbage-text": b"this is not an IDX file, just some text\n" * 3,
    # 65536**4 == 2**64: a size computed in 64-bit integers wraps to 0 and "matches" no data
    "shape-overflows-int64": _header((65536, 65536, 65536, 65536)),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("content", _BAD_IDX.values(), ids=_BAD_IDX.keys())
def test_bad_idx_content_raises_vaelab_error(tmp_path, content, gz):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(VaelabError, match="bad.idx"):
        read_idx(path)


def test_broken_gzip_streams_raise_vaelab_error(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 10, 10)))
    broken = {
        "truncated": good[: len(good) // 2],
        "header-only": good[:10],
        "corrupt-deflate": good[:10] + b"\xff" * 8 + good[18:],
        "bad-crc": good[:-8] + bytes(8),
        "trailing-garbage": good + b"garbage!",
        "gzip-magic-then-junk": b"\x1f\x8bjunk",
    }
    for name, data in broken.items():
        path = tmp_path / f"{name}.gz"
        path.write_bytes(data)
        with pytest.raises(VaelabError):
            read_idx(path)


def test_missing_or_unreadable_idx_path_raises_vaelab_error(tmp_path):
    with pytest.raises(VaelabError):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(VaelabError):
        read_idx(tmp_path)  # a folder, not a file


@pytest.mark.parametrize("missing", MNIST_FILES.keys())
def test_folder_missing_one_of_the_four_files_raises_vaelab_error(tmp_path, missing):
    write_mnist_folder(tmp_path)
    (tmp_path / f"{MNIST_FILES[missing]}.gz").unlink()
    with pytest.raises(VaelabError, match=MNIST_FILES[missing]):
        load(str(tmp_path))
    with pytest.raises(VaelabError):
        load_mnist(data_dir=tmp_path)


def test_idx_folder_with_inconsistent_files_raises_vaelab_error(tmp_path):
    arrays = write_mnist_folder(tmp_path)
    labels = MNIST_FILES["train_labels"] + ".gz"
    write_idx(tmp_path / labels, arrays["train_labels"][:-1], gz=True)  # 59 labels, 60 images
    with pytest.raises(VaelabError, match="do not match"):
        load(str(tmp_path))

    write_mnist_folder(tmp_path)
    images = MNIST_FILES["test_images"] + ".gz"
    write_idx(tmp_path / images, np.zeros((12, 5, 5), np.uint8), gz=True)  # 5x5 vs 4x4 train
    with pytest.raises(VaelabError, match="5, 5"):
        load(str(tmp_path))

    write_mnist_folder(tmp_path)
    images = MNIST_FILES["train_images"] + ".gz"
    write_idx(tmp_path / images, np.full((60, 4, 4), 1000, ">i4"), gz=True)  # not uint8 pixels
    with pytest.raises(VaelabError, match="uint8"):
        load(str(tmp_path))

    write_mnist_folder(tmp_path, n_train=5)  # 5 // 6 == 0 valid images
    with pytest.raises(VaelabError, match="too few"):
        load(str(tmp_path))


def _near_idx():
    """Bytes that often pass the magic check, so the fuzzer reaches the shape logic."""
    return st.builds(
        lambda code, dims, data: _header(dims, code) + data,
        st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF]),
        st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 4), min_size=0, max_size=4),
        st.binary(max_size=64),
    )


@settings(max_examples=50, deadline=None)
@given(
    content=st.binary(max_size=256) | _near_idx(),
    wrap=st.sampled_from(["plain", "gz", "gz-truncated", "gz-flipped"]),
    cut=st.integers(0, 1000),
)
def test_fuzzed_idx_bytes_give_an_array_or_vaelab_error(tmp_path_factory, content, wrap, cut):
    if wrap != "plain":
        content = gzip.compress(content)
    if wrap == "gz-truncated":
        content = content[: cut % len(content)]
    elif wrap == "gz-flipped":
        at = cut % len(content)
        content = content[:at] + bytes([content[at] ^ 0xA5]) + content[at + 1 :]
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.idx"
    path.write_bytes(content)
    try:
        array = read_idx(path)
    except VaelabError:
        return
    assert isinstance(array, np.ndarray)


# --- 3. download from a real local HTTP mirror ------------------------------------------------


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from ``directory``; under /broken/ the connection drops mid-body."""

    def log_message(self, format, *args):  # keep pytest output free of request lines
        pass

    def do_GET(self):
        if self.path.startswith("/broken/"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"400\r\n" + b"x" * 10)  # promises 1024 bytes, sends 10
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def mirror(tmp_path, monkeypatch, request):
    """A real HTTP server on 127.0.0.1; yields (served folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    (root / "mnist").mkdir(parents=True)
    handler = functools.partial(_MirrorHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    request.addfinalizer(stop)
    return root, f"http://127.0.0.1:{server.server_address[1]}"


def _serve_mnist(root: Path) -> dict[str, bytes]:
    """Small gz IDX files under the MNIST names; returns {filename: bytes}."""
    write_mnist_folder(root / "mnist", gz=True)
    return {name: (root / "mnist" / name).read_bytes() for name in MNIST_SHA256}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_survives_a_404_mirror_and_lands_the_exact_bytes(tmp_path, mirror):
    root, url = mirror
    served = _serve_mnist(root)
    checksums = {name: _sha(data) for name, data in served.items()}
    dest = tmp_path / "dest" / "mnist"
    out = download_mnist(dest, mirrors=(f"{url}/missing/", f"{url}/mnist/"), checksums=checksums)
    assert out == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(served)  # no temp files left
    for name, data in served.items():
        assert (dest / name).read_bytes() == data
    assert load(str(dest)).train.shape == (50, 1, 4, 4)


def test_download_survives_a_connection_dropped_mid_transfer(tmp_path, mirror):
    root, url = mirror
    served = _serve_mnist(root)
    name = MNIST_FILES["train_labels"] + ".gz"
    dest = tmp_path / "dest"
    download_mnist(
        dest, mirrors=(f"{url}/broken/", f"{url}/mnist/"), checksums={name: _sha(served[name])}
    )
    assert [p.name for p in dest.iterdir()] == [name]
    assert (dest / name).read_bytes() == served[name]


def test_download_with_wrong_checksum_raises_and_leaves_no_file(tmp_path, mirror):
    root, url = mirror
    served = _serve_mnist(root)
    name = MNIST_FILES["test_images"] + ".gz"
    dest = tmp_path / "dest"
    with pytest.raises(VaelabError, match="SHA-256 mismatch"):
        download_mnist(dest, mirrors=(f"{url}/mnist/",), checksums={name: "0" * 64})
    assert list(dest.iterdir()) == []

    # a corrupt earlier download in place is replaced, not trusted
    (dest / name).write_bytes(b"half a file")
    download_mnist(dest, mirrors=(f"{url}/mnist/",), checksums={name: _sha(served[name])})
    assert (dest / name).read_bytes() == served[name]
    assert [p.name for p in dest.iterdir()] == [name]


def test_download_with_every_mirror_failing_names_the_fix(tmp_path, mirror):
    _, url = mirror
    dest = tmp_path / "dest"
    name = MNIST_FILES["test_labels"] + ".gz"
    mirrors = (f"{url}/missing/", f"{url}/broken/", "http://127.0.0.1:0/")
    with pytest.raises(VaelabError, match="--data-dir"):
        download_mnist(dest, mirrors=mirrors, checksums={name: "0" * 64}, timeout=5)
    assert list(dest.iterdir()) == []


def test_download_skips_files_already_present_with_the_right_checksum(tmp_path, mirror):
    root, url = mirror
    served = _serve_mnist(root)
    name = MNIST_FILES["train_images"] + ".gz"
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / name).write_bytes(served[name])
    (root / "mnist" / name).unlink()  # the mirror no longer has it: a request would fail
    download_mnist(dest, mirrors=(f"{url}/mnist/",), checksums={name: _sha(served[name])})
    assert (dest / name).read_bytes() == served[name]


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if the code under test tries to open any URL."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected network access: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_load_mnist_reads_the_cache_when_the_files_are_there(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    assert cache_dir() == tmp_path / "cache"
    arrays = write_mnist_folder(cache_dir() / "mnist", gz=True)
    ds = load_mnist()
    assert ds.name == "mnist"
    assert ds.test_labels.tolist() == arrays["test_labels"].tolist()
    assert load("mnist").train.shape == (50, 1, 4, 4)


def test_load_mnist_prefers_data_dir_then_vaelab_data(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "empty-cache"))
    write_mnist_folder(tmp_path / "env", n_test=12)
    write_mnist_folder(tmp_path / "arg", n_test=6)
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "env"))
    assert len(load_mnist().test) == 12
    assert len(load_mnist(tmp_path / "arg").test) == 6
    assert len(load("mnist", data_dir=tmp_path / "arg").test) == 6


# --- 4. arrays: .npz and .npy, split 80 / 10 / 10 ---------------------------------------------


def test_npz_uint8_is_split_80_10_10_without_loss_or_overlap(tmp_path):
    n = 50
    x = np.random.default_rng(2).integers(0, 256, (n, 5, 6), dtype=np.uint8)
    y = np.arange(n)  # labels identify each example
    np.savez(tmp_path / "shapes.npz", x=x, y=y)
    ds = load(str(tmp_path / "shapes.npz"))
    assert ds.name == "shapes"
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (40, 5, 5)
    ids = [ds.train_labels, ds.valid_labels, ds.test_labels]
    assert sorted(torch.cat(ids).tolist()) == list(range(n))  # disjoint and covering all
    for split, labels in zip((ds.train, ds.valid, ds.test), ids, strict=True):
        assert split.dtype == torch.float32 and split.shape[1:] == (1, 5, 6)
        torch.testing.assert_close(split, unit(x[labels.numpy()]))
    again = load(str(tmp_path / "shapes.npz"))
    assert torch.equal(again.test_labels, ds.test_labels)  # a fixed split


def test_npy_float_images_keep_their_values_and_channels(tmp_path):
    n = 30
    x = np.random.default_rng(3).random((n, 3, 4, 4))
    x[:, 0, 0, 0] = np.arange(n) / (n - 1)  # a unique tag per example
    np.save(tmp_path / "float.npy", x)
    ds = load(str(tmp_path / "float.npy"))
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (24, 3, 3)
    assert ds.train_labels is None and ds.test_labels is None
    assert ds.x_shape == (3, 4, 4)
    rows = torch.cat([ds.train, ds.valid, ds.test]).double()
    tags = sorted(round(t * (n - 1)) for t in rows[:, 0, 0, 0].tolist())
    assert tags == list(range(n))
    assert rows.min() >= 0 and rows.max() <= 1
    expected = torch.from_numpy(x.astype(np.float32)).double()
    torch.testing.assert_close(rows[rows[:, 0, 0, 0].argsort()], expected)


def _bad_arrays():
    floats = np.random.default_rng(4).random((20, 4, 4))
    with_nan = floats.copy()
    with_nan[3, 1, 1] = np.nan
    with_inf = floats.copy()
    with_inf[0, 0, 0] = np.inf
    return {
        "nan.npy": with_nan,
        "inf.npy": with_inf,
        "above-one.npy": floats * 1.5,
        "negative.npy": floats - 0.5,
        "ndim-1.npy": floats.reshape(320),
        "vectors-with-nan.npy": with_nan.reshape(20, 16),
        "int64.npy": (floats * 255).astype(np.int64),
        "too-few.npy": floats[:5],
        "empty.npy": np.zeros((0, 4, 4), np.uint8),
        "zero-size-images.npy": np.zeros((20, 0, 4), np.uint8),
        "strings.npy": np.array(["a"] * 20),
    }


@pytest.mark.parametrize(("name", "x"), _bad_arrays().items(), ids=_bad_arrays().keys())
def test_bad_array_files_raise_vaelab_error(tmp_path, name, x):
    np.save(tmp_path / name, x)
    with pytest.raises(VaelabError):
        load(str(tmp_path / name))


def test_bad_npz_archives_raise_vaelab_error(tmp_path):
    x = np.zeros((20, 4, 4), np.uint8)
    np.savez(tmp_path / "no-x.npz", images=x)
    np.savez(tmp_path / "short-y.npz", x=x, y=np.arange(19))
    np.savez(tmp_path / "nan-y.npz", x=x, y=np.full(20, np.nan))
    np.savez(tmp_path / "text-y.npz", x=x, y=np.array(["cat"] * 20))
    np.savez(tmp_path / "object-x.npz", x=np.array([None] * 20, dtype=object))
    good = (tmp_path / "no-x.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "not-a-zip.npz").write_bytes(b"PK\x03\x04 this is no zip archive")
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    for path in sorted(tmp_path.iterdir()):
        with pytest.raises(VaelabError):
            load(str(path))


def test_npz_float_labels_that_are_whole_numbers_are_accepted(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 2, 2), np.uint8), y=np.arange(20.0))
    ds = load(str(tmp_path / "d.npz"))
    assert sorted(torch.cat([ds.train_labels, ds.valid_labels, ds.test_labels]).tolist()) == (
        list(range(20))
    )


def test_array_files_are_read_by_content_not_by_suffix(tmp_path):
    x = np.random.default_rng(6).integers(0, 256, (20, 4, 4), dtype=np.uint8)
    with (tmp_path / "bare.npz").open("wb") as fh:
        np.save(fh, x)  # an .npy payload under an .npz name
    with (tmp_path / "archive.npy").open("wb") as fh:
        np.savez(fh, x=x, y=np.arange(20))  # an .npz payload under an .npy name
    bare, archive = load(str(tmp_path / "bare.npz")), load(str(tmp_path / "archive.npy"))
    assert bare.train.shape == archive.train.shape == (16, 1, 4, 4)
    assert torch.equal(bare.test, archive.test)
    assert archive.test_labels is not None


def test_unknown_names_and_file_types_raise_vaelab_error(tmp_path):
    with pytest.raises(VaelabError, match="neither a built-in"):
        load("mnsit")
    (tmp_path / "table.txt").write_text("1,2,3\n")
    with pytest.raises(VaelabError, match=".npy/.npz"):
        load(str(tmp_path / "table.txt"))


# --- 5. digits ---------------------------------------------------------------------------------


def test_digits_have_the_documented_fixed_split():
    ds, again = load_digits(), load("digits")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (1437, 180, 180)
    assert ds.x_shape == (1, 8, 8)
    for x in (ds.train, ds.valid, ds.test):
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert ds.train.max() == 1.0  # scaled by 1/16, not 1/255
    for a, b in [(ds.train, again.train), (ds.valid, again.valid), (ds.test, again.test)]:
        assert torch.equal(a, b)
    assert torch.equal(ds.test_labels, again.test_labels)
    assert set(ds.train_labels.tolist()) == set(range(10))


# --- 6. binarization --------------------------------------------------------------------------


def test_binarize_draws_bernoulli_pixels():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1000, 1, 28, 28, generator=generator)
    x_b = binarize(x, generator)
    assert x_b.shape == x.shape and x_b.dtype == x.dtype
    assert set(x_b.unique().tolist()) <= {0.0, 1.0}
    # 784,000 draws: the standard error of the mean is below 6e-4
    assert abs(x_b.mean().item() - x.mean().item()) < 3e-3
    assert binarize(torch.zeros(5)).sum() == 0 and binarize(torch.ones(5)).sum() == 5
    # per-pixel probabilities are respected, not just the overall mean
    half = torch.cat([torch.full((200_000,), 0.1), torch.full((200_000,), 0.9)])
    draws = binarize(half, generator)
    assert abs(draws[:200_000].mean().item() - 0.1) < 5e-3
    assert abs(draws[200_000:].mean().item() - 0.9) < 5e-3


def test_binarize_draws_the_same_pixels_whatever_the_number_of_threads():
    # blocks of rows are drawn on parallel threads, each from its own generator: a seed
    # must give the same epoch on 1 thread as on 2, and several blocks must be involved
    script = (
        "import sys, torch; torch.set_num_threads(int(sys.argv[1]));"
        "from vaelab.data import binarize; from vaelab.data.binarization import BLOCK_ROWS;"
        "x = torch.rand(3 * BLOCK_ROWS + 5, 7, generator=torch.Generator().manual_seed(0));"
        "b = binarize(x, torch.Generator().manual_seed(1));"
        "import hashlib; print(hashlib.sha256(b.numpy().tobytes()).hexdigest(), b.sum().item())"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script, threads], capture_output=True, text=True, check=True
        ).stdout
        for threads in ("1", "2")
    ]
    assert outputs[0] == outputs[1] and outputs[0].strip()


def test_binarize_into_a_kept_buffer_draws_what_a_fresh_one_would():
    x = torch.rand(2 * BLOCK_ROWS + 300, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    fresh = binarize(x, torch.Generator().manual_seed(2))
    buffer = torch.full_like(x, 7.0)
    kept = binarize(x, torch.Generator().manual_seed(2), buffer)
    assert kept.data_ptr() == buffer.data_ptr() and torch.equal(kept, fresh)
    assert 0 < fresh.sum() < fresh.numel()
    for wrong in (x, buffer[:-1], buffer.double(), buffer.transpose(0, 1)):
        with pytest.raises(ValueError, match="out must be a contiguous tensor like x"):
            binarize(x, torch.Generator().manual_seed(2), wrong)
    # a training epoch through the kept buffer: the batches a fresh one gives
    batches = [
        list(epoch_batches(x, 64, torch.Generator().manual_seed(3), True, "cpu", buffer=buf))
        for buf in (None, buffer)
    ]
    for (index, xb), (index_kept, xb_kept) in zip(*batches, strict=True):
        assert torch.equal(index, index_kept) and torch.equal(xb, xb_kept)


def test_eval_split_is_one_fixed_draw_and_none_is_the_data():
    x = torch.rand(3, 3, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    ds = Dataset("toy", x[0], x[1], x[2])
    first = eval_split(ds, "test", "dynamic")
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, eval_split(ds, "test", "dynamic"))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(first, eval_split(ds, "test", "static"))
    assert torch.equal(eval_split(ds, "test", "none"), ds.test)
    assert eval_split(ds, "valid", "none") is ds.valid
    with pytest.raises(VaelabError):
        eval_split(ds, "tset", "dynamic")
    with pytest.raises(VaelabError):
        eval_split(ds, "test", "dynamc")


# --- 7. the real MNIST files ------------------------------------------------------------------


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"no MNIST files in {REAL_MNIST}")
def test_real_mnist_gives_50000_10000_10000():
    ds = load_mnist(REAL_MNIST)
    assert ds.train.shape == (50_000, 1, 28, 28)
    assert ds.valid.shape == (10_000, 1, 28, 28)
    assert ds.test.shape == (10_000, 1, 28, 28)
    assert ds.train.min() == 0 and ds.train.max() == 1
    assert ds.train_labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first five
    assert len(ds.test_labels) == 10_000 and set(ds.test_labels.tolist()) == set(range(10))


# --- 8. real-valued arrays: standardized like tables (issue 26) --------------------------------


def test_real_valued_arrays_are_standardized_with_the_training_split_statistics(tmp_path):
    rng = np.random.default_rng(5)
    scale, shift = np.array([1, 5, 10, 0.1, 3]), np.array([10, -10, 0, 5, 100])
    x = (rng.normal(size=(200, 5)) * scale + shift).astype(np.float32)
    np.save(tmp_path / "real.npy", x)
    raw = split_arrays("real", x, None)  # the same fixed split, as the values are
    mean, std = raw.train.double().mean(0), raw.train.double().std(0, unbiased=False)
    ds = load(str(tmp_path / "real.npy"))
    assert ds.standardized and ds.kind == "arrays"
    np.testing.assert_allclose(ds.transform["mean"], mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ds.transform["std"], std.numpy(), rtol=1e-12)
    for split in ("train", "valid", "test"):  # every split with the training split's numbers
        expected = ((getattr(raw, split).double() - mean) / std).float()
        torch.testing.assert_close(getattr(ds, split), expected)
    # a run's stored transform is used as it is; a run that stored none is not standardized
    kept = load(str(tmp_path / "real.npy"), transform={"mean": [0.0] * 5, "std": [2.0] * 5})
    torch.testing.assert_close(kept.train, raw.train / 2)
    assert torch.equal(load(str(tmp_path / "real.npy"), transform={}).train, raw.train)
    # values in [0, 1] keep today's rule: as they are
    np.save(tmp_path / "unit.npy", rng.random((50, 5)).astype(np.float32))
    assert not load(str(tmp_path / "unit.npy")).standardized


def test_a_real_valued_array_trains_with_a_learned_sigma_and_encode_standardizes_alike(
    tmp_path, capsys
):
    """Values around ±10 (issue 26): standardized, one learned σ, and `encode` applies the
    stored transform to new examples."""
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(200, 4)) * 10).astype(np.float32)
    np.save(tmp_path / "wide.npy", x)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "wide.npy"), "--epochs", "1", "--hidden", "8"]
    assert main([*argv, "--latent-dim", "2", "--batch-size", "32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("real values outside [0, 1]: Gaussian likelihood with a learned σ") == 1
    assert "standardized per feature" in printed
    config = read_toml(out / "config.toml")
    assert config["learn_sigma"] and config["shared_sigma"]
    stored = json.loads((out / "data.json").read_text())
    assert set(stored) == {"mean", "std"} and len(stored["mean"]) == 4
    new = (rng.normal(size=(12, 4)) * 10).astype(np.float32)
    np.save(tmp_path / "new.npy", new)
    for suffix in (".npy", ".npz"):  # read in chunks, and read whole
        source = tmp_path / f"new{suffix}"
        if suffix == ".npz":
            np.savez(source, x=new)
        z = tmp_path / f"z{suffix}"
        assert main(["encode", str(out), "--data", str(source), "--out", str(z)]) == 0
        loc = np.load(z)[:, 0] if suffix == ".npy" else np.load(z)["loc"]
        model = open_run(out).model
        standardized = (new - np.array(stored["mean"])) / np.array(stored["std"])
        expected = model.q_z(torch.from_numpy(standardized.astype(np.float32))).mean
        np.testing.assert_allclose(loc, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
