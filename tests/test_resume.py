"""Crash safety: checkpoints, exact resume after SIGKILL, and non-finite steps that never
reach the weights. Real processes killed for real; faults injected through the documented
``VAELAB_FAULT_NAN`` switch of the training loop."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaelab import Config
from vaelab.build import build_model
from vaelab.checkpoint import load_training_state
from vaelab.cli import main

from .conftest import GAP_PLOTS, PLOTS

TIMING = {"seconds", "train_samples_per_sec"}
ARGS = ["--data", "digits", "--hidden", "64", "--latent-dim", "4", "--batch-size", "32"]


def vaelab(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaelab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def metrics_without_timing(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "run"
    code, _, err = finish(vaelab("train", *ARGS, "--epochs", "12", "--out", str(out), "--quiet"))
    assert code == 0, err
    return out


def kill_once_under_way(proc: subprocess.Popen, log: Path, lines: int, seed: int) -> None:
    """SIGKILL ``proc`` at a random moment after ``log`` has ``lines`` lines."""
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= lines):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reap it and close its pipes


@pytest.mark.parametrize("seed, kills", [(0, 1), (1, 2)])
def test_run_killed_mid_epoch_resumes_to_the_same_weights_bit_for_bit(
    tmp_path, reference, seed, kills
):
    out = tmp_path / "run"
    log = tmp_path / "run.partial" / "metrics.jsonl"
    proc = vaelab("train", *ARGS, "--epochs", "12", "--out", str(out), "--quiet")
    kill_once_under_way(proc, log, 2, seed)
    if kills == 2:  # killed again while resuming, once it has logged one more epoch
        done = len(log.read_text().splitlines())
        proc = vaelab("train", "--resume", str(out), "--quiet")
        kill_once_under_way(proc, log, done + 1, seed + 10)
    assert not out.exists(), "the run finished before it could be killed; lengthen it"
    code, _, err = finish(vaelab("train", "--resume", str(out), "--quiet"))
    assert code == 0, err
    assert same_weights(out, reference)
    assert metrics_without_timing(out) == metrics_without_timing(reference)
    assert not (tmp_path / "run.partial").exists()
    assert not (out / "checkpoints").exists()


def test_resuming_a_finished_run_says_so_and_changes_nothing(reference):
    before = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    code, out, err = finish(vaelab("train", "--resume", str(reference)))
    assert code == 0, err
    assert "finished run" in out + err
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == before


def test_one_non_finite_step_is_skipped_and_logged(tmp_path):
    out = tmp_path / "run"
    proc = vaelab(
        "train", *ARGS, "--epochs", "3", "--out", str(out), "--quiet",
        env={"VAELAB_FAULT_NAN": "2:5"},
    )  # fmt: skip
    code, stdout, err = finish(proc)
    assert code == 0, err
    skipped = [line for line in stdout.splitlines() if "batch skipped" in line]
    assert len(skipped) == 1 and "epoch 2 step 6: non-finite loss or gradient" in skipped[0]
    weights = load_file(out / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    values = [v for m in metrics_without_timing(out) for v in m.values()]
    numbers = [x for v in values for x in (v if isinstance(v, list) else [v])]  # KL per dim
    assert all(math.isfinite(x) for x in numbers)


def test_persistent_nan_stops_the_run_with_its_checkpoint_intact_and_resumable(tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    proc = vaelab(
        "train", *ARGS, "--epochs", "4", "--out", str(out), "--quiet",
        env={"VAELAB_FAULT_NAN": "3:"},
    )  # fmt: skip
    code, _, err = finish(proc)
    assert code == 2
    last_line = err.strip().splitlines()[-1]
    assert "training diverged at epoch 3, step 10" in last_line
    assert "Traceback" not in err
    # the checkpoint of epoch 2 is whole, and its weights are finite
    model = build_model(Config(likelihood="bernoulli", hidden=[64], latent_dim=4), (1, 8, 8))
    optimizer = torch.optim.Adam(model.parameters())
    counters = load_training_state(
        partial / "checkpoints" / "last.safetensors", model, optimizer, torch.Generator()
    )
    assert counters["epoch"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # once the cause is gone, the run continues from there
    code, _, err = finish(vaelab("train", "--resume", str(out), "--quiet"))
    assert code == 0, err
    assert len(metrics_without_timing(out)) == 4


def test_starting_over_an_unfinished_run_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    checkpoints = tmp_path / "run.partial" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.safetensors").write_bytes(b"precious")
    assert main(["train", "--data", "digits", "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"continue it with --resume {out}" in err and err.count("\n") == 1
    assert (checkpoints / "last.safetensors").read_bytes() == b"precious"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable training checkpoint"),
        (b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage", "not a readable training checkpoint"),
    ],
)
def test_a_broken_checkpoint_is_one_line_and_changes_nothing(tmp_path, capsys, content, message):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "config.toml").write_text(
        Config(likelihood="bernoulli", hidden=[64], out=str(out)).to_toml()
    )
    (partial / "metrics.jsonl").write_text("")
    (partial / "checkpoints" / "last.safetensors").write_bytes(content)
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (partial / "checkpoints" / "last.safetensors").read_bytes() == content


def test_resume_refuses_other_flags(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "x"), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err


@pytest.fixture
def small_disk(tmp_path):
    """A real file system with little room: a tmpfs mounted for the test (needs root)."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def resize(size: str) -> None:
        options = f"size={size}" if not os.path.ismount(mount) else f"remount,size={size}"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")

    yield mount, resize
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_before_the_first_checkpoint_leaves_nothing(small_disk, capsys):
    mount, resize = small_disk
    resize("8k")
    out = mount / "run"
    assert main(["train", *ARGS, "--epochs", "2", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "start again" in err and err.count("\n") == 1
    assert list(mount.iterdir()) == []


def test_a_disk_filling_up_mid_run_keeps_the_checkpoint_and_resumes(small_disk, reference):
    mount, resize = small_disk
    resize("400k")  # room for the checkpoints and the log, not for the plots
    out = mount / "run"
    code, _, err = finish(vaelab("train", *ARGS, "--epochs", "12", "--out", str(out), "--quiet"))
    assert code == 2, err
    assert "No space left on device" in err and f"--resume {out}" in err
    resize("20m")  # the user makes room
    code, _, err = finish(vaelab("train", "--resume", str(out), "--quiet"))
    assert code == 0, err
    assert same_weights(out, reference)


def test_one_process_per_run_folder_a_second_is_refused_and_the_first_untouched(tmp_path, capsys):
    """Another process holds the run folder's lock (as a run in training does): a second
    train into the same --out, with or without --overwrite, and a --resume are refused in one
    line and leave the folder as it is; once the holder is gone, training goes ahead."""
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from vaelab.runs import RunLock; "
         f"RunLock(__import__('pathlib').Path({str(partial)!r})); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        (partial / "theirs.txt").write_text("theirs")
        train = ["train", "--data", "digits", "--epochs", "1", "--hidden", "8", "--quiet"]
        for args in (
            [*train, "--out", str(out)],
            [*train, "--out", str(out), "--overwrite"],
            ["train", "--resume", str(out)],
        ):
            assert main(args) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "in use by another vaelab process" in err[-1]
        assert (partial / "theirs.txt").read_text() == "theirs"
        assert not out.exists()
    finally:
        holder.communicate("", timeout=60)
    assert main([*train, "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and not (out / ".lock").exists()
    assert not partial.exists()


def test_a_run_that_diverges_to_a_finite_elbo_is_stopped_not_published(tmp_path, capsys):
    """--lr 1e6 drives the ELBO to about -4e31 within the first epoch, finite all the way:
    the run stops with one line, exit status 2, and nothing is published."""
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--lr", "1e6", "--epochs", "3", "--hidden", "32"]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "diverged by epoch 1" in err[-1] and "No checkpoint was written yet" in err[-1]
    assert "lower --lr" in err[-1] and not out.exists()


def test_a_healthy_run_is_not_taken_for_a_diverging_one(tmp_path):
    """The guard's bound is far from any real run: a cyclical KL schedule, whose ELBO falls
    each time beta drops to 0, trains to the end."""
    out = tmp_path / "run"
    args = ["train", "--data", "digits", "--epochs", "4", "--hidden", "32", "--quiet"]
    args += ["--kl-schedule", "cyclical", "--kl-cycles", "2", "--out", str(out)]
    assert main(args) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 4


def test_resume_removes_what_interrupted_writes_left_and_files_get_the_umask_mode(
    tmp_path, capsys
):
    """A kill in the middle of write_atomic leaves its temporary file: --resume removes it.
    Run files get the mode new files get under the user's umask (0644 under 022), not the
    owner-only 0600 of a temporary file, so a colleague can open a shared run."""
    partial = tmp_path / "old.partial"
    shutil.copytree(Path(__file__).parent / "data" / "pre-layers" / "stopped.partial", partial)
    stale = [
        partial / ".model.safetensors.vaelab-k3j4",
        partial / "checkpoints" / ".last.safetensors.vaelab-x9q1",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    assert main(["train", "--resume", str(tmp_path / "old"), "--quiet"]) == 0
    run = tmp_path / "old"
    assert not [p for p in run.rglob("*") if p.name.startswith(".")]
    assert capsys.readouterr().out.count("left by an interrupted write") == 2
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("model.safetensors", "config.toml", "summary.json", "report.html"):
        assert (run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def listed_files_match(run: Path) -> None:
    """The run's manifest names every file it holds, each with its size and SHA-256."""
    listed = json.loads((run / "manifest.json").read_text())["files"]
    files = {
        p.relative_to(run).as_posix(): p.read_bytes()
        for p in run.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert set(listed) == set(files)
    for name, data in files.items():
        assert listed[name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_published_run_lists_every_file_in_its_manifest_and_plot_keeps_it_true(
    digits_run, tmp_path
):
    listed_files_match(digits_run)
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    (run / "plots" / "manifold.png").unlink()
    assert main(["plot", str(run), "--gap"]) == 0  # adds the 2-D run's posterior-gap plots
    assert main(["sample", str(run), "--n", "4"]) == 0
    assert main(["report", str(run)]) == 0
    listed = json.loads((run / "manifest.json").read_text())["files"]
    assert {"plots/posterior_gap.png", "plots/samples_grid.png"} <= set(listed)
    assert "plots/manifold.png" not in listed
    listed_files_match(run)


def test_a_run_killed_while_drawing_is_finished_by_resume_not_published_half_drawn(tmp_path):
    """SIGKILL the moment summary.json appears (the model is trained and scored; the plots,
    the report and the manifest are still to come): nothing is published, and --resume draws
    every plot and the report, writes the manifest last and publishes a complete run."""
    out, partial = tmp_path / "run", tmp_path / "run.partial"
    proc = vaelab("train", "--data", "digits", "--latent-dim", "2", "--hidden", "32",
                  "--epochs", "1", "--out", str(out), "--quiet")  # fmt: skip
    deadline = time.monotonic() + 120
    while not (partial / "summary.json").is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not out.exists() and not (partial / "manifest.json").exists()
    assert not (partial / "report.html").exists()
    code, stdout, err = finish(vaelab("train", "--resume", str(out)))
    assert code == 0, err
    assert "drawing its plots and report" in stdout
    assert {p.name for p in (out / "plots").iterdir()} == PLOTS | GAP_PLOTS  # a 2-D run
    assert (out / "report.html").is_file() and not partial.exists()
    assert not (out / "checkpoints").exists()
    listed_files_match(out)


def test_a_run_whose_test_elbo_is_not_finite_is_not_published_and_says_why(tmp_path, capsys):
    """Finite data, but one test value of 3e38 that no Gaussian decoder can score: training
    is healthy and the test ELBO is -inf. The run is not published, and the line blames the
    test data, not the learning rate. NaN in a held-out split is refused up front."""
    rng = np.random.default_rng(0)
    paths = {name: tmp_path / f"{name}.npy" for name in ("train", "valid", "test")}
    for name, n in (("train", 200), ("valid", 20), ("test", 20)):
        np.save(paths[name], rng.normal(size=(n, 5)).astype(np.float32))
    test = np.load(paths["test"])
    test[3, 2] = 3e38
    np.save(paths["test"], test)
    out = tmp_path / "run"
    argv = ["train", "--data", str(paths["train"]), "--valid-data", str(paths["valid"])]
    argv += ["--test-data", str(paths["test"]), "--epochs", "1", "--batch-size", "20"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "the test ELBO is -inf" in err[-1] and "check the test data" in err[-1]
    assert "lower --lr" not in err[-1] and not out.exists()
    test[3, 2] = np.nan
    np.save(paths["test"], test)
    assert main([*argv, "--out", str(out), "--quiet", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{paths['test']} contains NaN or Inf" in err[0]
    assert not out.exists()
