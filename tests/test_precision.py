"""--precision bf16: the networks' matrix products in bfloat16, every density and sum in
float32; the same batch and noise give the float32 loss within bfloat16's tolerance."""

from __future__ import annotations

import json

import pytest
import torch

from vaelab import Config, load, resume, train
from vaelab.build import build_model
from vaelab.cli import main
from vaelab.config import read_toml
from vaelab.device import native_bf16, resolve_precision

CPU = torch.device("cpu")


def _mnist_sized_model(**kw):
    """The 784-400-20 MLP of the throughput benchmark, on a batch of binary 28x28 images."""
    torch.manual_seed(0)
    config = Config(hidden=[400], latent_dim=20, likelihood="bernoulli", **kw)
    model = build_model(config, (1, 28, 28), 1000)
    x = (torch.rand(256, 1, 28, 28) < 0.3).float()
    return model, x


def _loss_and_grads(model, x, dtype):
    model.zero_grad()
    torch.manual_seed(1)  # the same eps for both precisions
    with model.computing_in(dtype):
        terms = model.elbo_terms(x)
    loss = -terms.elbo.mean()
    loss.backward()
    return terms, loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("prior", [{"prior": "normal"}, {"prior": "vamp", "prior_components": 20}])
def test_bf16_loss_and_gradients_match_fp32_on_the_same_batch_and_noise(prior):
    model, x = _mnist_sized_model(**prior)
    terms32, loss32, grads32 = _loss_and_grads(model, x, None)
    terms16, loss16, grads16 = _loss_and_grads(model, x, torch.bfloat16)
    # every density, KL and sum is float32 whatever the networks computed in
    for t in (terms16.log_px_z, terms16.kl, terms16.qz.mean, terms16.z):
        assert t.dtype == torch.float32
    assert loss16 != loss32  # the products did run in bfloat16
    # bfloat16 keeps 8 bits of mantissa, a relative error of about 4e-3 per product; summed in
    # float32 over pixels and the batch the loss moves far less (3e-7 measured)
    assert abs(loss16 - loss32) / abs(loss32) < 1e-4
    for g32, g16 in zip(grads32, grads16, strict=True):
        assert torch.isfinite(g16).all() and g16.dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(g32.flatten(), g16.flatten(), dim=0)
        assert cosine > 0.995
    assert model.compute_dtype is None  # restored on leaving the block


def test_auto_takes_bf16_only_where_native_and_at_batches_where_it_pays():
    small, _ = resolve_precision("auto", CPU, 128)
    large, why = resolve_precision("auto", CPU, 512)
    assert small == "fp32"
    assert large == ("bf16" if native_bf16(CPU) else "fp32")
    assert resolve_precision("fp32", CPU, 512) == ("fp32", "")
    assert resolve_precision("bf16", CPU, 16)[0] == "bf16"  # asked for: granted


def _run(tmp_path, name, **kw):
    config = Config(
        data="digits", hidden=[64], latent_dim=3, epochs=3, batch_size=64,
        precision="bf16", out=str(tmp_path / name), **kw,
    )  # fmt: skip
    return train(config, progress=False, log=lambda _: None)


def test_a_bf16_run_keeps_float32_weights_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    whole = _run(tmp_path, "whole")
    assert read_toml(whole / "config.toml")["precision"] == "bf16"
    weights = load(whole).state_dict()
    assert all(w.dtype == torch.float32 for w in weights.values())
    monkeypatch.setenv("VAELAB_FAULT_NAN", "2:")  # epoch 2 fails: stopped at epoch 1's checkpoint
    with pytest.raises(Exception, match="non-finite"):
        _run(tmp_path, "stopped")
    monkeypatch.delenv("VAELAB_FAULT_NAN")
    resumed = load(resume(tmp_path / "stopped", progress=False, log=lambda _: None))
    assert all(torch.equal(weights[k], resumed.state_dict()[k]) for k in weights)


def test_train_says_which_precision_it_chose_and_writes_it(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--data", "digits", "--hidden", "32", "--epochs", "1", "--batch-size", "512"]
    assert main(["train", *flags, "--out", str(out), "--quiet"]) == 0
    chosen = read_toml(out / "config.toml")["precision"]
    captured = capsys.readouterr()
    said = captured.err + captured.out
    assert chosen in ("fp32", "bf16")
    if chosen == "bf16":  # auto on a CPU with native bfloat16
        assert "precision bf16: the CPU has" in said


def test_eval_in_bf16_agrees_with_fp32_and_says_so(digits_run, capsys):
    results = {}
    for precision in ("fp32", "bf16"):
        args = ["eval", str(digits_run), "--k", "100", "--precision", precision, "--json"]
        assert main([*args, "--quiet"]) == 0
        results[precision] = json.loads(capsys.readouterr().out)
    fp32, bf16 = results["fp32"], results["bf16"]
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert fp32["nll_nats"] != bf16["nll_nats"]  # the products did run in bfloat16
    assert abs(fp32["nll_nats"] - bf16["nll_nats"]) < 0.05  # the same z, the same images
    assert fp32["elbo"] == bf16["elbo"]  # only the importance-sampled estimate changes
    with pytest.raises(SystemExit) as refused:  # argparse's one line
        main(["eval", str(digits_run), "--precision", "fp16"])
    assert refused.value.code == 2
