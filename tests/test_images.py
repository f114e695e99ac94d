"""Folders of images as data: real PNG, JPEG and BMP files written with Pillow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab import VaelabError
from vaelab import data as data_mod
from vaelab.checkpoint import open_run
from vaelab.cli import main
from vaelab.config import read_toml
from vaelab.plots.figures import latent_scatter

from .conftest import PLOTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_images(folder: Path, n: int, size=(6, 6), mode="L", suffix=".png", seed=0) -> list:
    """``n`` random images; returns their pixel arrays (uint8) in file-name order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) + (() if mode == "L" else (3,))
    arrays = []
    for i in range(n):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels, mode=mode).save(folder / f"img{i:03d}{suffix}")
        arrays.append(pixels)
    return arrays


def test_flat_folder_of_grayscale_pngs_keeps_every_pixel(tmp_path):
    arrays = write_images(tmp_path / "faces", 20)
    (tmp_path / "faces" / ".DS_Store").write_bytes(b"\0junk")  # hidden files are skipped
    dataset = data_mod.load(str(tmp_path / "faces"))
    assert dataset.x_shape == (1, 6, 6)
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (16, 2, 2)
    assert dataset.train_labels is None
    everything = torch.cat([dataset.train, dataset.valid, dataset.test])
    expected = {a.astype(np.float32).tobytes() for a in arrays}
    got = {(x[0].numpy() * 255).round().astype(np.float32).tobytes() for x in everything}
    assert got == expected
    assert 0.0 <= everything.min() and everything.max() <= 1.0


def test_class_folders_become_labels_and_rgb_becomes_three_channels(tmp_path):
    write_images(tmp_path / "pets" / "cat", 8, mode="RGB", suffix=".bmp", seed=1)
    write_images(tmp_path / "pets" / "dog", 7, mode="RGB", suffix=".jpg", seed=2)
    dataset = data_mod.load(str(tmp_path / "pets"))
    assert dataset.x_shape == (3, 6, 6)
    labels = torch.cat([dataset.train_labels, dataset.valid_labels, dataset.test_labels])
    assert sorted(labels.tolist()) == [0] * 8 + [1] * 7  # sorted folder names: cat, dog
    gray = data_mod.load(str(tmp_path / "pets"), channels=1)
    assert gray.x_shape == (1, 6, 6)


def test_mixed_sizes_need_image_size_and_then_are_resized(tmp_path):
    write_images(tmp_path / "mixed", 10, size=(6, 6))
    write_images(tmp_path / "mixed", 1, size=(9, 7), seed=3)  # overwrites img000 with 9x7
    with pytest.raises(VaelabError, match=r"differ in size .*--image-size N"):
        data_mod.load(str(tmp_path / "mixed"))
    assert data_mod.load(str(tmp_path / "mixed"), image_size=8).x_shape == (1, 8, 8)


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda f: (f / "notes.txt").write_text("hi"), "notes.txt is not an image"),
        (
            lambda f: (f / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"),
            "cannot read image",
        ),
        (lambda f: (f / "sub").mkdir(), "mixes image files with class folders"),
        (lambda f: [p.unlink() for p in sorted(f.iterdir())[:5]], "at least 10 are needed"),
    ],
    ids=["text-file", "corrupt-png", "files-and-folders", "too-few"],
)
def test_bad_image_folders_give_one_clear_line_and_exit_2(tmp_path, capsys, spoil, message):
    folder = tmp_path / "imgs"
    write_images(folder, 12)
    spoil(folder)
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_an_empty_folder_is_named_as_such(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--quiet"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_train_and_eval_on_an_image_folder_from_the_command_line(tmp_path, capsys):
    write_images(tmp_path / "digits" / "a", 15, size=(8, 8), mode="RGB", seed=4)
    write_images(tmp_path / "digits" / "b", 15, size=(10, 10), mode="RGB", seed=5)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "digits"), "--channels", "1", "--image-size", "8"]
    argv += ["--epochs", "2", "--hidden", "32", "--latent-dim", "2", "--batch-size", "8"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--k", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 3 and np.isfinite(result["nll_nats"])
    assert (out / "plots" / "latent_space.png").is_file()  # coloured by the class folders


def test_folders_for_each_split_are_used_whole(tmp_path, capsys):
    for name, n in (("train", 30), ("valid", 4), ("test", 3)):
        write_images(tmp_path / name / "a", n, seed=n)
        write_images(tmp_path / name / "b", n, seed=n + 1)
    ds = data_mod.load(
        str(tmp_path / "train"),
        valid_data=str(tmp_path / "valid"),
        test_data=str(tmp_path / "test"),
    )
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (60, 8, 6)
    assert ds.test_labels.tolist() == [0, 0, 0, 1, 1, 1]
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "train"), "--valid-data", str(tmp_path / "valid")]
    args += ["--test-data", str(tmp_path / "test"), "--epochs", "1", "--batch-size", "16"]
    assert main([*args, "--hidden", "16", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["test"]["n"] == 6


def test_a_folder_of_ten_images_trains_to_a_run_with_every_plot_and_its_report(tmp_path, capsys):
    """Ten images leave one for the test split: the reconstructions, the report's active
    units and eval's all have to cope with a single example."""
    write_images(tmp_path / "ten", 10, size=(8, 8))
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "ten"), "--epochs", "1", "--batch-size", "4"]
    assert main([*argv, "--hidden", "16", "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in (out / "plots").iterdir()} == PLOTS
    assert (out / "report.html").is_file() and (out / "manifest.json").is_file()
    assert "warning" not in capsys.readouterr().out
    assert main(["eval", str(out), "--k", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 1 and result["active_units"] is None


def _config(run: Path) -> dict:
    return read_toml(run / "config.toml")


def test_colour_images_get_a_gaussian_with_a_learned_sigma_not_binarized_channels(
    tmp_path, capsys
):
    """Issue 26: a Bernoulli on each binarized channel models 8 colours, not the image."""
    write_images(tmp_path / "colour", 20, mode="RGB")
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "colour"), "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, "--hidden", "8", "--latent-dim", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vaelab: colour images: Gaussian likelihood with a learned σ" in printed
    assert printed.count("colour images") == 1
    config = _config(out)
    assert config["likelihood"] == "gaussian" and config["binarize"] == "none"
    assert config["learn_sigma"] and config["shared_sigma"]
    # grey images keep their rule: a Bernoulli on a fresh binarization each epoch
    write_images(tmp_path / "grey", 20)
    grey = tmp_path / "grey-run"
    argv[2] = str(tmp_path / "grey")
    assert main([*argv, "--hidden", "8", "--latent-dim", "2", "--out", str(grey)]) == 0
    assert "grey levels in [0, 1]: Bernoulli" in capsys.readouterr().out
    config = _config(grey)
    assert config["likelihood"] == "bernoulli" and config["binarize"] == "dynamic"
    assert not config["learn_sigma"]


def test_class_folder_names_are_kept_by_the_run_its_legend_and_encode(tmp_path, capsys):
    write_images(tmp_path / "pets" / "dog", 10, seed=1)
    write_images(tmp_path / "pets" / "cat", 10, seed=2)
    dataset = data_mod.load(str(tmp_path / "pets"))
    assert dataset.label_names == ["cat", "dog"]
    files = [f for split in ("train", "valid", "test") for f in dataset.files[split]]
    names = [f"{c}/img{i:03d}.png" for c in ("cat", "dog") for i in range(10)]
    assert sorted(files) == names
    for split in ("train", "valid", "test"):  # each file with its own label and pixels
        x, y = dataset.split(split)
        for image, label, name in zip(x, y, dataset.files[split], strict=True):
            assert name.startswith(dataset.label_names[label] + "/")
            pixels = np.asarray(Image.open(tmp_path / "pets" / name), dtype=np.float32) / 255
            np.testing.assert_array_equal(image[0].numpy(), pixels)
    legend = latent_scatter(np.zeros((4, 2)), np.array([0, 1, 1, 0]), (0, 1), ["cat", "dog"])
    assert [t.get_text() for t in legend.axes[0].get_legend().get_texts()] == ["cat", "dog"]

    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "pets"), "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, "--hidden", "8", "--latent-dim", "2", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "data.json").read_text()) == {"label_names": ["cat", "dog"]}
    assert open_run(out).data().label_names == ["cat", "dog"]
    # encode a folder holding only dogs: y = 1 as in training, its names and its files
    write_images(tmp_path / "new" / "dog", 10, seed=3)
    z = tmp_path / "z.npz"
    assert main(["encode", str(out), "--data", str(tmp_path / "new"), "--out", str(z)]) == 0
    with np.load(z) as archive:
        assert archive["y"].tolist() == [1] * 10
        assert archive["label_names"].tolist() == ["cat", "dog"]
        assert archive["files"].tolist() == [f"dog/img{i:03d}.png" for i in range(10)]
        assert archive["files"].dtype.kind == "U"  # readable without allow_pickle


def test_a_folder_of_120_images_trains_with_the_default_batch_cut_to_its_96(tmp_path, capsys):
    write_images(tmp_path / "few", 120, size=(4, 4))
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "few"), "--epochs", "1", "--hidden", "8"]
    assert main([*argv, "--latent-dim", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "--batch-size 128 is more than the 96 training examples: each step takes all 96" in (
        printed
    )
    assert _config(out)["batch_size"] == 96


def test_conv_on_an_unsupported_size_suggests_the_nearest_image_size(tmp_path, capsys):
    write_images(tmp_path / "big", 10, size=(40, 40), mode="RGB")
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "big"), "--arch", "conv", "--epochs", "1"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "these are 40x40: add --image-size 32 to resize them" in err
    assert err.count("\n") == 1 and not (tmp_path / "run.partial").exists()
    # an array cannot be resized by vaelab: the suggestion says so
    np.save(tmp_path / "big.npy", np.zeros((10, 1, 60, 60), np.float32))
    argv[2] = str(tmp_path / "big.npy")
    assert main([*argv, "--out", str(out), "--quiet"]) == 2
    assert "use --arch mlp, or resize the images to 64x64 first" in capsys.readouterr().err
    # and the suggestion works
    argv = ["train", "--data", str(tmp_path / "big"), "--arch", "conv", "--image-size", "32"]
    argv += ["--epochs", "1", "--hidden", "8", "--batch-size", "8", "--latent-dim", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert _config(out)["image_size"] == 32
