"""Long commands show that they are working (issue 26, item 2): a bar with the time left on a
terminal, a plain line every interval in a log, one line with the expected time and a quicker
option before a long stage, nothing with --quiet; library functions report through a
``progress`` argument and never print."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest
import torch

from vaelab import Config, load, save
from vaelab.build import build_model
from vaelab.cli import main
from vaelab.core.inference import fit_local
from vaelab.evaluate import ais_log_px, importance_sampled_log_px
from vaelab.evaluate.disentangle import score_run
from vaelab.evaluate.gap import elbo_per_example
from vaelab.progress import EVERY_VARIABLE, Reporter, Task, duration, silent

FAST = "0.05"  # seconds between progress lines in these tests, instead of a minute
# the eval these tests watch: K = 500 on digits' 180 test images lasts a second or more
EVAL = ["--k", "500"]


class Recorder(Task):
    """A progress that keeps what it is told: each stage's name, total and units done."""

    def __init__(self, stages: list, desc: str, total: float, unit: str):
        self.stage = {"desc": desc, "total": total, "unit": unit, "done": 0, "closed": False}
        stages.append(self.stage)

    def update(self, n: float = 1) -> None:
        self.stage["done"] += n

    def close(self) -> None:
        self.stage["closed"] = True


def recorder() -> tuple[list, object]:
    stages: list = []
    return stages, lambda desc, total, unit="it": Recorder(stages, desc, total, unit)


def vaelab(*args: str, every: str = FAST, **kwargs) -> subprocess.CompletedProcess:
    """``vaelab ARGS`` in its own process, stderr a pipe (not a terminal)."""
    env = {**os.environ, "PYTHONWARNINGS": "error", EVERY_VARIABLE: every}
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *args],
        capture_output=True, text=True, env=env, timeout=300, **kwargs,
    )  # fmt: skip


# --- the helper ------------------------------------------------------------------------------


def test_a_reporter_writes_a_line_each_interval_and_announces_a_long_stage_once():
    log, told = io.StringIO(), []

    def announce(desc, seconds, total):
        told.append((desc, seconds, total))
        return f"{desc}: about {duration(seconds)}; a quicker option"

    progress = Reporter(every=0.05, announce=announce, file=log)
    start = time.perf_counter()
    with progress("stage", 20, "steps") as task:
        for _ in range(20):
            time.sleep(0.02)  # a stage of 0.4 s: eight intervals
            task.update()
    took = time.perf_counter() - start
    lines = log.getvalue().splitlines()
    assert lines[0] == f"stage: about {duration(told[0][1])}; a quicker option"
    assert len(told) == 1 and told[0][0] == "stage" and told[0][2] == 20
    assert told[0][1] == pytest.approx(took, rel=0.5)  # estimated from its first 0.05 s
    tick = r"stage: \d+ of 20 steps \(\d+%\), \d+ s so far, about \d+ s left"
    ticks = [line for line in lines if re.fullmatch(tick, line)]
    assert 3 <= len(ticks) <= 10 and lines[-1].startswith("stage: done in")
    # a stage quicker than the interval says nothing; so do a disabled reporter and silent
    quiet = io.StringIO()
    for progress in (
        Reporter(every=60, announce=announce, file=quiet),
        Reporter(enabled=False, every=0.01, announce=announce, file=quiet),
        silent,
    ):
        with progress("quick", 3) as task:
            for _ in range(3):
                time.sleep(0.02)
                task.update()
    assert quiet.getvalue() == "" and len(told) == 1


def test_library_estimators_report_their_whole_work_and_print_nothing(digits_run, capsys):
    model = load(digits_run)
    x = torch.bernoulli(torch.full((30, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    stages, progress = recorder()
    importance_sampled_log_px(model, x, k=50, batch_size=20, progress=progress)
    ais_log_px(model, x, steps=4, chains=2, batch_size=20, progress=progress)
    fit = fit_local(model, x, steps=7, progress=progress)
    elbo_per_example(model, x, fit.posteriors, samples=5, chunk=8, progress=progress)
    assert [(s["desc"], s["total"], s["unit"]) for s in stages] == [
        ("importance sampling", 30 * 50, "samples"),
        ("AIS", 30 * 4, "steps"),
        ("fitting q*", 7, "steps"),
        ("ELBO", 30, "examples"),
    ]
    assert all(s["done"] == s["total"] and s["closed"] for s in stages)
    assert capsys.readouterr() == ("", "")  # the library itself never prints


@pytest.fixture(scope="module")
def shapes_model():
    """An untrained model of 32 x 32 shapes whose codes vary (none collapsed): enough for
    the disentanglement metrics to run every stage, in seconds."""
    torch.manual_seed(0)
    config = Config(
        data="shapes", image_size=32, latent_dim=3, hidden=[16], likelihood="bernoulli"
    )
    model = build_model(config, (1, 32, 32))
    with torch.no_grad():  # an untrained encoder's codes barely move: spread them
        for p in model.encoder.parameters():
            p.mul_(20)
    return model


def test_disentanglement_metrics_report_each_stage(shapes_model, capsys):
    model = shapes_model
    stages, progress = recorder()
    score_run(model, 32, n=20, n_trees=2, progress=progress)
    assert [s["desc"] for s in stages] == ["DCI", "SAP", "β-VAE metric", "FactorVAE metric"]
    assert [s["total"] for s in stages] == [5, 3, 30, 30]  # 5 factors, 3 dims, n + n // 2
    assert all(s["done"] == s["total"] and s["closed"] for s in stages)
    assert capsys.readouterr() == ("", "")


# --- vaelab eval -----------------------------------------------------------------------------


def test_eval_in_a_log_says_how_long_it_will_take_then_shows_life(digits_run):
    # K = 2,000 (360,000 samples) and a line every 5 ms: on a fast idle core K = 500 ended
    # before a 0.05 s probe, so nothing was announced; this lasts many probes on any machine
    result = vaelab("eval", str(digits_run), "--k", "2000", "--json", every="0.005")
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)  # stdout stays the one JSON object
    lines = result.stderr.splitlines()
    # first the expected time and the quicker option, from a timed first chunk
    assert re.fullmatch(
        r"vaelab eval: K = 2,000 on 180 examples: about \d+ (s|min) here; "
        r"--k 100 answers in about \d+ s",
        lines[0],
    ), result.stderr
    tick = (
        r"importance sampling: [\d,]+ of 360,000 samples \(\d+%\), \d+ s so far, "
        r"about \d+ (s|min) left"
    )
    ticks = [line for line in lines if re.fullmatch(tick, line)]
    assert ticks and lines[-1].startswith("importance sampling: done in")
    assert not any("\r" in line for line in lines)  # plain lines, no bar redrawn in a log


def test_eval_quiet_prints_nothing_on_stderr(digits_run):
    result = vaelab("eval", str(digits_run), *EVAL, "--quiet")
    assert result.returncode == 0 and result.stderr == ""
    assert "-log p(x), K=500 " in result.stdout


def test_a_bad_progress_interval_is_one_line(digits_run):
    result = vaelab("eval", str(digits_run), "--k", "2", every="soon")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "vaelab eval: error: VAELAB_PROGRESS_EVERY='soon' is not a number of seconds > 0; "
        "set it to one (e.g. 60) or unset it"
    )


def _read_until_exit(fd: int, proc: subprocess.Popen, timeout: float = 120) -> bytes:
    """Everything written to the pseudo-terminal ``fd`` until ``proc`` exits."""
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child's side is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)


def test_eval_on_a_terminal_draws_a_bar_with_the_time_left(digits_run):
    leader, follower = pty.openpty()
    # a terminal 120 columns wide, as a user's would be
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "eval", str(digits_run), *EVAL],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower,
        env={k: v for k, v in os.environ.items() if k != EVERY_VARIABLE},
    )  # fmt: skip
    os.close(follower)
    try:
        screen = _read_until_exit(leader, proc).decode(errors="replace")
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        proc.kill()
    assert proc.returncode == 0, screen
    assert b"-log p(x), K=500 " in out
    # tqdm's bar: "importance sampling:  45%|####5     | 40.5k/90.0k [00:01<00:01, 30.2ksamples/s]"
    # each redraw on its own (tqdm redraws with \r: a fast run may draw only 0% and 100%)
    draws = re.split(r"[\r\n]", screen)
    pattern = r"importance sampling: +(\d+)%\|.*?\| \S+/90.0k \[(\d\d:\d\d)<(\d\d:\d\d)"
    bars = [m.groups() for m in map(re.compile(pattern).search, draws) if m]
    assert bars and bars[-1][0] == "100", screen  # drawn to the end, with elapsed<left


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_under_torchrun_only_rank_0_shows_progress(digits_run):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2"]
    cmd += ["--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "vaelab"]
    cmd += ["eval", str(digits_run), "--k", "2000", "--json"]
    # a line every 5 ms: rank 0's 200,000 samples outlast the probe even on a fast idle core
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAELAB_DIST_TIMEOUT": "30"}
    env[EVERY_VARIABLE] = "0.005"
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    # rank 0 scores 100 of the 180 images (batches 0 and 1 go to ranks 0 and 1)
    assert result.stderr.count("vaelab eval: K = 2,000 on 180 examples") == 1, result.stderr
    assert result.stderr.count("importance sampling: done in") == 1, result.stderr
    assert "of 200,000 samples" in result.stderr and "of 160,000 samples" not in result.stderr


# --- the other long commands, in a log -----------------------------------------------------


def test_gap_in_a_log_announces_each_long_stage_and_shows_life(digits_run, monkeypatch, capsys):
    monkeypatch.setenv(EVERY_VARIABLE, "0.01")
    # K = 3,000: enough work that each importance-sampling stage outlasts the 0.01 s probe
    # even on one idle core
    small = ["--n", "20", "--steps", "200", "--k", "3000", "--samples", "10", "--ais-steps", "5"]
    assert main(["gap", str(digits_run), *small]) == 0
    out, err = capsys.readouterr()
    assert "amortization gap" in out
    # each long stage first says how long it will take, and what would be quicker
    notices = [
        r"vaelab gap: fitting q\*, 20 images: about \d+ s here",
        r"vaelab gap: q\(z\|x\): importance sampling, 20 images: about \d+ s here; "
        r"--k 100 answers in about \d+ s",
    ]
    for notice in notices:
        assert re.search(f"^{notice}$", err, re.M), err
    for stage in ("fitting q*", "q(z|x): importance sampling", "q*: importance sampling"):
        assert re.search(rf"^{re.escape(stage)}: [\d,]+ of [\d,]+ \w+ \(\d+%\)", err, re.M), err
    assert main(["gap", str(digits_run), *small, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_encode_in_a_log_shows_life(digits_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EVERY_VARIABLE, "0.01")
    data = tmp_path / "many.npy"  # five chunks of 4,096 examples
    np.save(data, np.random.default_rng(0).integers(0, 2, (20_000, 1, 8, 8)).astype(np.float32))
    args = ["encode", str(digits_run), "--data", str(data), "--samples", "100"]
    assert main([*args, "--out", str(tmp_path / "z.npz")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^encoding: [\d,]+ of 20,000 examples \(\d+%\)", err, re.M), err
    assert re.search(r"^encoding: done in \d+ s$", err, re.M), err
    assert main([*args, "--out", str(tmp_path / "quiet.npz"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_disentangle_in_a_log_shows_each_metric(shapes_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EVERY_VARIABLE, "0.01")
    run = save(shapes_model, tmp_path / "shapes")
    assert main(["disentangle", str(run), "--n", "20", "--trees", "2"]) == 0
    err = capsys.readouterr().err
    for stage in ("DCI", "β-VAE metric", "FactorVAE metric"):
        assert f"{stage}: done in" in err, err
    notice = r"^vaelab disentangle: β-VAE metric on 20 points: about \d+ s here$"
    assert re.search(notice, err, re.M), err


def test_plot_and_report_in_a_log_show_life(digits_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EVERY_VARIABLE, "0.01")
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    assert main(["plot", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "plots written to" in out
    # a 2-D run: its figures, then q* fitted for the posterior-gap figures (a bounded time)
    assert re.search(r"^plots: [\d,]+ of \d+ plots \(\d+%\)", err, re.M), err
    assert re.search(r"^vaelab plot: fitting q\*: at most about \d+ s here$", err, re.M), err
    assert re.search(r"^fitting q\*: [\d,]+ of 500 steps \(\d+%\)", err, re.M), err
    assert main(["report", str(run)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^report: \d+ of \d+ parts \(\d+%\)", err, re.M), err
    assert "report: done in" in err
    assert main(["report", str(run), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
