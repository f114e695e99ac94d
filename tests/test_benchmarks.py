"""The benchmark scripts run from a fresh clone as docs/benchmarks.md says (on tiny data)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaelab.config import read_toml

from .test_data import write_mnist_folder

ROOT = Path(__file__).resolve().parents[1]


def _run_benchmark(script: str, args: list[str], data: Path | None = None, timeout: int = 600):
    """``python benchmarks/SCRIPT ARGS`` as docs/benchmarks.md runs it, with ``$VAELAB_DATA``
    set to ``data`` when given; the completed process, output captured as text."""
    env = {**os.environ, "VAELAB_DATA": str(data)} if data else None
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_mnist_nll_trains_a_preset_under_a_budget_and_prints_one_row(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=240, n_test=30, side=6)
    out = tmp_path / "bench"
    result = _run_benchmark(
        "mnist_nll.py",
        ["--preset", "mnist-vae", "--minutes", "0.05", "--k", "20", "--out", str(out)],
        data=tmp_path / "mnist",
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


def test_throughput_prints_the_rows_asked_with_their_ratios(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=720, n_test=12, side=28)
    # eager only: the compiled trainer is compared with eager steps in test_fast_path.py
    args = ["--epochs", "2", "--rounds", "2", "--bound-windows", "1", "--bound-seconds", "0.1",
            "--floor", "eager", "--rows", "conv-128", "mlp-128"]  # fmt: skip
    result = _run_benchmark("throughput.py", [*args, "--compile", "off"], data=tmp_path / "mnist")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    blank = lines.index("")  # the float32 table, then bfloat16's (--precision both, the default)
    rows = [line for line in lines[:blank] if line.startswith("| MLP")]
    table = [line for line in lines[:blank] if line.startswith("|")]
    assert len(table) == 4 and {line.count("|") for line in table} == {13}  # 12 columns each
    # the rows asked, in the order asked, and no other
    assert [line.split("|")[1:3] for line in table[2:]] == [
        [" conv ", " 128 "], [" MLP 784-400-20 ", " 128 "]
    ]  # fmt: skip
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[3:-1]]
        bound, reference, ours = (float(cell.replace(",", "")) for cell in cells[:3])
        ratio, fraction = float(cells[4]), float(cells[5])
        assert bound > 0 and reference > 0 and ours > 0
        assert abs(ratio - ours / reference) < 0.01 and abs(fraction - ours / bound) < 0.01
        assert cells[3] == cells[6] == cells[7] == "-"  # not compiled: no figures made up
        floor = float(cells[8].replace(",", ""))
        assert floor > 0 and abs(float(cells[9]) - floor / bound) < 0.01
    bf16 = [line.split("|")[1:-1] for line in lines[blank + 1 :] if line.startswith("| ")]
    assert [row[:2] for row in bf16[2:]] == [[" conv ", " 128 "], [" MLP 784-400-20 ", " 128 "]]
    cells = [float(c.strip().replace(",", "")) for c in bf16[3][2:]]
    _, bound16, reference, ours32, ours16 = cells[:5]
    assert min(cells) > 0
    assert abs(cells[5] - ours16 / reference) < 0.01 and abs(cells[6] - ours16 / ours32) < 0.01
    assert abs(cells[7] - ours16 / bound16) < 0.01
    # 2 rounds: a window before each and after the last, per MLP row; their range is shown
    *_, floor, auto, spread = result.stdout.strip().splitlines()
    assert floor == "floor: the step alone (eager), no checks, metrics or schedules"
    assert (
        auto
        == "--compile auto (the default) on a run of 20,000+ steps here: mlp eager, conv eager"
    )
    assert spread.startswith("2 rounds; bound: the median of 3 windows of 0.1 s")
    assert "batch 128: " in spread and "batch 512" not in spread
    # a row that is not in the table: argparse's one line, status 2
    wrong = _run_benchmark("throughput.py", ["--rows", "mlp-256"], data=tmp_path / "mnist")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "argument --rows: invalid choice: 'mlp-256'" in wrong.stderr


def test_step_parts_times_four_steps_and_their_differences(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=40, n_test=12, side=28)
    args = ["--batch", "8", "--batches", "3", "--rounds", "2"]
    result = _run_benchmark("step_parts.py", args, data=tmp_path / "mnist")
    assert result.returncode == 0, result.stderr
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    table = {name.strip(): cells for name, *cells in rows[2:]}  # after the header
    assert list(table) == ["trainer", "objective", "networks", "floor"]
    ms = [float(cells[0]) for cells in table.values()]
    assert all(m > 0 for m in ms)
    for i, cells in enumerate(list(table.values())[:-1]):
        assert abs(float(cells[1]) - (ms[i] - ms[i + 1])) < 2e-3  # the difference from the next
    assert table["floor"][1].strip() == "-"
    # too few images for the batches asked: one line naming both, no traceback
    short = _run_benchmark("step_parts.py", ["--batch", "64"], data=tmp_path / "mnist")
    assert short.returncode == 2 and "Traceback" not in short.stderr
    assert "20 batches of 64 need 1280 training images" in short.stderr


def test_eval_speed_prints_its_rate_against_the_bound_and_its_memory(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=60, n_test=30, side=28)
    result = _run_benchmark(
        "eval_speed.py",
        ["--n", "20", "--k", "50", "--bound-windows", "2", "--bound-seconds", "0.1"],
        data=tmp_path / "mnist",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row, spread = result.stdout.strip().splitlines()[-2:]
    assert spread.startswith("bound: the median of 4 windows of 0.1 s before and after")
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[:2] == ["20", "50"]
    rate, bound, ratio = (float(c.replace(",", "")) for c in cells[4:7])
    assert rate > 0 and bound > 0 and abs(ratio - rate / bound) < 0.01
    assert float(cells[3]) >= 0 and float(cells[2]) > 0  # seconds, NLL in nats


def test_stream_benchmark_trains_streamed_and_in_memory_and_prints_both(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=1300, n_test=20, side=28)
    result = _run_benchmark(
        "stream.py", ["--gb", "0.003", "--work", str(tmp_path / "work")], data=tmp_path / "mnist"
    )
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
    result = _run_benchmark(
        "disentangle.py",
        [
            "--models",
            "tcvae6",
            "--minutes",
            "0.01",
            "--n",
            "20",
            "--trees",
            "2",
            "--arch",
            "linear",  # the quickest epoch; the flags reach the run's config all the same
            "--hidden",
            "8",
            "--out",
            str(out),
        ],
    )
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1]
    assert row.startswith("| β-TCVAE, TC weight 6 | 1 |")
    record = json.loads((out / "benchmark.json").read_text())["rows"][0]
    assert record["tc_beta"] == 6.0 and record["epochs"] == 1
    config = read_toml(out / "tcvae6" / "config.toml")
    assert config["arch"] == "linear" and config["hidden"] == [8]
    assert all(0 <= record[k] <= 1 for k in ("mig", "beta_vae", "dci_disentanglement"))
    assert (out / "tcvae6" / "plots" / "traversals.png").is_file()


def test_train_memory_runs_a_whole_training_and_prints_its_peak(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=300, n_test=20, side=28)
    args = ["--epochs", "1", "--", "--hidden", "32", "--latent-dim", "2"]
    result = _run_benchmark("train_memory.py", args, data=tmp_path / "mnist")
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1]
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[0] == "`vaelab train --data mnist --hidden 32 --latent-dim 2`"
    assert cells[1] == "1" and float(cells[2]) > 0
    assert 0.1 < float(cells[3]) < 3  # GiB: torch alone is a few hundred MB


def test_profile_step_lists_the_costliest_operations_and_the_matmul_share(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=300, n_test=20, side=28)
    result = _run_benchmark("profile_step.py", ["--epochs", "1"], data=tmp_path / "mnist")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == 15
    shares = [float(row.split("|")[4].strip().rstrip("%")) for row in rows]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.05
    assert any("aten::addmm" in row for row in rows)  # the linear layers are there
    matmul = [line for line in result.stdout.splitlines() if line.startswith("matrix products")]
    assert len(matmul) == 1 and 0 < float(matmul[0].split()[2].rstrip("%")) < 100


def test_finite_check_times_every_check_after_each_caught_a_nan_and_an_inf():
    result = _run_benchmark("finite_check.py", ["--repeats", "3", "--rounds", "1"], timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][2:]
    assert [row.split("|")[1].strip() for row in rows] == ["sums", "amp", "isfinite", "max-norm"]
    assert rows[0].split("|")[3].strip() == "1.00"


def test_kl_per_dim_prints_old_and_new_rows_that_agree(tmp_path):
    result = _run_benchmark("kl_per_dim.py", ["--n", "30", "--samples", "2"], timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[-3:-1]]
    assert [row[:3] for row in rows] == [["old", "30", "2"], ["new", "30", "2"]]
    for row in rows:
        seconds, cpu, before, after = (float(c) for c in row[3:7])
        assert seconds >= 0 and cpu >= 0 and 0 < before <= after
    assert float(lines[-1].split(": ")[1].split()[0]) < 1e-4  # the same KLs, old and new


@pytest.mark.parametrize(
    "script, case, args",
    [
        ("throughput.py", "wrong", []),
        ("eval_speed.py", "wrong", []),
        ("mnist_nll.py", "wrong", ["--out", "{work}/nll"]),
        ("profile_step.py", "wrong", []),
        ("step_parts.py", "wrong", []),
        ("amortization.py", "wrong", ["--out", "{work}/amortization"]),
        ("train_memory.py", "wrong", []),
        ("stream.py", "wrong", ["--work", "{work}/stream"]),
        ("throughput.py", "unset", []),
        ("gap_convergence.py", "run", ["{tmp}/no-run"]),
        ("eval_speed.py", "run", ["--run", "{tmp}/no-run"]),
    ],
)
def test_a_wrong_or_unset_data_folder_is_one_line_and_status_2(
    script, case, args, tmp_path, monkeypatch, capsys
):
    """Every benchmark that reads MNIST names the folder's problem and the fix on one line,
    exits with status 2 before writing anything, and raises nothing else; those that read a
    run do the same for a missing run folder. Each script runs as ``python SCRIPT`` runs it
    (as ``__main__``), in this process: a fresh interpreter per case cost 1.5 s each."""
    empty, work = tmp_path / "empty", tmp_path / "work"
    empty.mkdir()
    if case == "run":
        write_mnist_folder(tmp_path / "mnist", n_train=40, n_test=12, side=28)
        monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "mnist"))
    elif case == "wrong":
        monkeypatch.setenv("VAELAB_DATA", str(empty))
    else:
        monkeypatch.delenv("VAELAB_DATA", raising=False)
    path = str(ROOT / "benchmarks" / script)
    argv = [path, *(a.format(work=work, tmp=tmp_path) for a in args)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "path", [str(ROOT / "benchmarks"), *sys.path])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(path, run_name="__main__")
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: "), last
    expected = {
        "wrong": f"{empty} lacks the IDX files",
        "unset": "set $VAELAB_DATA (or --data-dir) to the MNIST IDX folder",
        "run": "no-run does not exist",
    }[case]
    assert expected in last, last
    if case == "wrong":
        assert "point --data-dir at the folder" in last, last
    assert not work.exists()  # nothing written: no run folder, no big file


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: gpu_check.sh would run")
def test_gpu_check_on_a_machine_without_cuda_says_so_in_one_line(tmp_path):
    script = ROOT / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "VAELAB_DATA": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "gpu_check: no CUDA device here; run it on a machine with a GPU\n"
