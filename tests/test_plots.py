"""Pictures: the array-to-figure functions and a full set drawn from a trained model."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.patches import Ellipse
from matplotlib.text import Text
from PIL import Image

from vaelab import Config, open_run, plots
from vaelab.build import build_model
from vaelab.checkpoint import read_metrics
from vaelab.data.digits import load_digits

from .conftest import GAP_PLOTS, PLOTS


def test_tile_places_each_image_in_its_cell():
    images = np.arange(6 * 1 * 2 * 3, dtype=np.float32).reshape(6, 1, 2, 3)
    grid = plots.tile(images, ncols=4, pad=1)
    assert grid.shape == (2 * 3 + 1, 4 * 4 + 1, 1)
    # image 5 sits in row 1, column 1
    assert np.array_equal(grid[4:6, 5:8, 0], images[5, 0])
    assert (grid[0] == 1).all()  # padding


def test_posterior_figure_draws_two_ellipses_and_k_samples_per_image():
    rng = np.random.default_rng(0)
    m, k, j = 3, 25, 4
    fig = plots.posterior_samples(
        rng.normal(size=(100, 2)),
        rng.normal(size=(m, 2)),
        rng.uniform(0.1, 1, (m, 2)),
        rng.normal(size=(m, k, 2)),
        rng.uniform(size=(m, 1, 8, 8)),
        rng.uniform(size=(m, j, 1, 8, 8)),
        (0, 1),
    )
    overview = fig.axes[0]
    ellipses = [p for p in overview.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 2 * m
    assert sorted(round(e.width, 6) for e in ellipses[:2]) != [0, 0]
    sampled = [c for c in overview.collections][1:]  # after the background cloud
    assert [len(c.get_offsets()) for c in sampled] == [k] * m


def test_draw_run_writes_every_plot_for_a_latent_space_above_two(tmp_path):
    torch.manual_seed(0)
    dataset = load_digits()
    model = build_model(Config(likelihood="bernoulli", latent_dim=5, hidden=[32]), dataset.x_shape)
    metrics = [
        {
            "epoch": e,
            **{
                f"{s}_{k}": -float(e)
                for s in ("train", "valid")
                for k in ("elbo", "reconstruction", "kl")
            },
        }
        for e in (1, 2)
    ]
    written = plots.draw_run(model, dataset, metrics, tmp_path, "dynamic")
    assert {p.name for p in written} == PLOTS
    for path in written:
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 200


def test_save_grid_png_writes_the_pixels(tmp_path):
    images = np.zeros((4, 1, 2, 2), dtype=np.float32)
    images[3] = 1.0
    plots.save_grid_png(images, tmp_path / "g.png", ncols=2, scale=1)
    with Image.open(tmp_path / "g.png") as img:
        pixels = np.asarray(img)
    assert pixels.shape == (7, 7)
    assert (pixels[4:6, 4:6] == 255).all() and (pixels[1:3, 1:3] == 0).all()


def test_traversal_codes_sweep_one_dimension_per_row():
    loc = torch.tensor([0.5, -1.0, 2.0])
    values = torch.linspace(-3, 3, 5)
    z = plots.traversal_codes(loc, [2, 0], values)
    assert z.shape == (2, 5, 3)
    assert torch.equal(z[0, :, 2], values) and torch.equal(z[1, :, 0], values)
    assert (z[0, :, :2] == loc[:2]).all() and (z[1, :, 1:] == loc[1:]).all()


def test_traversal_figure_labels_each_row_with_its_dimension_and_kl():
    images = np.random.default_rng(0).uniform(size=(3, 11, 1, 8, 8))
    fig = plots.traversals(images, np.linspace(-3, 3, 11), [4, 0, 2], np.arange(5.0))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["z[4]  KL 4.00", "z[0]  KL 0.00", "z[2]  KL 2.00"]


def test_the_manifold_of_a_normal_prior_sweeps_its_gaussian_quantiles():
    model = build_model(Config(likelihood="bernoulli", latent_dim=2, hidden=[8]), (1, 4, 4))
    values = plots.manifold_grid(model, (0, 1))
    normal = torch.distributions.Normal(0.0, 1.0).icdf(plots.MANIFOLD_LEVELS)
    assert torch.equal(values, torch.stack([normal, normal]))


def test_the_manifold_of_a_far_mixture_prior_sweeps_where_its_mass_is(tmp_path):
    """Two components at (-8, 8) and (8, -8), sd 0.5: N(0, 1)'s quantiles, inside [-2, 2],
    would decode only the empty middle."""
    dataset = load_digits()
    config = Config(likelihood="bernoulli", latent_dim=2, hidden=[8], prior="mog",
                    prior_components=2)  # fmt: skip
    model = build_model(config, dataset.x_shape)
    with torch.no_grad():
        model.prior.loc.copy_(torch.tensor([[-8.0, 8.0], [8.0, -8.0]]))
        model.prior.log_var.fill_(math.log(0.25))
    values = plots.manifold_grid(model, (0, 1), seed=3)
    assert values.shape == (2, len(plots.MANIFOLD_LEVELS))
    assert (values.diff(dim=1) >= 0).all()
    # 3% of the mass lies below the first value and 3% above the last: 6% of one component's
    # half, so -8 - 1.55 sd = -8.78 and 8.78 (10,000 draws: off by ~0.03)
    for low, high in values[:, [0, -1]].tolist():
        assert -8.95 < low < -8.6 and 8.6 < high < 8.95
    # the grid sits on the components, half on each (1.55 sd = 0.78 around each mean)
    assert ((values.abs() - 8).abs() < 1.0).all()
    assert ((values < 0).sum(1) == len(plots.MANIFOLD_LEVELS) // 2).all()
    assert torch.equal(values, plots.manifold_grid(model, (0, 1), seed=3))  # deterministic
    state = torch.get_rng_state()
    plots.manifold_grid(model, (0, 1), seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    # and the drawn figure decodes that grid (the posterior-gap figures are not its business)
    written = plots.draw_run(model, dataset, [], tmp_path, "dynamic", gap_budget=0.0)
    assert tmp_path / "manifold.png" in written


# --- every text of every figure inside the figure, at the size it is saved ---------------

SAVED_DPI = 110  # what save_figure writes (vaelab.plots.images.figure_png)


def texts_outside(fig) -> list[str]:
    """The texts of ``fig`` drawn at least one pixel outside it, at :data:`SAVED_DPI`: every
    title, label, legend entry and tick label that the Agg renderer draws (tick labels of
    ticks outside the view limits exist as artists but are not drawn, so they are left out)."""
    fig.set_dpi(SAVED_DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    undrawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * (hi - lo)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - slack <= tick.get_loc() <= hi + slack:
                    undrawn |= {id(tick.label1), id(tick.label2)}
    box = fig.bbox
    outside = []
    for text in fig.findobj(Text):
        if id(text) in undrawn or not text.get_visible() or not text.get_text().strip():
            continue
        e = text.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
            outside.append(text.get_text())
    return outside


def two_epochs() -> list[dict]:
    keys = [f"{s}_{k}" for s in ("train", "valid") for k in ("elbo", "reconstruction", "kl")]
    return [{"epoch": e, **{key: -float(e) for key in keys}} for e in (1, 2)]


def test_no_title_or_label_of_a_long_latent_space_runs_off_its_figure():
    """40 latent dimensions: a wide KL plot, 32 rows of traversals, a manifold of the two
    largest-KL dimensions with a two-line title."""
    torch.manual_seed(0)
    dataset = load_digits()
    config = Config(likelihood="bernoulli", latent_dim=40, hidden=[32])
    model = build_model(config, dataset.x_shape)
    figures = plots.run_figures(model, dataset, two_epochs(), "dynamic")
    assert set(figures) == PLOTS
    for name, fig in figures.items():
        assert texts_outside(fig) == [], name


def test_no_title_or_label_of_a_2d_run_runs_off_its_figure(digits_run):
    """The 2-D run, where kl_per_dim.png is narrowest, with its posterior-gap figures."""
    run = open_run(digits_run)
    dataset = run.data()
    binarization = run.config.resolved_binarize
    figures = plots.run_figures(run.model, dataset, read_metrics(digits_run), binarization)
    figures |= plots.gap_figures(run.model, dataset, binarization, n=4, max_steps=20)
    assert set(figures) == PLOTS | GAP_PLOTS
    for name, fig in figures.items():
        assert texts_outside(fig) == [], name
    # a title too long for its figure is broken into lines, not cut
    assert "\n" in figures["kl_per_dim.png"].axes[0].get_title()


def drawn_tick_labels(fig, axis) -> list[str]:
    """The tick labels of ``axis`` inside its view, as drawn."""
    FigureCanvasAgg(fig).draw()
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t in axis.get_ticklabels() if lo <= t.get_position()[0] <= hi]


@pytest.mark.parametrize("d", [2, 3, 40])
def test_latent_dimensions_are_ticked_at_integers(d):
    fig = plots.kl_per_dim(np.linspace(0.5, 2, d))
    labels = drawn_tick_labels(fig, fig.axes[0].xaxis)
    assert labels and all(re.fullmatch(r"\d+", label) for label in labels), labels
    if d <= 32:  # every dimension has its tick
        assert labels == [str(i) for i in range(d)]


def test_epochs_are_ticked_at_integers():
    fig = plots.learning_curves(two_epochs())
    for ax in fig.axes:
        assert drawn_tick_labels(fig, ax.xaxis) == ["1", "2"]


def test_the_kl_plot_marks_its_threshold_and_greys_the_dimensions_below_it():
    kl = np.array([2.5, 1e-6, 0.02, 0.004, 0.0, 3.0])
    fig = plots.kl_per_dim(kl)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    [line] = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert set(line.get_ydata()) == {plots.ACTIVE_KL}
    grey = [tuple(p.get_facecolor()) == to_rgba("0.65") for p in ax.patches]
    assert grey == [False, True, False, True, True, False]
    assert "3 of 6 above 0.01 nats" in ax.get_title().replace("\n", " ")


def test_a_2d_run_gets_the_posterior_gap_figures_at_the_end_of_training(digits_run, tmp_path):
    """Trained through the public API, the 2-D run has them; a budget they would exceed
    leaves them out (the report then says how to draw them)."""
    assert PLOTS | GAP_PLOTS == {p.name for p in (digits_run / "plots").iterdir()}
    run = open_run(digits_run)
    model, dataset = run.model, run.data()
    binarization = run.config.resolved_binarize
    # the decoder 2 -> 64 -> 64 pixels: 2 * (2 * 64 + 64 * 64) multiply-adds a decoding;
    # 3 * 8 * 10 * 500 fitted z, 4 grids of 100 x 100 and 8 * 100 z for the encoder's ELBO
    decodings = 3 * 8 * 10 * 500 + 4 * 100**2 + 8 * 100
    assert plots.gap_flops(model) == 2 * (2 * 64 + 64 * 64) * decodings < plots.GAP_FLOPS
    written = plots.draw_run(model, dataset, [], tmp_path, binarization, gap_budget=0.0)
    assert {p.name for p in written} == PLOTS - {"learning_curves.png"}
    assert not set(GAP_PLOTS) & {p.name for p in tmp_path.iterdir()}
