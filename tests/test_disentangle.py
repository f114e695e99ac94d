"""Disentanglement metrics on synthetic codes with known answers.

Three codes of three factors (each uniform over 4 classes): ``perfect`` is the factors,
permuted and rescaled (each code dimension is one factor: scores near the maximum); ``noise``
ignores the factors (near the minimum); ``mixed`` rotates factors 0 and 1 into two code
dimensions (z0 = v0 + v1, z1 = v0 - v1) and keeps factor 2 alone (in between).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaelab import Config, train
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.evaluate.disentangle import beta_vae_score, dci, discretize, factor_vae_score, mig, sap

SIZES = (4, 4, 4)
FAST = ("--n", "60", "--trees", "5")  # a handful of points and trees: minutes become seconds


class Factors:
    """A ground truth whose observations are the factor values themselves."""

    factor_sizes = SIZES

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(0, k, n) for k in SIZES], 1)

    def observations(self, factors):
        return np.asarray(factors, float)


def code(kind: str, seed: int = 1):
    rng = np.random.default_rng(seed)

    def representation(v):
        jitter = 0.01 * rng.standard_normal(v.shape)
        if kind == "perfect":
            return v[:, [2, 0, 1]] * np.array([3.0, -0.5, 1.0]) + jitter
        if kind == "mixed":
            return np.stack([v[:, 0] + v[:, 1], v[:, 0] - v[:, 1], v[:, 2]], 1) + jitter
        return rng.standard_normal(v.shape)

    return representation


def samples(kind: str, n: int, seed: int):
    factors = Factors().sample_factors(n, np.random.default_rng(seed))
    return code(kind, seed)(factors.astype(float)), factors


@pytest.fixture(scope="module")
def splits():
    return {
        kind: (samples(kind, 2000, 0), samples(kind, 1000, 1))
        for kind in ("perfect", "mixed", "noise")
    }


def test_discretize_uses_equal_width_bins_over_each_range():
    codes = np.array([[0.0, 5.0], [0.5, 5.0], [1.0, 6.0]])
    assert discretize(codes, bins=2).tolist() == [[1, 1], [2, 1], [2, 2]]


def test_mig_perfect_near_one_noise_near_zero_mixed_one_third(splits):
    scores = {kind: mig(*train) for kind, (train, _) in splits.items()}
    assert scores["perfect"] > 0.95
    assert scores["noise"] < 0.05
    # factors 0 and 1 each share their information equally between z0 and z1: gap ~0;
    # factor 2 alone in z2: gap ~1
    assert abs(scores["mixed"] - 1 / 3) < 0.1


def test_dci_orders_the_codes(splits):
    scores = {kind: dci(*train, *test, n_trees=10) for kind, (train, test) in splits.items()}
    assert scores["perfect"]["disentanglement"] > 0.9
    assert scores["perfect"]["completeness"] > 0.9
    assert scores["perfect"]["informativeness"] > 0.99
    assert scores["noise"]["informativeness"] < 0.4  # chance is 1/4
    # a rotation loses no information, though 10 axis-aligned trees fit its diagonal
    # boundaries less well than the perfect code's
    assert scores["mixed"]["informativeness"] > 0.85
    for key in ("disentanglement", "completeness"):
        assert scores["noise"][key] < scores["mixed"][key] < scores["perfect"][key]
        # z0, z1 split factors 0 and 1 evenly (purity 1 - log_3 2), z2 holds factor 2 alone
        expected = (2 * (1 - np.log(2) / np.log(3)) + 1) / 3
        assert abs(scores["mixed"][key] - expected) < 0.05


def test_sap_orders_the_codes(splits):
    scores = {kind: sap(*train, *test) for kind, (train, test) in splits.items()}
    assert abs(scores["noise"]) < 0.05
    # a linear SVM on one dimension separates only the outer two of 4 ordered classes well
    # (accuracy ~3/4 against ~1/4 for another dimension), so a perfect code scores ~1/2
    assert scores["perfect"] > 0.4
    assert scores["noise"] < scores["mixed"] < scores["perfect"]


def test_beta_vae_metric_perfect_noise_mixed():
    def score(kind):
        result = beta_vae_score(code(kind), Factors(), n_train=300, n_eval=300, batch_size=16)
        return result["eval_accuracy"]

    assert score("perfect") > 0.95
    assert score("noise") < 0.5  # chance is 1/3
    # fixing v0 or fixing v1 gives the same mean |dz0|, |dz1|: the two are confused, so
    # accuracy is 1/3 (v2) + 2/3 * 1/2
    assert abs(score("mixed") - 2 / 3) < 0.1


def test_factor_vae_metric_perfect_noise_mixed():
    def score(kind):
        return factor_vae_score(
            code(kind), Factors(), n_train=300, n_eval=300, batch_size=16, n_variance=1000
        )["eval_accuracy"]

    assert score("perfect") > 0.95
    assert score("noise") < 0.5
    # z0 and z1 each win half the votes of both v0 and v1: 1/3 + 2/3 * 1/2
    assert abs(score("mixed") - 2 / 3) < 0.1


def test_factor_vae_metric_prunes_a_collapsed_dimension_as_disentanglement_lib_does():
    """A dimension whose code barely moves (std 0.01 < 0.05, a dim collapsed to the prior)
    is dropped before the vote, as disentanglement_lib's prune_dims.threshold = 0.05 does;
    before, any variance above zero kept it, so it took the votes of the factor it echoed."""
    perfect = code("perfect")

    def with_collapsed(v):
        return np.concatenate([perfect(v), 0.004 * v[:, :1]], 1)  # std 0.004 * 1.1

    result = factor_vae_score(
        with_collapsed, Factors(), n_train=300, n_eval=300, batch_size=16, n_variance=1000
    )
    assert result["active_dims"] == 3
    assert result["eval_accuracy"] > 0.95


def test_mismatched_shapes_are_user_errors():
    with pytest.raises(VaelabError):
        mig(np.zeros((10, 3)), np.zeros((9, 2), int))
    with pytest.raises(VaelabError, match="at least 2"):
        mig(np.zeros((10, 1)), np.zeros((10, 2), int))


# --- vaelab disentangle on a trained run -------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """One epoch (79 steps) of a 4-D VAE on 32 x 32 shapes, trained through the public API."""
    out = tmp_path_factory.mktemp("runs") / "shapes32"
    config = Config(
        data="shapes",
        image_size=32,
        latent_dim=4,
        hidden=[64],
        epochs=1,
        batch_size=256,
        out=str(out),
    )
    return train(config, progress=False, log=lambda _: None)


def test_cli_scores_a_shapes_run_with_every_metric(shapes_run):
    assert (Path(shapes_run) / "plots" / "traversals.png").is_file()
    result = subprocess.run(
        [sys.executable, "-m", "vaelab", "disentangle", str(shapes_run), "--json", *FAST],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["n"] == 60
    keys = {"mig", "sap", "beta_vae", "factor_vae"} | {
        f"dci_{k}" for k in ("disentanglement", "completeness", "informativeness")
    }
    assert keys <= set(scores)
    assert all(0 <= scores[k] <= 1 for k in keys - {"sap"})
    assert -1 <= scores["sap"] <= 1


def test_encode_takes_shapes_at_the_runs_image_size(shapes_run, tmp_path):
    assert (
        main(["encode", str(shapes_run), "--data", "shapes", "--out", str(tmp_path / "z.npz")])
        == 0
    )
    with np.load(tmp_path / "z.npz") as z:
        assert z["loc"].shape == (24_000, 4)
        assert set(np.unique(z["y"])) == {0, 1, 2}  # labelled by shape


def test_cli_refuses_a_run_not_trained_on_shapes(tmp_path, capsys):
    (tmp_path / "config.toml").write_text(Config(data="digits").to_toml())
    assert main(["disentangle", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data shapes" in err


# --- benchmarks/traversal_axes.py: which factor each dimension carries ------------------------

ROOT = Path(__file__).resolve().parents[1]


def _axes_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import traversal_axes
    finally:
        sys.path.pop(0)
    return traversal_axes


def test_rank_correlation_and_correlation_ratio_have_their_textbook_values():
    axes = _axes_module()
    np.testing.assert_allclose(axes.ranks(np.array([3.0, 1.0, 1.0, 7.0])), [2, 0.5, 0.5, 3])
    x = np.linspace(-2, 2, 50)
    assert axes.spearman(x, np.exp(x)) == pytest.approx(1.0)  # monotone: ranks agree
    assert axes.spearman(x, -(x**3)) == pytest.approx(-1.0)
    groups = np.array([0, 0, 1, 1, 2, 2])
    assert axes.correlation_ratio(2.0 * groups, groups) == pytest.approx(1.0)
    assert axes.correlation_ratio(np.array([0.0, 1, 0, 1, 0, 1]), groups) == pytest.approx(0.0)


def test_traversal_axes_prints_a_row_per_active_dimension_and_refuses_other_data(
    shapes_run, tmp_path, monkeypatch, capsys
):
    script = str(ROOT / "benchmarks" / "traversal_axes.py")
    result = subprocess.run(
        [sys.executable, script, str(shapes_run), "--n", "200"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| z | KL | shape η | scale ρ | x ρ | y ρ |")
    assert len(lines) >= 3  # an epoch is enough for some dimension to carry information
    kls = [float(line.split("|")[2]) for line in lines[2:]]
    assert kls == sorted(kls, reverse=True) and all(kl > 0.05 for kl in kls)
    for line in lines[2:]:
        assert all(0 <= float(v) <= 1 for v in line.split("|")[3:7])  # η and |ρ|
    # refusals: in-process through the script's own main(), one line and exit 2 each
    axes = _axes_module()
    (tmp_path / "config.toml").write_text(Config(data="digits").to_toml())
    cases = (
        ([str(tmp_path)], "shapes run"),
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(shapes_run), "--n", "0"], "--n must be"),
    )
    for args, words in cases:
        monkeypatch.setattr(sys, "argv", [script, *args])
        assert axes.main() == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err
