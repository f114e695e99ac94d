"""The same seed gives the same numbers as before the package was restructured into layers
(issue 24): short runs of every model and objective, their final weights hashed, against the
hashes the code at c878b56 produced on this kind of CPU (tests/data/bit_exact.json, made by
``python tests/bit_exact_runs.py OUT``); and runs written by that code still load and resume.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vaelab import load
from vaelab.cli import main

from .bit_exact_runs import NAMES, weights_hash

HERE = Path(__file__).parent
RECORDED = json.loads((HERE / "data" / "bit_exact.json").read_text())
OLD_RUNS = HERE / "data" / "pre-layers"
# floating-point results are bit-exact only on the instruction set they were recorded on
SAME_CPU = torch.backends.cpu.get_cpu_capability() == RECORDED["cpu_capability"]
needs_same_cpu = pytest.mark.skipif(
    not SAME_CPU,
    reason=f"hashes recorded on {RECORDED['cpu_capability']} kernels, this CPU runs "
    f"{torch.backends.cpu.get_cpu_capability()}",
)


@needs_same_cpu
def test_every_configuration_trains_to_the_recorded_weights(tmp_path):
    """Two processes of one thread each, half the runs each: the machine's two cores."""
    script = str(HERE / "bit_exact_runs.py")
    halves = [NAMES[0::2], NAMES[1::2]]
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(tmp_path / str(i)), *names],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, names in enumerate(halves)
    ]
    now = {}
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        now.update(json.loads(out)["hashes"])
    assert now.keys() == RECORDED["hashes"].keys()
    differ = [name for name in now if now[name] != RECORDED["hashes"][name]]
    assert not differ, f"runs whose weights or test ELBO changed: {differ}"


@needs_same_cpu
def test_a_run_stopped_before_the_restructuring_resumes_to_the_same_weights(tmp_path):
    partial = tmp_path / "old.partial"
    shutil.copytree(OLD_RUNS / "stopped.partial", partial)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the stopped run was trained
    try:
        assert main(["train", "--resume", str(tmp_path / "old"), "--quiet"]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    resumed = weights_hash(tmp_path / "old" / "model.safetensors")
    assert resumed == weights_hash(OLD_RUNS / "finished" / "model.safetensors")


def test_a_run_finished_before_the_restructuring_loads_and_scores():
    model = load(OLD_RUNS / "finished")
    assert model.latent_dim == 3
    x = torch.rand(5, *model.x_shape).bernoulli()
    elbo = model.elbo(x)
    assert elbo.shape == (5,) and torch.isfinite(elbo).all()
