"""vaelab encode: q(z | x) for every example of a data set, in chunks, written atomically."""

from __future__ import annotations

import numpy as np
import torch

from vaelab import data as data_mod
from vaelab.checkpoint import load
from vaelab.cli import main

from .test_cli import run_cli


def test_encode_writes_means_stds_and_samples_of_every_example(digits_run, tmp_path):
    # more examples than one chunk of the encoder (4,096), as uint8 pixels
    x = data_mod.load("digits").train.numpy()
    x = np.concatenate([x, x, x, x])[:5000]
    np.save(tmp_path / "new.npy", (x * 255).round().astype(np.uint8))
    result = run_cli(
        "encode", str(digits_run), "--data", str(tmp_path / "new.npy"),
        "--out", str(tmp_path / "z.npy"), "--samples", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "of 5000 examples" in result.stdout
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (5000, 2 + 3, 2) and z.dtype == np.float32
    model = load(digits_run)
    with torch.no_grad():
        qz = model.q_z(torch.from_numpy((x * 255).round().astype(np.float32) / 255))
    np.testing.assert_allclose(z[:, 0], qz.mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(z[:, 1], qz.stddev.numpy(), rtol=1e-4)
    # the samples are draws from q: standardized, they look standard normal
    eps = (z[:, 2:] - z[:, None, 0]) / z[:, None, 1]
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1) < 0.05
    assert not list(tmp_path.glob(".z.npy*"))  # no temporary left behind


def test_encode_to_npz_keeps_labels(digits_run, tmp_path):
    x = (data_mod.load("digits").test.numpy() * 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(len(x)) % 10)
    out = tmp_path / "z.npz"
    result = run_cli(
        "encode", str(digits_run), "--data", str(tmp_path / "d.npz"), "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    with np.load(out) as z:
        assert set(z.files) == {"loc", "scale", "y"}
        assert z["loc"].shape == z["scale"].shape == (len(x), 2)
        np.testing.assert_array_equal(z["y"], np.arange(len(x)) % 10)
        assert (z["scale"] > 0).all()


def test_encode_rejects_bad_requests_with_one_line_and_leaves_nothing(digits_run, tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((20, 5, 5), np.uint8))
    cases = [
        (["--data", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "z.npy")], "shape"),
        (
            ["--data", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "z.txt")],
            ".npy or .npz",
        ),
        (["--data", "digits", "--out", str(tmp_path / "no" / "z.npy")], "does not exist"),
        (["--data", str(tmp_path / "none.npy"), "--out", str(tmp_path / "z.npy")], "check the"),
    ]
    for args, message in cases:
        result = run_cli("encode", str(digits_run), *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.npy"]


def test_encode_never_overwrites_its_input_or_an_existing_file_unasked(
    digits_run, tmp_path, capsys
):
    x = (data_mod.load("digits").test.numpy() * 255).astype(np.uint8)
    data = tmp_path / "d.npy"
    np.save(data, x)
    original = data.read_bytes()
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "old.npy").write_bytes(b"keep me")
    cases = [
        (["--out", str(data)], "is the data being encoded"),
        (["--out", str(data), "--overwrite"], "is the data being encoded"),
        (["--out", str(tmp_path / "old.npy")], "--overwrite"),
        (["--out", str(tmp_path / "folder.npy")], "is a folder"),
    ]
    for args, message in cases:
        assert main(["encode", str(digits_run), "--data", str(data), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert data.read_bytes() == original
    assert (tmp_path / "old.npy").read_bytes() == b"keep me"
    out = ["--out", str(tmp_path / "old.npy"), "--overwrite"]
    assert main(["encode", str(digits_run), "--data", str(data), *out]) == 0
    assert np.load(tmp_path / "old.npy").shape == (len(x), 2, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "folder.npy", "old.npy"]
