"""benchmarks/time_to_nll.py: the peers' weights become vaelab models that compute what the
peers compute, and the script trains, scores and reports on a tiny MNIST folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import time_to_nll
from throughput import ReferenceVAE, reference_loss

from .test_data import write_mnist_folder

ROOT = Path(__file__).resolve().parents[1]


def binary_batch(n: int = 16) -> torch.Tensor:
    """``(n, 1, 28, 28)`` random binary images."""
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(3)))


def fixed_noise(eps: torch.Tensor):
    """A noise source for vaelab's q that hands out ``eps`` ``(B, D)`` as the (1, B, D) draw."""
    return lambda shape, dtype, device: eps.reshape(shape)


def test_reference_weights_in_vaelab_give_the_same_logits_and_elbo():
    torch.manual_seed(0)
    reference = ReferenceVAE(400, 20)
    model = time_to_nll.twin(time_to_nll.reference_state(reference))
    # the decoder: the same logits, bit for bit, for z of any leading shape
    z = torch.randn(3, 5, 20)
    assert torch.equal(model.decoder(z), reference.dec(z).unflatten(-1, (1, 28, 28)))
    # the ELBO with the same eps: pytorch/examples' loss is vaelab's -ELBO, batch-averaged
    x = binary_batch()
    torch.manual_seed(7)
    loss = reference_loss(reference, x.flatten(1))  # draws eps with randn_like(mu), (B, 20)
    torch.manual_seed(7)
    model.noise = fixed_noise(torch.randn(len(x), 20))
    elbo = model.elbo(x)
    torch.testing.assert_close(-elbo.mean(), loss.detach(), rtol=1e-5, atol=1e-3)
    assert elbo.mean() < -400  # an untrained model: the comparison is of large numbers


def test_pythae_weights_in_vaelab_give_the_same_probabilities_and_loss():
    pytest.importorskip("pythae")
    torch.manual_seed(0)
    peer = time_to_nll.pythae_model()
    model = time_to_nll.twin(peer.state_dict())
    z = torch.randn(4, 20)
    assert torch.equal(torch.sigmoid(model.decoder(z)), peer.decoder(z)["reconstruction"])
    x = binary_batch()
    torch.manual_seed(7)
    loss = peer({"data": x}).loss  # BCE of probabilities + KL, batch-averaged; randn_like eps
    torch.manual_seed(7)
    model.noise = fixed_noise(torch.randn(len(x), 20))
    torch.testing.assert_close(-model.elbo(x).mean(), loss.detach(), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--minutes", "0"], "minutes must be > 0, not 0"),
        (["--vaelab-minutes", "1", "-2"], "minutes must be > 0, not -2"),
        (["--systems", "keras"], "invalid choice: 'keras'"),
        (["--k", "0"], "--k and --n-test must be >= 1"),
        ([], "set $VAELAB_DATA (or --data-dir) to the MNIST IDX folder"),
    ],
    ids=["minutes", "vaelab-minutes", "system", "k", "no-data"],
)
def test_bad_arguments_are_one_usage_line_and_exit_2(args, message, monkeypatch, capsys):
    monkeypatch.delenv("VAELAB_DATA", raising=False)
    with pytest.raises(SystemExit) as stop:
        time_to_nll.main(["--systems", "pytorch-example", *args])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: ") and message in err[-1] and "error: " in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_time_to_nll_scores_every_system_at_every_point_and_reports_the_headline(tmp_path):
    write_mnist_folder(tmp_path / "mnist", n_train=600, n_test=40, side=28)
    out = tmp_path / "bench"
    args = ["--minutes", "0.02", "0.04", "--k", "5", "--n-test", "20", "--out", str(out),
            "--systems", "pytorch-example", "mnist-vae-fp32"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_nll.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "VAELAB_DATA": str(tmp_path / "mnist")},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "load at the start: " in lines[0] and any(
        line.startswith("load at the end: ") for line in lines
    )
    record = json.loads((out / "time_to_nll.json").read_text())
    assert (record["k"], record["n_test"]) == (5, 20)
    systems = record["systems"]
    assert list(systems) == ["pytorch-example", "mnist-vae-fp32"]
    for points in (s["points"] for s in systems.values()):
        assert [p["minutes"] for p in points] == [0.02, 0.04]
        assert all(p["nll"] > 0 and p["nll_se"] > 0 for p in points)
    # the peer is scored once its training clock has passed each point
    peer = systems["pytorch-example"]["points"]
    assert all(p["train_seconds"] >= 60 * p["minutes"] for p in peer)
    # vaelab: one run per point, each with its own budget, in the --out folder
    for minutes in ("0.02", "0.04"):
        run = out / "runs" / f"mnist-vae-fp32-{minutes}min"
        assert 'precision = "fp32"' in (run / "config.toml").read_text()

    # the table: a header of the points, one row per system with the JSON's figures
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| system | 0.02 min | 0.04 min |"
    for row, system in zip(table[2:], systems.values(), strict=True):
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert cells[0] == system["label"]
        assert cells[1:] == [f"{p['nll']:.2f} ± {p['nll_se']:.2f}" for p in system["points"]]

    with Image.open(out / "time_to_nll.png") as image:
        assert image.format == "PNG" and image.width > 300

    # the headline, last: the peer's NLL at 0.04 min and vaelab's first point at or below it
    target = peer[-1]["nll"]
    reached = [p["minutes"] for p in systems["mnist-vae-fp32"]["points"] if p["nll"] <= target]
    assert record["headline"]["reached"] == {"mnist-vae-fp32": (reached or [None])[0]}
    expected = (
        f"mnist-vae-fp32 reached it at {reached[0]:g} min"
        if reached
        else "mnist-vae-fp32 not reached within 0.04 minutes"
    )
    assert lines[-1].startswith(
        f"headline: best peer pytorch/examples VAE: {target:.2f} nats after 0.04 min; {expected}"
    )
    assert lines[-1] == record["headline"]["text"]
