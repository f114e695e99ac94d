"""The GPU path: training, bfloat16, torch.compile, evaluation, resume and DDP over NCCL on
CUDA. Every test here skips with its reason on a machine without CUDA (two GPUs for DDP);
benchmarks/gpu_check.sh runs them on one that has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from vaelab import Config, load, open_run, resume, train
from vaelab import data as data_mod
from vaelab.build import build_model
from vaelab.cli import main
from vaelab.device import native_bf16, resolve_precision
from vaelab.evaluate import log_likelihood

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
CUDA = torch.device("cuda")
SMALL = {"data": "digits", "hidden": [64], "latent_dim": 3, "batch_size": 64, "device": "cuda"}


def _train(tmp_path, name, **kw):
    config = Config(out=str(tmp_path / name), **{"epochs": 2, **SMALL, **kw})
    return train(config, progress=False, log=lambda _: None)


def test_a_run_trains_on_the_gpu_and_its_model_scores_alike_on_the_cpu(tmp_path):
    run = _train(tmp_path, "run", precision="fp32")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["elbo"] < 0 and summary["epochs"] == 2
    on_gpu, on_cpu = open_run(run, device="cuda"), open_run(run, device="cpu")
    x = on_cpu.split("test")
    gpu = log_likelihood(on_gpu.model, x.to(CUDA), k=200)
    cpu = log_likelihood(on_cpu.model, x, k=200)
    # different devices draw different z: equal within Monte Carlo error
    assert abs(gpu["nll_nats"] - cpu["nll_nats"]) < 4 * (gpu["nll_se"] + cpu["nll_se"])


def test_the_training_split_lives_on_the_gpu_and_is_binarized_there():
    x = torch.rand(5000, 1, 8, 8, device=CUDA)
    generator = torch.Generator().manual_seed(0)
    batches = list(data_mod.epoch_batches(x, 500, generator, True, CUDA, torch.empty_like(x)))
    assert all(b.device.type == "cuda" and i.device.type == "cuda" for i, b in batches)
    drawn = torch.cat([b for _, b in batches])
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}
    assert abs(drawn.mean().item() - x.mean().item()) < 0.01  # P(x_b = 1) = x
    again = torch.Generator().manual_seed(0)  # the run's generator fixes the draws
    repeat = list(data_mod.epoch_batches(x, 500, again, True, CUDA, torch.empty_like(x)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, repeat, strict=True))


@pytest.mark.skipif(
    torch.cuda.is_available() and not native_bf16(torch.device("cuda")),
    reason="this GPU has no native bfloat16 (compute capability < 8.0)",
)
def test_bf16_on_the_gpu_matches_fp32_and_auto_takes_it(tmp_path):
    assert resolve_precision("auto", CUDA, 64)[0] == "bf16"
    config = Config(hidden=[400], latent_dim=20, likelihood="bernoulli")
    torch.manual_seed(0)
    model = build_model(config, (1, 28, 28), 1000).to(CUDA)
    x = (torch.rand(256, 1, 28, 28, device=CUDA) < 0.3).float()
    losses = []
    for dtype in (None, torch.bfloat16):
        torch.manual_seed(1)
        with model.computing_in(dtype):
            terms = model.elbo_terms(x)
        assert terms.log_px_z.dtype == torch.float32
        losses.append(-terms.elbo.mean())
        losses[-1].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        model.zero_grad()
    assert abs(losses[1] - losses[0]) / abs(losses[0]) < 1e-3
    run = _train(tmp_path, "bf16", precision="auto")
    assert open_run(run).config.precision == "bf16"


def test_a_compiled_run_trains_on_the_gpu(tmp_path):
    eager = _train(tmp_path, "eager", compile="off", precision="fp32", epochs=1)
    fast = _train(tmp_path, "compiled", compile="on", precision="fp32", epochs=1)
    e = json.loads((eager / "summary.json").read_text())["test"]["elbo"]
    c = json.loads((fast / "summary.json").read_text())["test"]["elbo"]
    assert abs(e - c) < 1.0  # the same noise and data; float rounding apart


def test_a_gpu_run_stopped_at_a_checkpoint_resumes_and_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_FAULT_NAN", "2:")
    with pytest.raises(Exception, match="non-finite"):
        _train(tmp_path, "stopped", epochs=3)
    monkeypatch.delenv("VAELAB_FAULT_NAN")
    run = resume(tmp_path / "stopped", progress=False, log=lambda _: None)
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    assert next(load(run).parameters()).device.type == "cpu"  # checkpoints load anywhere
    assert main(["eval", str(run), "--k", "20", "--device", "cuda", "--quiet"]) == 0


@pytest.mark.skipif(
    torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="DDP needs two GPUs"
)
def test_two_gpus_train_data_parallel_over_nccl(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = ["--data", "digits", "--hidden", "64", "--epochs", "2", "--device", "cuda"]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "-m", "vaelab",
         "train", *flags, "--out", str(out), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2
