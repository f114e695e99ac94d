"""CSV and Parquet tables: standardized with the training split's statistics, a Gaussian
likelihood by default, new rows encoded with the stored transform; bad tables rejected."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab import data as data_mod
from vaelab.checkpoint import load
from vaelab.errors import VaelabError

from .test_cli import run_cli

COLUMNS = ["height", "weight", "age", "income"]


def _rows(n: int, seed: int = 0) -> np.ndarray:
    """Correlated real-valued columns on very different scales (two latent factors)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    x = z @ np.array([[1.0, 0.8, 0.0, 0.3], [0.0, 0.5, 1.0, 0.9]]) + 0.1 * rng.normal(size=(n, 4))
    return x * np.array([10.0, 15.0, 12.0, 20000.0]) + np.array([170.0, 70.0, 40.0, 50000.0])


def _write_csv(path, x, labels=None, columns=COLUMNS):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns + (["kind"] if labels is not None else []))
        for i, row in enumerate(x):
            writer.writerow(
                [f"{v:.6f}" for v in row] + ([labels[i]] if labels is not None else [])
            )


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A CSV of 600 rows with a string label column, trained for 3 epochs from the CLI."""
    root = tmp_path_factory.mktemp("table")
    x = _rows(600)
    labels = np.where(x[:, 0] > 170, "tall", "short")
    _write_csv(root / "people.csv", x, labels)
    out = root / "run"
    result = run_cli(
        "train", "--data", str(root / "people.csv"), "--label-column", "kind",
        "--latent-dim", "2", "--hidden", "32", "--epochs", "3", "--batch-size", "64",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root, out, x, labels, result


def test_a_csv_table_trains_with_a_gaussian_likelihood_chosen_from_the_data(table_run):
    root, out, x, labels, result = table_run
    assert "a table: Gaussian likelihood" in result.stdout
    config = (out / "config.toml").read_text()
    assert 'likelihood = "gaussian"' in config and 'binarize = "none"' in config
    summary = json.loads((out / "summary.json").read_text())
    assert summary["x_shape"] == [4] and np.isfinite(summary["test"]["elbo"])
    # a table gets the plots that make sense for it: no image grids
    assert {p.name for p in (out / "plots").iterdir()} == {
        "learning_curves.png",
        "latent_space.png",
        "kl_per_dim.png",
    }


def test_standardization_uses_the_training_split_alone_and_is_stored(table_run):
    root, out, x, _, _ = table_run
    stored = json.loads((out / "data.json").read_text())
    assert stored["columns"] == COLUMNS and stored["label_names"] == ["short", "tall"]
    ds = data_mod.load(str(root / "people.csv"), label_column="kind")
    # the same fixed split as the run: recover its raw training rows from the file
    train_raw = ds.train.double().numpy() * np.array(stored["std"]) + np.array(stored["mean"])
    np.testing.assert_allclose(stored["mean"], train_raw.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stored["std"], train_raw.std(0), rtol=1e-5)
    assert (
        abs(ds.train.mean(0)).max() < 1e-4
        and abs(ds.train.std(0, unbiased=False) - 1).max() < 1e-3
    )
    # valid and test use the training statistics: not exactly standardized themselves
    full = np.concatenate([ds.train, ds.valid, ds.test]).astype(np.float64)
    raw = full * np.array(stored["std"]) + np.array(stored["mean"])
    np.testing.assert_allclose(np.sort(raw, axis=0), np.sort(x, axis=0), rtol=1e-5)
    assert abs(ds.test.double().mean(0)).max() > 1e-3


def test_encode_new_rows_uses_the_stored_transform_with_columns_matched_by_name(table_run):
    root, out, _, _, _ = table_run
    new = _rows(50, seed=9)
    order = [3, 1, 0, 2]  # columns in another order, and no label column
    _write_csv(root / "new.csv", new[:, order], columns=[COLUMNS[i] for i in order])
    result = run_cli(
        "encode", str(out), "--data", str(root / "new.csv"), "--out", str(root / "z.npz")
    )
    assert result.returncode == 0, result.stderr
    with np.load(root / "z.npz") as z:
        loc, scale = z["loc"], z["scale"]
    stored = json.loads((out / "data.json").read_text())
    rows = (new - np.array(stored["mean"])) / np.array(stored["std"])
    model = load(out)
    with torch.no_grad():
        expected = model.q_z(torch.from_numpy(rows.astype(np.float32)))
    np.testing.assert_allclose(loc, expected.mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(scale, expected.stddev.numpy(), rtol=1e-5)


def test_a_parquet_table_trains_and_evaluates(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x = _rows(300, seed=2)
    table = pa.table({name: x[:, j] for j, name in enumerate(COLUMNS)} | {"g": np.arange(300) % 3})
    pq.write_table(table, tmp_path / "t.parquet")
    out = tmp_path / "run"
    result = run_cli(
        "train", "--data", str(tmp_path / "t.parquet"), "--label-column", "g",
        "--latent-dim", "2", "--hidden", "16", "--epochs", "2", "--out", str(out), "--quiet",
        "--split", "0.6,0.2,0.2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    evaluated = run_cli("eval", str(out), "--json", "--k", "50")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n"] == 60  # the stored 0.2 test split


@pytest.mark.parametrize(
    ("content", "flags", "message"),
    [
        ("a,b\n1,2\n3,x\n" + "1,2\n" * 10, [], "'x' is not a number"),
        ("a,b\n1,2\n3,\n" + "1,2\n" * 10, [], "fill or drop missing values"),
        ("a,b\n1,2\n3\n" + "1,2\n" * 10, [], "row 2 has 1 fields"),
        ("a,b\n" + "1,2\n" * 12, ["--label-column", "c"], "no column 'c'"),
        ("a,a\n" + "1,2\n" * 12, [], "name every column once"),
        ("a,b\n1,2\n", [], "at least 10"),
        ("", [], "is empty"),
        ("a,b\n" + "1,nan\n" * 12, [], "fill or drop"),
    ],
    ids=["text", "missing", "ragged", "no-label", "dup-header", "too-few", "empty", "nan"],
)
def test_bad_tables_give_one_clear_line_and_exit_2(tmp_path, content, flags, message):
    (tmp_path / "t.csv").write_text(content)
    out = tmp_path / "run"
    result = run_cli("train", "--data", str(tmp_path / "t.csv"), *flags, "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.with_name("run.partial").exists()


def test_a_bernoulli_likelihood_on_real_values_is_refused(tmp_path):
    _write_csv(tmp_path / "t.csv", _rows(40))
    with pytest.raises(VaelabError, match="--likelihood gaussian"):
        ds = data_mod.load(str(tmp_path / "t.csv"))
        data_mod.choose_likelihood(ds, "bernoulli", "auto")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet="0123456789.,-e\nabx \"'", max_size=300), label=st.booleans())
def test_fuzzed_csv_text_gives_a_table_or_one_vaelab_error(tmp_path, text, label):
    path = tmp_path / "fuzz.csv"
    path.write_text(text)
    try:
        ds = data_mod.load(str(path), label_column="a" if label else "")
    except VaelabError:
        return
    assert ds.kind == "table" and torch.isfinite(ds.train).all()
    assert len(ds.train) + len(ds.valid) + len(ds.test) >= 10


def test_a_misspelt_label_column_lists_every_column_or_the_20_nearest(tmp_path):
    few = [f"c{i}" for i in range(19)] + ["species"]  # 20 columns: every one is listed
    (tmp_path / "few.csv").write_text(",".join(few) + "\n" + ("1," * 19 + "a\n") * 12)
    with pytest.raises(VaelabError) as caught:
        data_mod.load(str(tmp_path / "few.csv"), label_column="specis")
    assert str(caught.value).endswith("it has " + ", ".join(few))
    many = [f"feature_{i:02d}" for i in range(40)] + ["species", "specimen", "spacing"]
    rows = ["1"] * len(many)
    (tmp_path / "many.csv").write_text(",".join(many) + "\n" + (",".join(rows) + "\n") * 12)
    with pytest.raises(VaelabError) as caught:
        data_mod.load(str(tmp_path / "many.csv"), label_column="specis")
    message = str(caught.value)
    assert "of its 43 columns the nearest are species, specimen, spacing" in message
    assert len(message.split("the nearest are ")[1].split(", ")) == 20


def test_label_strings_are_kept_by_the_data_the_legend_and_encode(table_run):
    """Issue 26: a table's label strings, not 0 and 1, in the data set and `encode`'s file."""
    root, out, x, labels, _ = table_run
    assert data_mod.load(str(root / "people.csv"), label_column="kind").label_names == [
        "short",
        "tall",
    ]
    tall = x[:, 0] > 170
    _write_csv(root / "talls.csv", x[tall][:20], labels[tall][:20])  # one class only
    z = root / "talls.npz"
    result = run_cli("encode", str(out), "--data", str(root / "talls.csv"), "--out", str(z))
    assert result.returncode == 0, result.stderr
    with np.load(z) as archive:  # numbered as in training: tall is 1
        assert archive["label_names"].tolist() == ["short", "tall"]
        assert archive["y"].tolist() == [1] * 20
        assert "files" not in archive.files
