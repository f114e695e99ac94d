"""The trainer's fast path computes what a plain, obviously-correct VAE step computes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vaelab import VAE, Config, objectives, train
from vaelab.build import batch_terms, build_model
from vaelab.checkpoint import load_weights
from vaelab.training import compiled
from vaelab.training.guard import all_finite


def _plain_loss(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The textbook step, written out: encoder -> reparameterize with the given noise ->
    decoder logits -> binary cross-entropy summed over pixels + closed-form Gaussian KL,
    averaged over the batch."""
    h = model.encoder.net(x.flatten(1))
    mu, log_var = h.chunk(2, dim=-1)
    z = mu + torch.exp(0.5 * log_var) * eps
    logits = model.decoder(z).flatten(1)
    rec = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
    kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(1)
    return (rec + kl).mean()


def test_elbo_loss_and_gradients_equal_a_plain_step_on_the_same_noise():
    torch.manual_seed(0)
    config = Config(likelihood="bernoulli", hidden=[64], latent_dim=5)
    model = build_model(config, (1, 8, 8)).double()
    x = torch.rand(32, 1, 8, 8, dtype=torch.float64).bernoulli()
    state = torch.get_rng_state()
    terms = objectives.elbo(model, x)
    ours = torch.autograd.grad(terms.loss, list(model.parameters()))
    torch.set_rng_state(state)  # the same eps that q.rsample drew
    eps = torch.randn(1, 32, 5, dtype=torch.float64)[0]
    plain = _plain_loss(model, x, eps)
    theirs = torch.autograd.grad(plain, list(model.parameters()))
    torch.testing.assert_close(terms.loss, plain, rtol=1e-12, atol=1e-10)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_a_fused_adam_step_equals_the_plain_adam_update():
    """The trainer's optimizer (fused Adam, with its skip input clear) moves the weights as
    the textbook Adam update does; with the skip input set, not at all."""
    torch.manual_seed(1)
    weights = [torch.randn(7, 3, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    grads = [torch.randn_like(w) for w in weights]
    plain = [w.detach().clone() for w in weights]
    fused = torch.optim.Adam(weights, lr=1e-2, eps=1e-8, fused=True)
    m = [torch.zeros_like(w) for w in plain]
    v = [torch.zeros_like(w) for w in plain]
    for t in range(1, 4):
        for w, g in zip(weights, grads, strict=True):
            w.grad = g.clone()
        fused.found_inf = torch.zeros(())
        fused.step()
        for i, g in enumerate(grads):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            m_hat, v_hat = m[i] / (1 - 0.9**t), v[i] / (1 - 0.999**t)
            plain[i] -= 1e-2 * m_hat / (v_hat.sqrt() + 1e-8)
    for w, p in zip(weights, plain, strict=True):
        torch.testing.assert_close(w.detach(), p, rtol=1e-12, atol=1e-12)
    before = [w.detach().clone() for w in weights]
    for w in weights:
        w.grad = torch.full_like(w, float("nan"))
    fused.found_inf = torch.ones(())
    fused.step()  # skipped on the device: weights, moments and step count unchanged
    for w, b in zip(weights, before, strict=True):
        assert torch.equal(w.detach(), b)
    assert all(fused.state[w]["step"].item() == 3 for w in weights)
    assert all(torch.isfinite(fused.state[w]["exp_avg"]).all() for w in weights)


def test_compiled_objective_loss_and_gradients_equal_a_plain_step_on_the_same_noise():
    """torch.compile's version of the trainer's objective (vaelab.training.compiled), on a full
    batch, against the textbook step with the noise the compiled step drew (inductor draws from
    torch's own generator), float32 as trained."""
    torch.manual_seed(0)
    config = Config(likelihood="bernoulli", hidden=[64], latent_dim=5, compile="on")
    model = build_model(config, (1, 8, 8))
    x = torch.rand(32, 1, 8, 8).bernoulli()
    eager = lambda xb, index, beta, step, **_: batch_terms(  # noqa: E731
        model, xb, index, config, beta, step
    )
    fast = compiled.CompiledObjective(eager, batch_size=32, n_data=32)
    lines = []
    fast.prepare(x, list(model.parameters()), lines.append)
    assert fast.compiled is not None and "compiled the training step" in lines[0]
    state = torch.get_rng_state()
    terms, _ = fast(x, None, 1.0, 0)
    ours = torch.autograd.grad(terms.loss, list(model.parameters()))
    torch.set_rng_state(state)
    eps = torch.randn(1, 32, 5)[0]
    plain = _plain_loss(model, x, eps)
    theirs = torch.autograd.grad(plain, list(model.parameters()))
    torch.testing.assert_close(terms.loss, plain, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # a ragged last batch takes the eager path: the same function of the same noise
    state = torch.get_rng_state()
    ragged, _ = fast(x[:20], None, 1.0, 0)
    torch.set_rng_state(state)
    torch.testing.assert_close(ragged.loss, _plain_loss(model, x[:20], torch.randn(1, 20, 5)[0]))


def test_all_finite_flags_a_nan_or_inf_anywhere():
    grads = [
        torch.zeros(400, 784),
        torch.zeros(400),
        None,
        torch.zeros(20, 3, dtype=torch.float64),
    ]
    loss = torch.tensor(1.0)
    assert all_finite(loss, grads).item()
    assert not all_finite(torch.tensor(float("nan")), grads).item()
    for i, value in ((0, float("nan")), (1, float("inf")), (3, -float("inf"))):
        grads[i].view(-1)[-1] = value
        assert not all_finite(loss, grads).item()
        grads[i].view(-1)[-1] = 0.0
    assert all_finite(loss, grads).item()
    assert torch.count_nonzero(grads[0]) == 0  # the check leaves the gradients as they were


def _binary_images(path: Path, n: int = 40) -> Path:
    """``n`` random binary 6 x 6 images, as a user's .npy file."""
    rng = np.random.default_rng(0)
    np.save(path, (rng.random((n, 1, 6, 6)) < 0.3).astype(np.float32))
    return path


def test_a_compiled_run_learns_the_weights_an_uncompiled_run_learns(tmp_path):
    """--compile on against --compile off, the whole trainer, 3 epochs of one full batch: the
    same weights to float tolerance; and a run whose compilation fails (no C++ compiler) says
    so in one line and trains uncompiled to the same weights."""
    data = _binary_images(tmp_path / "x.npy")
    common = dict(data=str(data), hidden=[16], latent_dim=3, batch_size=32, epochs=3, seed=4)
    weights, logs = {}, {}
    for mode in ("off", "on"):
        lines: list[str] = []
        out = tmp_path / mode
        train(Config(**common, compile=mode, out=str(out)), progress=False, log=lines.append)
        weights[mode] = load_weights(out / "model.safetensors")
        logs[mode] = lines
    assert any("compiled the training step" in line for line in logs["on"])
    assert not any("torch.compile" in line or "compiled the" in line for line in logs["off"])
    assert weights["on"].keys() == weights["off"].keys()
    for name, value in weights["off"].items():
        assert not torch.equal(value, torch.zeros_like(value)) or "bias" in name
        torch.testing.assert_close(weights["on"][name], value, rtol=1e-4, atol=1e-5)
    broken = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--data", str(data), "--hidden", "16",
         "--latent-dim", "3", "--batch-size", "32", "--epochs", "3", "--seed", "4",
         "--compile", "on", "--out", str(tmp_path / "broken")],
        capture_output=True, text=True, env={**os.environ, "CXX": "/nonexistent/g++"},
    )  # fmt: skip
    assert broken.returncode == 0, broken.stderr
    failed = [line for line in broken.stdout.splitlines() if "torch.compile failed" in line]
    assert len(failed) == 1 and failed[0].endswith("training uncompiled")
    assert "Traceback" not in broken.stderr
    for name, value in load_weights(tmp_path / "broken" / "model.safetensors").items():
        torch.testing.assert_close(value, weights["off"][name], rtol=1e-6, atol=1e-7)


def test_compile_auto_compiles_only_long_single_process_cuda_runs():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long, short = compiled.MIN_STEPS, compiled.MIN_STEPS - 1
    auto = Config(compile="auto")
    assert compiled.wanted(auto, cuda, 1, long) == (True, "")
    assert compiled.wanted(auto, cuda, 1, short) == (False, "")
    assert compiled.wanted(Config(compile="auto", minutes=10.0), cuda, 1, 10) == (True, "")
    assert compiled.wanted(auto, cpu, 1, 10 * long) == (False, "")  # measured not to pay
    assert compiled.wanted(auto, cuda, 2, long) == (False, "")  # torchrun: silently eager
    assert compiled.wanted(Config(compile="on"), cpu, 1, 1) == (True, "")
    assert compiled.wanted(Config(compile="off"), cuda, 1, long) == (False, "")
    # asked for, and refused with the reason
    on, why = compiled.wanted(Config(compile="on"), cpu, 2, long)
    assert not on and "torchrun" in why
    on, why = compiled.wanted(Config(compile="on", inference="local"), cpu, 1, long)
    assert not on and "--inference local" in why
    on, why = compiled.wanted(Config(compile="on"), torch.device("mps"), 1, long)
    assert not on and "mps" in why
