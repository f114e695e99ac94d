"""Data larger than memory: a .npy streamed in blocks, with bounded resident memory; the
split options; vectors of any shape."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

import peak
from vaelab import data as data_mod
from vaelab.data.stream import BLOCK_ROWS, NpyFile, StreamSplit, split_blocks

from .test_cli import run_cli


def _tagged(path, n, side=6):
    """uint8 images whose first two pixels spell the row number: x[i, 0, 0:2] = divmod(i, 256)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    x[:, 0, 0], x[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    np.save(path, x)
    return x


def _row_ids(batch: torch.Tensor) -> np.ndarray:
    tags = (batch[:, 0, 0, :2] * 255).round().long().numpy()
    return tags[:, 0] * 256 + tags[:, 1]


def test_streamed_splits_partition_the_file_and_read_it_exactly(tmp_path):
    n = 10 * BLOCK_ROWS + 77  # a short last block
    x = _tagged(tmp_path / "x.npy", n)
    ds = data_mod.load(str(tmp_path / "x.npy"), stream="on")
    assert ds.streamed and ds.x_shape == (1, 6, 6)
    ids = [_row_ids(torch.cat(list(s.chunks(3000)))) for s in (ds.train, ds.valid, ds.test)]
    assert sorted(np.concatenate(ids).tolist()) == list(range(n))  # disjoint, complete
    for split, rows in zip((ds.train, ds.valid, ds.test), ids, strict=True):
        assert len(split) == len(rows) and (np.diff(rows) > 0).all()  # the file read forwards
        # any slice equals the same rows of the file
        got = split[123 : 123 + 2500]
        np.testing.assert_array_equal(got.numpy()[:, 0] * 255, x[rows[123 : 123 + 2500]])


def test_one_streamed_epoch_visits_every_training_row_once_shuffled(tmp_path):
    n = 3 * 1_000_000 // 2 + 5  # several windows of 2 x 2 rows
    _tagged(tmp_path / "x.npy", n, side=2)
    file = NpyFile.open(tmp_path / "x.npy")
    train = StreamSplit(file, split_blocks(n, (0.8, 0.1, 0.1))[0], (1, 2, 2))
    generator = torch.Generator().manual_seed(0)
    batches = list(train.batches(1000, generator, dynamic=False))
    assert len(batches) == -(-len(train) // 1000)
    assert all(len(b) == 1000 for b in batches[:-1])
    seen = np.concatenate([_row_ids(b) for b in batches])
    assert sorted(seen.tolist()) == sorted(_row_ids(train[0 : len(train)]).tolist())
    # shuffled: consecutive rows of a batch come from far apart in the file
    assert np.median(np.abs(np.diff(_row_ids(batches[0])))) > 10 * BLOCK_ROWS
    again = list(train.batches(1000, generator, dynamic=False))
    assert not torch.equal(again[0], batches[0])  # a new order each epoch


def test_a_dynamically_binarized_streamed_epoch_draws_every_row_afresh(tmp_path):
    # grey levels: each epoch a new Bernoulli draw of every pixel, with its mean
    rng = np.random.default_rng(2)
    np.save(tmp_path / "g.npy", rng.integers(0, 256, (3 * BLOCK_ROWS, 4, 4), dtype=np.uint8))
    train = data_mod.load(str(tmp_path / "g.npy"), stream="on").train
    generator = torch.Generator().manual_seed(0)
    epochs = [torch.cat(list(train.batches(500, generator, dynamic=True))) for _ in range(2)]
    for x in epochs:
        assert len(x) == len(train) and set(x.unique().tolist()) == {0.0, 1.0}
        assert abs(x.mean().item() - train[0 : len(train)].mean().item()) < 0.01
    assert not torch.equal(epochs[0], epochs[1])


def test_binarized_streamed_split_does_not_depend_on_how_it_is_sliced(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "g.npy", rng.integers(0, 256, (5 * BLOCK_ROWS, 3, 3), dtype=np.uint8))
    test = data_mod.eval_split(
        data_mod.load(str(tmp_path / "g.npy"), stream="on"), "test", "dynamic"
    )
    whole = test[0 : len(test)]
    pieces = torch.cat([test[i : i + 100] for i in range(0, len(test), 100)])
    assert torch.equal(whole, pieces) and set(whole.unique().tolist()) == {0.0, 1.0}


def _peak_rss_mb(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``vaelab ARGS`` and return its own peak resident memory (MB) and its output."""
    peak_gib, result = peak.run(args)
    return peak_gib * 1024, result


def test_training_streams_a_file_larger_than_its_memory_use(tmp_path):
    """A 310 MB uint8 file (1.25 GB as float32) trains with a few hundred MB of growth."""
    n, side = 400_000, 28
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, side, side))
    rng = np.random.default_rng(0)
    pattern = (rng.random((BLOCK_ROWS, side, side)) < 0.2).astype(np.uint8) * 255
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        big[start:stop] = pattern[: stop - start]
    big.flush()
    del big
    assert path.stat().st_size > 300e6
    # float32: at batch 4096 --precision auto takes bf16 on this CPU, whose cast copies of the
    # activations add some 70 MB (measured) that have nothing to do with streaming
    common = ["--latent-dim", "2", "--hidden", "8", "--epochs", "1", "--batch-size", "4096",
              "--precision", "fp32"]  # fmt: skip
    rss, result = _peak_rss_mb(
        ["train", "--data", str(path), "--stream", "on", *common, "--out", str(tmp_path / "run"),
         "--quiet", "--keep-best"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "streaming" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_train"] > 300_000 and np.isfinite(summary["test"]["elbo"])
    # the baseline: the same program on the embedded digits, which holds almost no data
    base, small = _peak_rss_mb(["train", "--data", "digits", *common, "--batch-size", "64",
                                "--out", str(tmp_path / "small"), "--quiet"])  # fmt: skip
    assert small.returncode == 0, small.stderr
    # read whole, the file would add 1,250 MB as float32 (and 310 MB more as it is read)
    assert rss - base < 400, (rss, base)


def test_split_fractions_are_stored_and_eval_uses_the_same_split(tmp_path):
    x = np.random.default_rng(3).integers(0, 256, (200, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(200) % 4)
    out = tmp_path / "run"
    result = run_cli(
        "train", "--data", str(tmp_path / "a.npz"), "--split", "0.5,0.2,0.3", "--epochs", "1",
        "--batch-size", "32", "--hidden", "16", "--latent-dim", "2", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "summary.json").read_text())["n_train"] == 100
    assert 'split = "0.5,0.2,0.3"' in (out / "config.toml").read_text()
    scores = run_cli("eval", str(out), "--json", "--k", "20")
    assert json.loads(scores.stdout)["n"] == 60
    bad = run_cli("train", "--data", str(tmp_path / "a.npz"), "--split", "0.5,0.5")
    assert bad.returncode == 2 and "three positive fractions" in bad.stderr


def test_given_files_for_each_split_are_used_as_they_are(tmp_path):
    rng = np.random.default_rng(4)
    for name, n in (("tr", 120), ("va", 30), ("te", 25)):
        np.save(tmp_path / f"{name}.npy", rng.random((n, 7)).astype(np.float32) * 4 - 2)
    out = tmp_path / "run"
    result = run_cli(
        "train", "--data", str(tmp_path / "tr.npy"), "--valid-data", str(tmp_path / "va.npy"),
        "--test-data", str(tmp_path / "te.npy"), "--epochs", "1", "--hidden", "16",
        "--batch-size", "32", "--latent-dim", "2", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "real values outside [0, 1]: Gaussian likelihood" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_train"] == 120 and summary["test"]["n"] == 25 and summary["x_shape"] == [7]
    only_one = run_cli("train", "--data", str(tmp_path / "tr.npy"), "--test-data", "x.npy")
    assert only_one.returncode == 2 and "both --valid-data and --test-data" in only_one.stderr
    np.save(tmp_path / "odd.npy", rng.random((30, 6)).astype(np.float32))
    mismatch = run_cli(
        "train", "--data", str(tmp_path / "tr.npy"), "--valid-data", str(tmp_path / "odd.npy"),
        "--test-data", str(tmp_path / "te.npy"), "--out", str(tmp_path / "m"),
    )  # fmt: skip
    assert mismatch.returncode == 2 and "differ in kind or shape" in mismatch.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((5000, 4), np.int32), "not uint8 or float"),
        (np.full((5000, 3, 3), np.nan, np.float32), "NaN or Inf"),
        (np.full((5000, 3, 3), 2.0, np.float32), "must lie in [0, 1]"),
    ],
    ids=["int32", "nan", "range"],
)
def test_bad_streamed_files_give_one_line_and_exit_2(tmp_path, content, message):
    np.save(tmp_path / "bad.npy", content)
    out = tmp_path / "run"
    result = run_cli(
        "train", "--data", str(tmp_path / "bad.npy"), "--stream", "on", "--out", str(out)
    )
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.with_name("run.partial").exists()
