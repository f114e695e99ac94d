"""vaelab.train(config, data=...): arrays, tensors, (x, y) pairs and torch Datasets in memory,
kept in the run so that it resumes, scores and opens from its folder alone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, TensorDataset

from vaelab import Config, VaelabError, load, open_run, resume, train
from vaelab.cli import main
from vaelab.config import read_toml

SMALL = {"epochs": 2, "latent_dim": 3, "hidden": [32], "batch_size": 64}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as a user has them: uint8 images (N, 8, 8), labels (N,)."""
    bunch = load_digits()
    return (bunch.images * 255 / 16).astype(np.uint8), bunch.target


def _train(tmp_path, name, arrays, **kw):
    config = Config(out=str(tmp_path / name), **{**SMALL, **kw})
    return train(config, progress=False, log=lambda _: None, data=arrays)


def _weights(run) -> dict[str, torch.Tensor]:
    return load(run).state_dict()


def test_an_array_pair_trains_a_run_that_opens_scores_and_moves_with_its_data(tmp_path, capsys):
    x, y = _digits()
    run = _train(tmp_path, "pair", (x, y))
    config = read_toml(run / "config.toml")
    assert config["data"] == "run:data.npz"
    with np.load(run / "data.npz") as kept:  # the user's arrays, as they were
        assert np.array_equal(kept["x"], x) and np.array_equal(kept["y"], y)
    moved = shutil.move(run, tmp_path / "elsewhere")  # a run is its folder: it travels
    opened = open_run(moved)
    dataset = opened.data()
    assert dataset.x_shape == (1, 8, 8) and len(dataset.train) + len(dataset.valid) + len(
        dataset.test
    ) == len(x)
    assert set(dataset.test_labels.tolist()) <= set(range(10))
    assert main(["eval", str(moved), "--k", "5", "--quiet"]) == 0
    assert (moved / "plots" / "latent_space.png").is_file()
    # its config.toml trains again only when told where the data are
    again = ["train", "--config", str(moved / "config.toml"), "--out", str(tmp_path / "again")]
    assert main(again) == 2
    assert "give the file: --data RUN/data.npz" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()


def test_a_tensor_and_a_torch_dataset_of_the_same_examples_train_the_same_model(tmp_path):
    x, y = _digits()
    images = torch.from_numpy(x).float().div(255).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    labels = torch.from_numpy(y)
    from_tensors = _train(tmp_path, "tensors", (images, labels), epochs=1)
    from_dataset = _train(tmp_path, "dataset", TensorDataset(images, labels), epochs=1)
    a, b = _weights(from_tensors), _weights(from_dataset)
    assert all(torch.equal(a[k], b[k]) for k in a)
    unlabelled = _train(tmp_path, "bare", images, epochs=1)  # x alone: no labels
    assert open_run(unlabelled).data().test_labels is None


def test_a_run_on_data_in_memory_resumes_from_its_folder_to_the_same_weights(
    tmp_path, monkeypatch
):
    """The run is stopped (every step of epoch 2 NaN: it gives up with epoch 1's checkpoint),
    then resumed by path alone: the arrays come from the run's own data.npz."""
    x, y = _digits()
    reference = _train(tmp_path, "whole", (x, y), epochs=3)
    monkeypatch.setenv("VAELAB_FAULT_NAN", "2:")
    with pytest.raises(VaelabError):
        _train(tmp_path, "stopped", (x, y), epochs=3)
    monkeypatch.delenv("VAELAB_FAULT_NAN")
    assert (tmp_path / "stopped.partial" / "data.npz").is_file()
    resumed = resume(tmp_path / "stopped", progress=False, log=lambda _: None)
    a, b = _weights(reference), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


class Pictures(Dataset):
    """A user's dataset whose items are (x, label) pairs; ``bad`` items break the rule."""

    def __init__(self, x, y, bad=None):
        self.x, self.y, self.bad = x, y, bad

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if self.bad is not None and i == 3:
            return self.bad
        return torch.from_numpy(self.x[i]), int(self.y[i])


@pytest.mark.parametrize(
    ("data", "config", "expected"),
    [
        ([[0.0] * 4] * 20, {}, "takes a NumPy array, a torch tensor"),
        ((np.zeros((20, 4)), np.zeros(19, dtype=int)), {}, "labels y must have shape (20,)"),
        (np.zeros((5, 4)), {}, "the data given to train() holds 5 examples"),
        (np.full((20, 4), np.nan), {}, "the data given to train() contains NaN"),
        (np.zeros((20, 4)), {"data": "digits.npz"}, "give the data once"),
        ("pictures-bad-item", {}, "all be (x, y) pairs"),
        ("pictures-bad-label", {}, "label y must be one number per example"),
    ],
)
def test_bad_data_in_memory_is_one_line_and_writes_nothing(tmp_path, data, config, expected):
    x, y = _digits()
    if isinstance(data, str):  # a torch Dataset whose item 3 breaks the rule
        bad = torch.zeros(8, 8) if data.endswith("item") else (torch.zeros(8, 8), torch.zeros(3))
        data = Pictures(x, y, bad=bad)
    with pytest.raises(VaelabError) as raised:
        _train(tmp_path, "run", data, **config)
    message = str(raised.value)
    assert expected in message and "\n" not in message and "vaelab-data-" not in message
    assert list(tmp_path.iterdir()) == []
