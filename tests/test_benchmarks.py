"""The benchmark scripts run from a fresh clone as docs/benchmarks.md says (on tiny data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .test_data import write_mnist_folder

ROOT = Path(__file__).resolve().parents[1]


def test_mnist_nll_trains_a_preset_under_a_budget_and_prints_one_row(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=240, n_test=30, side=6)
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "mnist_nll.py"),
            "--preset",
            "mnist-vae",
            "--minutes",
            "0.05",
            "--k",
            "20",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "VAELAB_DATA": str(tmp_path / "mnist")},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1]
    assert row.startswith("| mnist-vae |")
    record = json.loads((out / "benchmark.json").read_text())
    assert record["k"] == 20 and record["preset"] == "mnist-vae"
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == record["epochs"]
    # the 3-second budget, with one epoch's slack for timing noise
    assert record["train_seconds"] <= 3 + max(m["seconds"] for m in epochs)
    assert record["test_nll"] > 0 and record["test_nll"] <= -record["test_elbo"] + 1.0
    assert f"{record['test_nll']:.2f}" in row


def test_throughput_prints_all_three_rows_with_their_ratios(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=720, n_test=12, side=28)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--epochs", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "VAELAB_DATA": str(tmp_path / "mnist")},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| MLP")]
    assert [row.split("|")[2].strip() for row in rows] == ["128", "512"]
    for row in rows:
        bound, reference, ours, ratio, fraction = (
            float(cell.replace(",", "")) for cell in row.split("|")[3:8]
        )
        assert bound > 0 and reference > 0 and ours > 0
        assert abs(ratio - ours / reference) < 0.01 and abs(fraction - ours / bound) < 0.01
    assert any(line.startswith("| conv | 128 |") for line in result.stdout.splitlines())


def test_eval_speed_prints_its_rate_against_the_bound_and_its_memory(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=60, n_test=30, side=28)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eval_speed.py"), "--n", "20", "--k", "50"],
        capture_output=True,
        text=True,
        env={**os.environ, "VAELAB_DATA": str(tmp_path / "mnist")},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1]
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[:2] == ["20", "50"]
    rate, bound, ratio = (float(c.replace(",", "")) for c in cells[4:7])
    assert rate > 0 and bound > 0 and abs(ratio - rate / bound) < 0.01
    assert float(cells[3]) >= 0 and float(cells[2]) > 0  # seconds, NLL in nats


def test_stream_benchmark_trains_streamed_and_in_memory_and_prints_both(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=1300, n_test=20, side=28)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "stream.py"), "--gb", "0.003",
         "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        env={**os.environ, "VAELAB_DATA": str(tmp_path / "mnist")},
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| stream")]
    rows += [line for line in result.stdout.splitlines() if line.startswith("| in memory")]
    assert len(rows) == 2
    for row in rows:
        rate, peak = (float(c.replace(",", "")) for c in row.split("|")[2:4])
        assert rate > 0 and 0.05 < peak < 4
    assert "streamed / in memory:" in result.stdout


def test_disentangle_trains_one_model_briefly_and_prints_its_metrics(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "disentangle.py"), "--models", "tcvae6",
         "--minutes", "0.01", "--n", "20", "--trees", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1]
    assert row.startswith("| β-TCVAE, TC weight 6 | 1 |")
    record = json.loads((out / "benchmark.json").read_text())["rows"][0]
    assert record["tc_beta"] == 6.0 and record["epochs"] == 1
    assert all(0 <= record[k] <= 1 for k in ("mig", "beta_vae", "dci_disentanglement"))
    assert (out / "tcvae6" / "plots" / "traversals.png").is_file()
