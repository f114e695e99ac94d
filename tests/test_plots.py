"""Pictures: the array-to-figure functions and a full set drawn from a trained model."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.patches import Ellipse
from PIL import Image

from vaelab import Config, plots
from vaelab.build import build_model
from vaelab.data.digits import load_digits

from .conftest import PLOTS


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
    # and the drawn figure decodes that grid
    written = plots.draw_run(model, dataset, [], tmp_path, "dynamic")
    assert tmp_path / "manifold.png" in written
