"""--log tensorboard: event files beside metrics.jsonl, read back with TensorBoard's own reader."""

from __future__ import annotations

import json

import pytest

from vaelab.cli import main

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_tensorboard_holds_every_epochs_numbers_and_the_plots(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--epochs", "2", "--hidden", "32", "--latent-dim", "2"]
    assert main([*argv, "--log", "tensorboard", "--out", str(out), "--quiet"]) == 0
    events = event_accumulator.EventAccumulator(
        str(out / "tensorboard"), size_guidance={event_accumulator.IMAGES: 0}
    )
    events.Reload()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key, tag in (("train_elbo", "train/elbo"), ("valid_kl", "valid/kl"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([m[key] for m in metrics], rel=1e-6)
    images = set(events.Tags()["images"])
    assert {f"plots/{p.stem}" for p in (out / "plots").glob("*.png")} == images
    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert any(name.startswith("tensorboard/") for name in listed)


def test_without_the_flag_there_are_no_event_files(digits_run):
    assert not (digits_run / "tensorboard").exists()
