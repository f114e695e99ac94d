"""Checkpoints are verified before any of them is used (issue 25): a crafted or damaged file is
one line and exit status 2, never a crash, and identical weights make identical files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vaelab import VAE, load, save
from vaelab.checkpoint import payload_digest, save_weights
from vaelab.cli import main
from vaelab.errors import VaelabError

OLD_RUN = Path(__file__).parent / "data" / "pre-layers" / "stopped.partial"


def _stopped_run(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a run stopped after epoch 2 (``OUT``, ``OUT.partial/checkpoints/last``)."""
    partial = tmp_path / "run.partial"
    shutil.copytree(OLD_RUN, partial)
    return tmp_path / "run", partial / "checkpoints" / "last.safetensors"


def _rewrite(path: Path, change) -> None:
    """``path``'s tensors and header, changed by ``change(tensors, metadata)``, written back."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata())
    tensors = load_file(str(path))
    change(tensors, metadata)
    save_file(tensors, str(path), metadata=metadata)


def test_adam_moments_of_the_wrong_shape_are_refused_not_a_crash(tmp_path):
    """Fused Adam reads its moments unchecked: moments of the wrong shape crashed the process
    (exit 139) or turned into NaNs blamed on the learning rate. In a child process, so a
    crash cannot take pytest along."""
    out, last = _stopped_run(tmp_path)
    key = next(k for k in load_file(str(last)) if k.startswith("optim.") and "exp_avg" in k)
    _rewrite(last, lambda t, m: t.__setitem__(key, torch.zeros(3, 3)))
    before = last.read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in result.stderr
    assert last.read_bytes() == before  # the checkpoint is left as it was


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda t, m: m.__setitem__("counters", json.dumps({"epoch": "2"})), "counters"),
        (lambda t, m: m.__setitem__("counters", "[1, 2]"), "counters"),
        (lambda t, m: t.pop("rng.global"), "random generators"),
        (lambda t, m: t.__setitem__("rng.data", torch.zeros(3, dtype=torch.uint8)), "generator"),
        (lambda t, m: t.__setitem__("optim.99.exp_avg", torch.zeros(2)), "optim.99"),
    ],
    ids=["counter-type", "counters-not-a-dict", "no-rng", "short-rng", "extra-state"],
)
def test_a_crafted_training_checkpoint_is_one_line_and_exit_2(tmp_path, capsys, change, words):
    out, last = _stopped_run(tmp_path)
    _rewrite(last, change)
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_a_metrics_log_that_is_not_utf8_is_one_line(tmp_path, capsys):
    out, last = _stopped_run(tmp_path)
    (last.parents[1] / "metrics.jsonl").write_bytes(b"\xff\xfe\x00 not text\n" * 3)
    assert main(["train", "--resume", str(out), "--quiet"]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_a_flipped_byte_in_a_weight_is_refused(digits_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes; the header is untouched
    weights.write_bytes(bytes(data))
    with pytest.raises(VaelabError, match="damaged"):
        load(run)
    assert main(["eval", str(run), "--k", "2"]) == 2
    assert "damaged" in capsys.readouterr().err


def test_the_same_weights_make_the_same_file_bytes(digits_run, tmp_path):
    """The header's keys in sorted order, the tensors' SHA-256 among them: a checksum of two
    files says whether two runs agree."""
    model = load(digits_run)
    paths = [tmp_path / f"{i}.safetensors" for i in range(5)]
    for path in paths:
        save_weights(path, model)
    assert len({p.read_bytes() for p in paths}) == 1
    size = int.from_bytes(paths[0].read_bytes()[:8], "little")
    header = json.loads(paths[0].read_bytes()[8 : 8 + size])
    assert list(header) == sorted(header)
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert "sha256" in header["__metadata__"]
    assert load_file(str(paths[0])).keys() == model.state_dict().keys()


def _nan_in_first_weight(tensors: dict, metadata: dict) -> None:
    key = sorted(k for k in tensors if tensors[k].is_floating_point())[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    metadata["sha256"] = payload_digest(tensors)  # a consistent file, forged whole


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda t, m: m.__setitem__("x_shape", "[1, 99999, 99999]"), "does not match"),
        (lambda t, m: m.__setitem__("x_shape", "[-1, 8, 8]"), "no valid x_shape"),
        (lambda t, m: m.__setitem__("x_shape", "[1.5]"), "no valid x_shape"),
        (_nan_in_first_weight, "NaN or Inf"),
    ],
    ids=["huge-x-shape", "negative-x-shape", "float-x-shape", "nan-weight"],
)
@pytest.mark.parametrize("command", ["eval", "sample", "encode"])
def test_a_forged_model_file_is_one_line_for_every_command(
    digits_run, tmp_path, capsys, change, words, command
):
    """An x_shape of 10^10 pixels used to allocate 16 TB before the weights were compared
    (a RuntimeError), a negative one failed in torch, and NaN weights gave NaN nats, exit 0."""
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    _rewrite(run / "model.safetensors", change)
    argv = {
        "eval": ["eval", str(run), "--k", "2"],
        "sample": ["sample", str(run), "--n", "2", "--out", str(tmp_path / "s.png")],
        "encode": ["encode", str(run), "--data", "digits", "--out", str(tmp_path / "z.npz")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "z.npz").exists()


def test_save_writes_a_run_that_load_opens_and_never_replaces_one_unasked(digits_run, tmp_path):
    """vaelab.save: a trained model (fine-tuned, say) saved on its own opens with vaelab.load
    to the same weights; an existing model is replaced only with overwrite; a model vaelab
    did not build is refused in one line."""
    model = load(digits_run)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # changed since training
    saved = save(model, tmp_path / "tuned")
    again = load(saved)
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    x = torch.rand(3, *model.x_shape).round()
    torch.manual_seed(0)
    first = model.elbo(x)
    torch.manual_seed(0)
    assert torch.equal(first, again.elbo(x))
    before = (saved / "model.safetensors").read_bytes()
    with pytest.raises(VaelabError, match="already holds a model"):
        save(load(digits_run), saved)
    assert (saved / "model.safetensors").read_bytes() == before
    save(load(digits_run), saved, overwrite=True)
    assert (saved / "model.safetensors").read_bytes() != before
    bare = VAE(model.encoder, model.decoder, model.prior, model.likelihood, model.x_shape)
    with pytest.raises(VaelabError, match="no vaelab Config"):
        save(bare, tmp_path / "bare")
    assert not (tmp_path / "bare").exists()
