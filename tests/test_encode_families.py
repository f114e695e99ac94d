"""What the richer families of q(z | x) give the user: ``vaelab encode``'s arrays for
``--posterior full`` (the exact L) and ``iaf`` (samples and estimates named as such), and q
drawn as an ellipse from its covariance (exact L L^T for ``full``, S draws for ``iaf``) in the
plots and the explorer, on 1-epoch 2-D digits runs."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest
import torch
from matplotlib.patches import Ellipse

from vaelab import data as data_mod
from vaelab import encode as encode_mod
from vaelab import open_run, plots
from vaelab.checkpoint import load
from vaelab.cli import main
from vaelab.core.gaussian import diagonal_normal
from vaelab.core.posteriors import full_normal
from vaelab.explore import make_server
from vaelab.explore.explorer import Explorer
from vaelab.plots.ellipses import (
    ELLIPSE_DRAWS,
    ellipse_axes,
    exact_moments,
    posterior_moments,
    sample_moments,
)

from .conftest import PLOTS


def _train(root, family: str):
    run = root / family
    args = ["train", "--data", "digits", "--posterior", family, "--epochs", "1"]
    args += ["--hidden", "32", "--latent-dim", "2", "--out", str(run), "--quiet"]
    if family == "iaf":
        args += ["--flow-steps", "2", "--flow-hidden", "24"]
    assert main(args) == 0
    return run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("families"), "full")


@pytest.fixture(scope="module")
def iaf_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("families"), "iaf")


def _digits() -> torch.Tensor:
    """The examples ``vaelab encode RUN --data digits`` reads, in its order."""
    dataset = data_mod.load("digits")
    return torch.cat([dataset.train, dataset.valid, dataset.test])


def _random_covariances(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2, 2))
    return a @ a.transpose(0, 2, 1) + 0.05 * np.eye(2)


# --- vaelab encode ---------------------------------------------------------------------------


def test_encode_full_writes_the_means_and_the_cholesky_factor_of_q(full_run, tmp_path, capsys):
    out = tmp_path / "z.npz"
    assert main(["encode", str(full_run), "--data", "digits", "--out", str(out)]) == 0
    assert "Cholesky factors L (scale_tril)" in capsys.readouterr().out
    x = _digits()
    with torch.no_grad():
        qz = load(full_run).q_z(x)
    with np.load(out) as z:
        assert set(z.files) == {"loc", "scale", "scale_tril", "y"}
        loc, scale, tril = z["loc"], z["scale"], z["scale_tril"]
    n = len(x)
    assert loc.shape == scale.shape == (n, 2) and tril.shape == (n, 2, 2)
    assert tril.dtype == np.float32
    # L: lower-triangular with a positive diagonal, and L L^T is q's covariance for these x
    assert (tril[:, 0, 1] == 0).all() and (np.diagonal(tril, axis1=1, axis2=2) > 0).all()
    assert (np.abs(tril[:, 1, 0]) > 0).mean() > 0.9  # the correlations are there
    covariance = torch.from_numpy(tril) @ torch.from_numpy(tril).transpose(1, 2)
    torch.testing.assert_close(covariance, qz.covariance_matrix, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loc, qz.mean.numpy(), atol=1e-5)
    # scale: the marginal standard deviations sqrt diag(L L^T)
    np.testing.assert_allclose(scale, np.sqrt(np.diagonal(covariance.numpy(), 0, 1, 2)), 1e-5)


def test_encode_writes_the_same_matrices_when_it_encodes_fewer_at_a_time(
    full_run, tmp_path, monkeypatch
):
    """A large D encodes fewer examples at a time (MATRIX_FLOATS); the file is the same."""
    whole, parts = tmp_path / "whole.npz", tmp_path / "parts.npz"
    assert main(["encode", str(full_run), "--data", "digits", "--out", str(whole)]) == 0
    monkeypatch.setattr(encode_mod, "MATRIX_FLOATS", 4 * 97)  # 97 examples at a time
    assert main(["encode", str(full_run), "--data", "digits", "--out", str(parts)]) == 0
    with np.load(whole) as a, np.load(parts) as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7)


def test_encode_iaf_writes_samples_and_estimates_named_as_estimates(iaf_run, tmp_path, capsys):
    out, k = tmp_path / "z.npz", 40
    args = ["encode", str(iaf_run), "--data", "digits", "--out", str(out), "--samples", str(k)]
    assert main(args) == 0
    assert f"{k} samples, and the mean and covariance estimated from them" in (
        capsys.readouterr().out
    )
    with np.load(out) as z:
        # no loc or scale: the IAF's q.mean is the flow at mu, not E_q[z]
        assert set(z.files) == {
            "samples", "mean_estimate", "mean_estimate_se", "covariance_estimate", "y"
        }  # fmt: skip
        samples, mean, se, cov = (
            z[key] for key in ("samples", "mean_estimate", "mean_estimate_se",
                               "covariance_estimate")
        )  # fmt: skip
    x = _digits()
    n = len(x)
    assert samples.shape == (n, k, 2) and mean.shape == se.shape == (n, 2)
    assert cov.shape == (n, 2, 2)
    # the estimates are those of the very samples in the file
    np.testing.assert_allclose(mean, samples.astype(np.float64).mean(1), atol=1e-5)
    expected = np.stack([np.cov(s, rowvar=False) for s in samples.astype(np.float64)])
    np.testing.assert_allclose(cov, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(se, np.sqrt(np.diagonal(expected, 0, 1, 2) / k), rtol=1e-4)
    # and the samples are q's: the mean of 4,000 fresh draws of q for the first 50 examples
    # lies within 4.5 of the written standard errors of the written mean estimate
    torch.manual_seed(1)
    with torch.no_grad():
        fresh = load(iaf_run).q_z(x[:50]).sample((4000,)).double().mean(0).numpy()
    assert (np.abs(mean[:50] - fresh) < 4.5 * se[:50] * np.sqrt(1 + k / 4000)).all()


def test_encode_refuses_what_a_richer_q_cannot_give_in_one_line(
    full_run, iaf_run, tmp_path, capsys
):
    cases = [
        ([str(full_run), "--out", str(tmp_path / "z.npy")], "Cholesky factor L", "z.npz"),
        ([str(iaf_run), "--out", str(tmp_path / "z.npz")], "no closed form", "--samples K"),
        ([str(iaf_run), "--out", str(tmp_path / "z.npz"), "--samples", "1"], "iaf", "K >= 2"),
        ([str(iaf_run), "--out", str(tmp_path / "z.npy"), "--samples", "9"], "cov", ".npz"),
    ]
    for args, problem, fix in cases:
        assert main(["encode", *args, "--data", "digits"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and problem in err[0] and fix in err[0], err
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary


# --- the ellipse helper ----------------------------------------------------------------------


def test_ellipse_axes_of_a_covariance_are_its_eigen_decomposition():
    cov = _random_covariances(200)
    semi, angle = ellipse_axes(cov)
    values, _ = np.linalg.eigh(cov)
    np.testing.assert_allclose(np.sort(semi**2, -1), values, rtol=1e-10, atol=1e-12)
    # the first semi-axis lies along an eigenvector of its own eigenvalue, within 45 degrees
    # of z[0]'s axis
    u = np.stack([np.cos(np.radians(angle)), np.sin(np.radians(angle))], -1)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", cov, u), semi[:, :1] ** 2 * u, atol=1e-10)
    assert ((-45 < angle) & (angle <= 45)).all()


def test_the_ellipse_of_a_full_q_comes_from_l_l_transpose_exactly():
    torch.manual_seed(0)
    loc, log_var = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2).double()
    lower = torch.randn(5, 1, dtype=torch.float64)
    q = full_normal(loc, log_var, lower)
    moments = posterior_moments(q)
    assert moments.exact and moments.draws == 0
    tril = q.scale_tril
    torch.testing.assert_close(moments.covariance, tril @ tril.transpose(1, 2))
    torch.testing.assert_close(moments.mean, loc)
    semi, angle = ellipse_axes(moments.covariance.numpy())
    values, vectors = np.linalg.eigh(moments.covariance.numpy())
    np.testing.assert_allclose(np.sort(semi, -1), np.sqrt(values), rtol=1e-10)
    assert (np.abs(angle) > 0).all()  # L's entry below the diagonal tilts every ellipse


def test_the_ellipse_of_a_diagonal_q_is_the_old_one():
    std = torch.tensor([[0.3, 1.7], [2.0, 0.1], [0.5, 0.5]], dtype=torch.float64)
    q = diagonal_normal(torch.zeros(3, 2, dtype=torch.float64), 2 * std.log())
    moments = exact_moments(q)
    assert moments is not None and moments.draws == 0
    semi, angle = ellipse_axes(moments.covariance.numpy())
    np.testing.assert_allclose(semi, std.numpy(), rtol=1e-12)  # width sigma_0, height sigma_1
    assert (angle == 0).all()


def test_an_iafs_moments_are_estimated_from_its_draws(iaf_run):
    model = load(iaf_run)
    x = _digits()[:3]
    torch.manual_seed(0)
    with torch.no_grad():
        qz = model.q_z(x)
        moments = posterior_moments(qz)
        assert not moments.exact and moments.draws == ELLIPSE_DRAWS
        big = sample_moments(qz.sample((20_000,)))
    # S = 1,000 draws: standard deviations within about 3 of their 2.2% standard errors
    np.testing.assert_allclose(moments.scale, big.scale, rtol=0.08)
    assert ((moments.mean - big.mean).abs() < 4 * big.scale / ELLIPSE_DRAWS**0.5).all()


# --- the plots and the explorer --------------------------------------------------------------


def _solid_ellipses(run) -> tuple[list[Ellipse], str]:
    """The 1-sigma ellipses of the run's posterior_samples figure, drawn anew, and its title."""
    opened = open_run(run)
    figures = plots.run_figures(opened.model, opened.data(), [], opened.config.resolved_binarize)
    overview = figures["posterior_samples.png"].axes[0]
    solid = [p for p in overview.patches if isinstance(p, Ellipse) and p.get_linestyle() == "-"]
    return solid, overview.get_title().replace("\n", " ")


def test_a_full_runs_plots_draw_q_from_its_covariance(full_run):
    assert {p.name for p in (full_run / "plots").glob("*.png")} >= PLOTS
    ellipses, title = _solid_ellipses(full_run)
    assert len(ellipses) == 4 and "estimated" not in title
    opened = open_run(full_run)
    x = data_mod.eval_split(opened.data(), "test", opened.config.resolved_binarize)
    with torch.no_grad():
        qz = load(full_run).q_z(x)
    means, covariances = qz.mean.numpy(), qz.covariance_matrix.numpy()
    for ellipse in ellipses:
        (i,) = np.flatnonzero((np.abs(means - ellipse.center) < 1e-6).all(1))  # its image
        semi, angle = ellipse_axes(covariances[i])
        values = np.linalg.eigvalsh(covariances[i])
        np.testing.assert_allclose(sorted(semi), np.sqrt(values), rtol=1e-5)
        np.testing.assert_allclose([ellipse.width, ellipse.height], 2 * semi, rtol=1e-6)
        assert ellipse.angle == pytest.approx(angle) and angle != 0


def test_an_iaf_runs_plots_draw_q_from_the_covariance_of_its_draws(iaf_run):
    assert {p.name for p in (iaf_run / "plots").glob("*.png")} >= PLOTS
    ellipses, title = _solid_ellipses(iaf_run)
    assert len(ellipses) == 4 and f"estimated from {ELLIPSE_DRAWS:,} draws" in title
    # a sample covariance is never exactly diagonal: the old axis-aligned ellipse had angle 0
    assert all(e.angle != 0 and e.width > 0 and e.height > 0 for e in ellipses)


def test_the_explorer_draws_q_from_its_covariance(full_run, iaf_run):
    explorer = Explorer(full_run)
    point = explorer.point(3, k=8)
    with torch.no_grad():
        qz = explorer.model.q_z(explorer.x[3:4])
    a, b = explorer.dims
    cov = qz.covariance_matrix[0][[a, b]][:, [a, b]].double().numpy()
    semi, angle = ellipse_axes(cov)
    assert point["draws"] == 0 and point["ellipse"]["angle"] == pytest.approx(angle, abs=1e-4)
    np.testing.assert_allclose(point["ellipse"]["semi_axes"], semi, rtol=1e-5)
    np.testing.assert_allclose(point["loc"], qz.mean[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(point["scale"], qz.stddev[0].numpy(), rtol=1e-5)
    assert point == explorer.point(3, k=8)  # the same draws for the same seed

    explorer = Explorer(iaf_run)
    point = explorer.point(3, k=8)
    assert point["draws"] == ELLIPSE_DRAWS and point["ellipse"]["angle"] != 0
    assert len(point["samples"]) == 8 and point == explorer.point(3, k=8)


CHROMIUM = "/usr/bin/chromium"  # as tests/test_browser.py, whose module skips as a whole


def test_the_explorer_page_turns_a_full_qs_ellipse_by_its_angle(full_run):
    """In chromium: the end of the drawn 1-sigma ellipse's first semi-axis lies on the map
    at loc + a u, u at the angle the server gave (the screen's y axis points down)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found (see tests/test_browser.py)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    server = make_server(Explorer(full_run))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("body[data-ready='1']")
            page.mouse.click(*page.evaluate("explorer.toScreen(3)"))
            page.wait_for_function("explorer.selected !== null && !explorer.animating")
            point = page.evaluate("explorer.selected")
            drawn = page.eval_on_selector(
                "#marks .sigma1",
                "e => { const p = new DOMPoint(e.cx.baseVal.value + e.rx.baseVal.value,"
                " e.cy.baseVal.value).matrixTransform(e.getScreenCTM()); return [p.x, p.y]; }",
            )
            a, b = page.evaluate("explorer.info.dims")
            (semi, _), angle = (
                point["ellipse"]["semi_axes"],
                math.radians(point["ellipse"]["angle"]),
            )
            end = [
                point["loc"][a] + semi * math.cos(angle),
                point["loc"][b] + semi * math.sin(angle),
            ]
            expected = page.evaluate("p => explorer.latentToScreen(...p)", end)
            centre = page.evaluate(
                "p => explorer.latentToScreen(...p)", [point["loc"][a], point["loc"][b]]
            )
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert point["ellipse"]["angle"] != 0 and math.dist(drawn, centre) > 50
    assert math.dist(drawn, expected) < 1.0, (drawn, expected)
