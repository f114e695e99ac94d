"""The ``vaelab`` command as a user runs it: real processes, real files."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from vaelab import Config, load, train
from vaelab.cli import main
from vaelab.config import make_config, read_toml

from .conftest import GAP_PLOTS, PLOTS


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_two_epoch_cli_run_on_digits_writes_every_artefact(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--data",
        "digits",
        "--latent-dim",
        "2",
        "--epochs",
        "2",
        "--hidden",
        "128",
        "--out",
        str(out),
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert f"run written to {out}" in result.stdout
    assert f"open {out / 'report.html'}" in result.stdout
    assert "epoch" in result.stderr  # the progress report
    assert {p.name for p in out.iterdir()} == {
        "config.toml",
        "model.safetensors",
        "metrics.jsonl",
        "summary.json",
        "plots",
        "report.html",
        "manifest.json",
    }
    assert {p.name for p in (out / "plots").iterdir()} == PLOTS | GAP_PLOTS  # a 2-D run
    assert not out.with_name("run.partial").exists()

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for m in lines:
        assert m["train_elbo"] == pytest.approx(m["train_reconstruction"] - m["train_kl"])
        assert m["seconds"] > 0 and m["train_samples_per_sec"] > 0
    assert lines[1]["valid_elbo"] > lines[0]["valid_elbo"]

    config = read_toml(out / "config.toml")
    assert config["latent_dim"] == 2 and config["hidden"] == [128] and config["seed"] == 3
    # the defaults that follow the data are saved as chosen, with the reason printed
    assert config["likelihood"] == "bernoulli" and config["binarize"] == "dynamic"
    assert "grey levels in [0, 1]: Bernoulli likelihood" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["n"] == 180 and summary["test"]["elbo"] < 0

    # eval --json: one JSON object with the test ELBO, the same each time
    first = run_cli("eval", str(out), "--json", "--k", "500")
    assert first.returncode == 0, first.stderr
    scores = json.loads(first.stdout)
    assert scores["elbo"] == pytest.approx(scores["reconstruction"] - scores["kl"])
    assert scores["elbo"] == pytest.approx(summary["test"]["elbo"])
    # the importance-sampled estimate of -log p(x) is positive and no worse than -ELBO
    assert 0 < scores["nll_nats"] <= -scores["elbo"] + 3 * scores["elbo_se"]
    assert scores["k"] == 500 and 1 <= scores["ess_mean"] <= 500
    assert len(scores["kl_per_dim"]) == 2 and 0 <= scores["active_units"] <= 2
    assert sum(scores["kl_per_dim"]) == pytest.approx(scores["kl"], rel=1e-4)
    assert scores["bits_per_dim"] == pytest.approx(scores["nll_nats"] / (64 * math.log(2)))
    assert run_cli("eval", str(out), "--json", "--k", "500").stdout == first.stdout

    # sample: a PNG grid of n images from the prior
    grid = tmp_path / "grid.png"
    assert run_cli("sample", str(out), "--n", "16", "--out", str(grid)).returncode == 0
    with Image.open(grid) as img:
        assert img.size == ((4 * 9 + 1) * 4, (4 * 9 + 1) * 4)  # 4x4 tiles of 8 px + padding

    # plot: draws every plot again
    for png in (out / "plots").iterdir():
        png.unlink()
    assert run_cli("plot", str(out)).returncode == 0
    assert {p.name for p in (out / "plots").iterdir()} == PLOTS | GAP_PLOTS

    # the saved config re-runs the experiment
    rerun = run_cli("train", "--config", str(out / "config.toml"), "--out", str(tmp_path / "re"))
    assert rerun.returncode == 0, rerun.stderr
    again = [json.loads(x) for x in (tmp_path / "re" / "metrics.jsonl").read_text().splitlines()]
    assert [m["valid_elbo"] for m in again] == [m["valid_elbo"] for m in lines]


def test_same_seed_gives_the_same_numbers(tmp_path):
    def numbers(name, seed):
        run = train(
            Config(
                data="digits",
                latent_dim=3,
                epochs=2,
                hidden=[32],
                seed=seed,
                out=str(tmp_path / name),
            ),
            progress=False,
            log=lambda _: None,
        )
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in m.items() if "sec" not in k} for m in lines]

    assert numbers("a", 0) == numbers("b", 0)
    assert numbers("a2", 0) != numbers("c", 1)


def test_python_api_matches_the_cli(digits_run):
    import torch

    from vaelab import data

    model = load(digits_run)
    x = data.eval_split(data.load("digits"), "test", "dynamic")[:5]
    q = model.encode(x)
    assert q.mean.shape == (5, 2) and q.stddev.shape == (5, 2)
    assert q.rsample((10,)).shape == (10, 5, 2)
    assert q.log_prob(q.mean).shape == (5,)
    assert model.sample(3).shape == (3, 1, 8, 8)
    torch.manual_seed(0)
    elbo = model.elbo(x)
    assert elbo.shape == (5,) and torch.isfinite(elbo).all()


NEW = ["--out", "{tmp}/new"]
BAD_INPUTS = [
    (["train", "--epochs", "two", *NEW], "invalid int value"),
    (["train", "--latent-dim", "0", *NEW], "latent_dim must be > 0"),
    (["train", "--data", "no-such-data", *NEW], "neither a built-in"),
    (["train", "--data", "mnist", "--data-dir", "{tmp}/empty", *NEW], "lacks the IDX files"),
    (["train", "--arch", "conv", *NEW], "use --arch mlp"),
    (["train", "--config", "{tmp}/bad.toml", *NEW], "unknown key(s) 'latent'"),
    (["train", "--config", "{tmp}/missing.toml", *NEW], "does not exist"),
    (["train", "--hidden", "4x", *NEW], "comma-separated integers"),
    (["train", "--objective", "iwae", "--k", "0", *NEW], "k must be > 0"),
    (["train", "--objective", "vae", *NEW], "invalid choice"),
    (["train", "--out", "{tmp}/existing"], "exists; choose another --out or pass --overwrite"),
    (["train", "--out", "{tmp}/existing", "--overwrite"], "not a vaelab run"),
    (["eval", "{tmp}/nowhere"], "does not exist"),
    (["eval", "{tmp}/existing", "--k", "0"], "K is from 1 to 100000"),
    (["sample", "{tmp}/existing"], "not a vaelab run"),
    (["frobnicate"], "invalid choice"),
]


def exit_code(argv: list[str]) -> int:
    """``vaelab ARGV`` in this process: argparse exits, our commands return a code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_gives_one_clear_line_and_exit_status_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "precious.txt").write_text("keep me")
    (tmp_path / "bad.toml").write_text("latent = 3\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert exit_code([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    # nothing half-written, nothing lost
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "existing" / "precious.txt").read_text() == "keep me"


def test_a_bad_flag_from_a_real_process_is_one_line_without_traceback(tmp_path):
    result = run_cli("train", "--latent-dim", "-3", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "vaelab train: error: latent_dim must be > 0 (got -3); pass a positive value"
    )
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_overwrite_replaces_a_run_only_when_the_new_one_is_complete(tmp_path, digits_run):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(digits_run, out)
    old_weights = (out / "model.safetensors").read_bytes()
    code = main(
        [
            "train",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--latent-dim",
            "2",
            "--hidden",
            "64",
            "--seed",
            "9",
            "--out",
            str(out),
            "--overwrite",
            "--quiet",
        ]
    )
    assert code == 0
    assert (out / "model.safetensors").read_bytes() != old_weights
    assert read_toml(out / "config.toml")["seed"] == 9


def test_preset_sets_burda_architecture_and_flags_override_it(tmp_path):
    from .test_data import write_mnist_folder

    write_mnist_folder(tmp_path / "mnist", n_train=120, side=6)
    out = tmp_path / "preset"
    result = run_cli(
        "train",
        "--preset",
        "mnist-iwae",
        "--data-dir",
        str(tmp_path / "mnist"),
        "--epochs",
        "1",
        "--batch-size",
        "20",
        "--k",
        "5",
        "--iwae-grad",
        "dreg",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    config = read_toml(out / "config.toml")
    expected = {
        "data": "mnist",
        "hidden": [200, 200],
        "activation": "tanh",
        "latent_dim": 50,
        "decoder_bias": "data",
        "adam_eps": 1e-4,
        "lr_schedule": "cosine",
        "objective": "iwae",
    }
    assert {key: config[key] for key in expected} == expected
    # flags win over the preset
    assert (config["k"], config["batch_size"], config["iwae_grad"]) == (5, 20, "dreg")
    # the saved configuration re-runs the same experiment without the preset
    again = run_cli("train", "--config", str(out / "config.toml"), "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr
    assert read_toml(tmp_path / "b" / "config.toml") == {**config, "out": str(tmp_path / "b")}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "mnist-vea"], "unknown preset 'mnist-vea'; choose one of mnist-vae"),
        (["--iwae-grad", "dreg"], "--iwae-grad dreg needs --objective iwae"),
        (["--objective", "iwae", "--iwae-grad", "dreg", "--beta", "2"], "use it with --beta 1"),
        (["--minutes", "-1"], "minutes must be >= 0"),
        (["--shared-sigma"], "--shared-sigma needs --learn-sigma"),
        (["--decoder-bias", "data", "--arch", "conv"], "--decoder-bias data needs --arch mlp"),
        # options another setting reads, given without it: refused, not silently ignored
        (["--latent-dim-2", "4"], "--latent-dim-2 and --hidden-2 are for --arch hvae2"),
        (["--hidden-2", "16"], "--latent-dim-2 and --hidden-2 are for --arch hvae2"),
        (["--prior-components", "5"], "--prior-components is for --prior mog or vamp"),
        (["--logistic-components", "3"], "--logistic-components is for --likelihood logistic"),
        (["--kl-schedule", "cyclical", "--kl-warmup", "2"], "ignores --kl-warmup"),
        # a preset's warm-up is refused the same way, and the fix says how to turn it off
        (
            ["--preset", "mnist-vamp", "--kl-schedule", "cyclical", "--minutes", "0"],
            "pass --kl-warmup 0",
        ),
        (["--preset", "mnist-vamp", "--prior", "normal"], "(--prior-components 0)"),
    ],
)
def test_bad_training_options_are_one_line_and_leave_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    code = main(["train", "--data", "digits", "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err
    assert not out.exists() and not out.with_name("never.partial").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", str(2**64)], "seed"),
        (["--seed", "-1"], "seed must be >= 0"),
        (["--latent-dim", "1000000000"], "latent_dim"),
        (["--hidden", "1000000000"], "hidden"),
        (["--prior", "mog", "--prior-components", "100000000"], "prior_components"),
        (["--minutes", "1e308"], "minutes"),
        (["--image-size", "60000"], "image_size"),
        (["--k", "10000000"], "k ="),
        (["--config", "/dev/zero"], "not a regular file"),
    ],
    ids=["seed-2^64", "seed-negative", "latent-1e9", "hidden-1e9", "components-1e8",
         "minutes-1e308", "image-60000", "k-1e7", "config-dev-zero"],
)  # fmt: skip
def test_oversized_values_are_one_line_before_anything_is_written(tmp_path, capsys, args, words):
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", *args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert list(tmp_path.iterdir()) == []  # no run, no OUT.partial


def test_a_port_out_of_range_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explore", "somewhere", "--port", "99999"])
    assert exit_.value.code == 2 and "0 to 65535" in capsys.readouterr().err


# every numeric flag of the commands that open a finished run
NUMERIC_FLAGS = [
    ("eval", "--k"), ("eval", "--ais"), ("gap", "--n"), ("gap", "--steps"), ("gap", "--k"),
    ("gap", "--samples"), ("gap", "--lr"), ("gap", "--ais-steps"), ("gap", "--ais-chains"),
    ("sample", "--n"), ("sample", "--seed"), ("encode", "--samples"), ("encode", "--seed"),
    ("disentangle", "--n"), ("disentangle", "--trees"), ("disentangle", "--seed"),
    ("explore", "--port"),
]  # fmt: skip


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _usable(text: str) -> bool:
    """Whether some flag could take ``text`` (a number in some range): left out of the fuzz,
    which must only meet values every flag refuses."""
    return 0 <= _number(text) < 2**63


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flag=st.sampled_from(NUMERIC_FLAGS),
    value=st.one_of(
        st.integers(min_value=2**63).map(str),  # past any bound, past int64
        st.integers(max_value=-1).map(str),
        st.sampled_from(["1e308", "nan", "inf", "-inf", "0x10", "1_0e9", " ", ""]),
        st.text(max_size=12).filter(lambda t: not _usable(t)),
    ),
)
def test_fuzzed_numbers_for_every_command_are_one_line_at_parsing(digits_run, capsys, flag, value):
    """Oversized, negative, non-finite and non-numeric values of every numeric flag are
    refused by the parser, in one line naming the flag, before the run is opened: before
    this, eval --k 2^70 ran for ever and sample --seed 2^70 ended in a traceback."""
    command, name = flag
    assume(name != "--lr" or not 0 < _number(value) < math.inf)  # any finite lr > 0 is one
    argv = [command, str(digits_run), f"{name}={value}"]
    if command == "encode":
        argv += ["--data", "digits", "--out", str(digits_run.parent / "never.npz")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and f"argument {name}" in err[0], err
    assert not (digits_run.parent / "never.npz").exists()


def test_control_characters_in_a_path_still_make_a_valid_config_toml(tmp_path):
    config = Config(out=str(tmp_path / 'a\x01b\x7fc"d\\e\nf'), label_column="é\tz")
    path = tmp_path / "config.toml"
    path.write_text(config.to_toml())
    assert make_config(read_toml(path)) == config


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` (1-bit grey) and holds no pixels: what
    Pillow's decompression-bomb guard reads before any pixel."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_malformed_files_and_outputs_are_one_line(digits_run, tmp_path, capsys):
    """A 0-d array, a 20000 x 20000 PNG (a decompression bomb), and outputs that are folders
    or of the wrong kind: one line each, exit status 2, nothing written."""
    np.save(tmp_path / "scalar.npy", np.float32(3.0))
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    for i in range(12):
        (bombs / f"{i}.png").write_bytes(_png_header(20_000, 20_000))
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.html").mkdir()
    cases = [
        (["train", "--data", str(tmp_path / "scalar.npy")], "single number"),
        (["train", "--data", str(bombs)], "too large to read safely"),
        (["sample", str(digits_run), "--out", str(tmp_path / "folder.png")], ".png file"),
        (["sample", str(digits_run), "--out", str(tmp_path / "s.jpeg")], ".png file"),
        (["report", str(digits_run), "--out", str(tmp_path / "folder.html")], "is a folder"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, words in cases:
        out = ["--out", str(tmp_path / "run"), "--quiet"] if args[0] == "train" else []
        assert main([*args, *out]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_train_help_is_grouped_in_sections_and_every_key_shows_its_default():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    text = result.stdout
    sections = ["start:", "data:", "model:", "objective:", "optimizer and budget:", "machine:"]
    at = [text.index(f"\n{title}\n") for title in sections]
    assert at == sorted(at)  # in the README's order
    model = text[at[2] : at[3]]
    assert "--latent-dim N" in model and "--prior {" in model and "--lr" not in model
    for key in ("--batch-size", "--lr", "--seed", "--binarize", "--device", "--latent-dim"):
        entry = text[text.index(f"  {key}") :].split("\n  --")[0]
        assert "(default " in " ".join(entry.split()), entry


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["train", "--latnet-dim", "4"], "did you mean --latent-dim?"),
        (["train", "--batchsize=64"], "did you mean --batch-size?"),
        (["eval", "somewhere", "--kk", "3"], "did you mean --k?"),
        (["train", "--zzzzzz", "3"], None),
    ],
)
def test_a_misspelt_flag_gets_the_flag_it_most_likely_meant(capsys, argv, suggestion):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unrecognized arguments" in err[0]
    assert (suggestion in err[0]) if suggestion else ("did you mean" not in err[0])


def test_version_names_vaelab_and_torch(capsys):
    assert exit_code(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"vaelab {version('vaelab')} (torch {torch.__version__})"


# --- eval --save, bits per dimension, gap's memory (issue 26, items 2, 3 and 7) ------------------


def test_eval_save_writes_what_json_prints_into_the_run_and_the_report_shows_it(
    digits_run, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    page = (run / "report.html").read_text()
    # before: the report's -log p(x) cell says how to fill it (written when the run was made)
    assert f"vaelab eval {digits_run} --save" in page
    printed = run_cli("eval", str(run), "--k", "50", "--json", "--save", "--quiet")
    assert printed.returncode == 0 and printed.stderr == ""
    saved = json.loads((run / "eval.json").read_text())
    assert saved == json.loads(printed.stdout)  # the very object --json prints
    files = json.loads((run / "manifest.json").read_text())["files"]
    digest = hashlib.sha256((run / "eval.json").read_bytes()).hexdigest()
    assert files["eval.json"]["sha256"] == digest  # listed in the run's manifest
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # written atomically
    assert main(["report", str(run), "--quiet"]) == 0
    page = (run / "report.html").read_text()
    assert f"{saved['nll_nats']:.2f} ± {saved['nll_se']:.2f} (K = 50)" in page
    assert "--save" not in page
    # another split goes beside it, and the report keeps the test split's figure
    assert main(["eval", str(run), "--split", "valid", "--k", "5", "--save", "--quiet"]) == 0
    assert "written to" in capsys.readouterr().out
    assert json.loads((run / "eval-valid.json").read_text())["split"] == "valid"
    assert json.loads((run / "eval.json").read_text()) == saved


def test_bits_per_dim_only_for_a_likelihood_of_discrete_values(digits_run, tmp_path, capsys):
    config = Config(
        data="digits", likelihood="gaussian", latent_dim=3, hidden=[16], epochs=1,
        out=str(tmp_path / "gaussian"),
    )  # fmt: skip
    gaussian = train(config, progress=False, log=lambda _: None)
    for run, discrete in ((gaussian, False), (digits_run, True)):
        assert main(["eval", str(run), "--k", "10", "--json", "--quiet"]) == 0
        scores = json.loads(capsys.readouterr().out)
        assert main(["eval", str(run), "--k", "10", "--quiet"]) == 0
        table = capsys.readouterr().out
        if discrete:  # the Bernoulli of binarized digits: a code length, 64 pixels
            assert scores["bits_per_dim"] == pytest.approx(scores["nll_nats"] / (64 * math.log(2)))
            assert f"({scores['bits_per_dim']:.4f} bits/dim)" in table
        else:  # a density of grey levels: no code length
            assert scores["bits_per_dim"] is None and "bits/dim" not in table


def test_gap_shows_peak_memory_only_where_it_is_measured(digits_run, capsys):
    small = ["--n", "5", "--steps", "3", "--k", "10", "--samples", "2", "--ais-steps", "0"]
    assert main(["gap", str(digits_run), *small, "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    # on the CPU nothing measures one computation's peak: no number, rather than 0.0
    assert result["memory_amortized_mb"] is None and result["memory_local_mb"] is None
    assert main(["gap", str(digits_run), *small, "--quiet"]) == 0
    table = capsys.readouterr().out.splitlines()
    # label, seconds, peak MiB, parameters
    row = r"  (amortized \(one pass\)|per-datapoint \(Adam\)) +[\d.]+ +— +[\d,]+ .*"
    assert len([line for line in table if re.fullmatch(row, line)]) == 2, table
    assert "  (peak MiB: measured on CUDA only)" in table
