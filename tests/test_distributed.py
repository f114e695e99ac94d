"""Data-parallel training (vaelab.training.distributed): 2 CPU processes over gloo against one.

Each test starts real processes: ``torchrun`` (``python -m torch.distributed.run``) for
the runs, or two ranks with torchrun's environment set by hand where a test needs to watch
one of them alone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

# tiny and quick: 12 steps an epoch on digits, the last one ragged (1437 = 11 * 128 + 29),
# with dynamic binarization, so the data's and z's noise are both under test
TRAIN = ["--data", "digits", "--hidden", "32", "--latent-dim", "4", "--batch-size", "128"]
TRAIN += ["--seed", "3", "--quiet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAELAB_DIST_TIMEOUT": "20", **extra}
    env.pop("VAELAB_FAULT_NAN", None)
    return env


def _vaelab(args, nproc: int = 1, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """``vaelab ARGS`` in 1 process, or under torchrun in ``nproc``."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "vaelab", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
        cmd += ["--master-addr=127.0.0.1", f"--master-port={_free_port()}", "-m", "vaelab"]
        cmd += args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(**env))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5, msg=name)


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The reference: 2 epochs in one process."""
    out = tmp_path_factory.mktemp("one") / "run"
    done = _vaelab(["train", *TRAIN, "--epochs", "2", "--out", str(out)])
    assert done.returncode == 0, done.stderr
    return out


def test_two_processes_train_the_one_process_model(one_process, tmp_path):
    out = tmp_path / "run"
    done = _vaelab(["train", *TRAIN, "--epochs", "2", "--out", str(out)], nproc=2)
    assert done.returncode == 0, done.stderr
    _assert_same_weights(out, one_process)
    assert _files(out) == _files(one_process)  # the same artefacts, written once
    two, one = (json.loads((r / "summary.json").read_text()) for r in (out, one_process))
    assert two["test"]["elbo"] == pytest.approx(one["test"]["elbo"], abs=1e-3)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2  # one record an epoch, from rank 0 only
    assert done.stdout.count("run written to") == 1


def test_a_run_of_two_processes_resumes_in_one(one_process, tmp_path):
    out = tmp_path / "run"
    # rank 1 dies at the 4th step of epoch 2, after the checkpoint of epoch 1
    died = _vaelab(
        ["train", *TRAIN, "--epochs", "2", "--out", str(out)], nproc=2, VAELAB_FAULT_EXIT="1:15"
    )
    assert died.returncode != 0
    assert (tmp_path / "run.partial" / "checkpoints" / "last.safetensors").is_file()
    done = _vaelab(["train", "--resume", str(out), "--quiet"])
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    _assert_same_weights(out, one_process)


def test_a_lost_rank_stops_the_others_with_one_clear_line(tmp_path):
    port = str(_free_port())
    args = [sys.executable, "-m", "vaelab", "train", *TRAIN, "--epochs", "3"]
    args += ["--out", str(tmp_path / "run")]
    ranks = []
    start = time.monotonic()
    for rank in (0, 1):  # torchrun's environment, by hand: this test watches rank 0 alone
        env = _env(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            VAELAB_FAULT_EXIT="1:5",
            VAELAB_DIST_TIMEOUT="10",
        )
        err = subprocess.PIPE if rank == 0 else subprocess.DEVNULL
        ranks.append(
            subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        )
    try:
        _, err = ranks[0].communicate(timeout=90)
        assert ranks[1].wait(timeout=30) == 17  # the injected fault
    finally:
        for proc in ranks:
            proc.kill()
    assert time.monotonic() - start < 90
    assert ranks[0].returncode == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaelab train: error: rank 0 of 2 lost contact"), err


def test_evaluation_split_over_two_processes_is_the_one_process_result(one_process):
    args = ["eval", str(one_process), "--k", "20", "--json"]
    one = _vaelab(args)
    two = _vaelab(args, nproc=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = json.loads(one.stdout), json.loads(two.stdout)  # rank 0 alone prints
    for key in ("nll_nats", "nll_se", "elbo", "elbo_se", "reconstruction", "kl", "ess_mean"):
        assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-9), key


def test_shards_cover_a_batch_once_with_weights_that_average_to_one(monkeypatch):
    from vaelab.training import distributed

    for n in (1, 2, 7, 29, 128):
        for world in (1, 2, 3, 8):
            monkeypatch.setattr(distributed, "world_size", lambda w=world: w)
            rows, weights = [], []
            for rank in range(world):
                monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
                share, weight = distributed.shard(n)
                if weight:
                    rows += list(range(n))[share]
                weights.append(weight)
            assert rows == list(range(n))
            assert sum(weights) / world == pytest.approx(1.0)


@pytest.mark.parametrize(
    "option", [{"tc_beta": 2.0}, {"factor_gamma": 5.0}, {"minutes": 1.0}, {"inference": "local"}]
)
def test_options_that_need_state_shared_between_ranks_are_refused_before_anything_is_written(
    option, monkeypatch, tmp_path
):
    """beta-TCVAE's q(z) needs the whole batch's codes, FactorVAE's discriminator and local
    posteriors are not synchronised, and --minutes would let ranks stop at different epochs."""
    from vaelab import Config, train
    from vaelab.errors import VaelabError

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: checked before any rendezvous
    out = tmp_path / "run"
    config = Config(data="digits", epochs=1, out=str(out), **option)
    with pytest.raises(VaelabError, match="under torchrun"):
        train(config, progress=False, log=lambda _: None)
    assert not out.exists() and not (tmp_path / "run.partial").exists()
