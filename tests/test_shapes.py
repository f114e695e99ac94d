"""The generated shapes data set: index <-> factors, deterministic binary rendering, loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaelab import data as data_mod
from vaelab.data.choose import is_binary
from vaelab.data.shapes import (
    FACTOR_SIZES,
    Shapes,
    factor_values,
    factors_of,
    index_of,
    load_shapes,
    render,
)
from vaelab.errors import VaelabError

N_IMAGES = 737_280


def test_size_is_the_product_of_the_dsprites_factors():
    assert math.prod(FACTOR_SIZES) == N_IMAGES == len(Shapes(32))


@given(st.integers(0, N_IMAGES - 1))
def test_index_of_inverts_factors_of(index):
    factors = factors_of(index)
    assert all(0 <= f < size for f, size in zip(factors, FACTOR_SIZES, strict=True))
    assert index_of(factors) == index


def test_mixed_radix_order_is_dsprites_order():
    # the last factor (y position) varies fastest, the shape slowest
    assert factors_of(1).tolist() == [0, 0, 0, 0, 1]
    assert factors_of(32).tolist() == [0, 0, 0, 1, 0]
    assert factors_of(N_IMAGES - 1).tolist() == [s - 1 for s in FACTOR_SIZES]
    all_factors = factors_of(np.arange(N_IMAGES))
    assert np.array_equal(index_of(all_factors), np.arange(N_IMAGES))


def test_factor_values_span_the_dsprites_ranges():
    values = factor_values([[2, 0, 0, 0, 31], [0, 5, 10, 31, 0]])
    assert np.allclose(values, [[2, 0.5, 0, 0, 1], [0, 1, math.pi / 2, 1, 0]])


def test_bad_indices_and_factors_are_user_errors():
    with pytest.raises(VaelabError):
        factors_of(N_IMAGES)
    with pytest.raises(VaelabError):
        index_of([3, 0, 0, 0, 0])
    with pytest.raises(VaelabError):
        Shapes(8)


def test_rendering_is_binary_deterministic_and_follows_the_factors():
    shapes = Shapes(64)
    image = shapes[123_456]
    assert image.shape == (1, 64, 64) and image.dtype == np.float32
    assert set(np.unique(image)) <= {0.0, 1.0}
    assert np.array_equal(image, shapes[123_456])
    # area grows with scale (square of side proportional to scale: ratio 4 from 0.5 to 1)
    small, large = (render([0, c, 0, 16, 16], 64).sum() for c in (0, 5))
    assert 3.0 < large / small < 5.0
    # moving x to the right moves the centre of mass right; y moves it down
    left, right = (render([2, 3, 0, x, 16], 64) for x in (0, 31))
    cols = np.arange(64)
    assert (right.sum(0) @ cols) / right.sum() > (left.sum(0) @ cols) / left.sum() + 20
    top, bottom = (render([2, 3, 0, 16, y], 64) for y in (0, 31))
    assert (bottom.sum(1) @ cols) / bottom.sum() > (top.sum(1) @ cols) / top.sum() + 20
    # the three shapes differ at the same scale, orientation and position
    square, ellipse, heart = (render([s, 5, 3, 16, 16], 64) for s in range(3))
    assert not np.array_equal(square, ellipse) and not np.array_equal(ellipse, heart)
    # a square looks the same after a quarter turn (10 of 40 steps), a heart does not
    assert np.abs(render([0, 5, 0, 16, 16]) - render([0, 5, 10, 16, 16])).mean() < 0.005
    assert np.abs(render([2, 5, 0, 16, 16]) - render([2, 5, 10, 16, 16])).mean() > 0.02


def test_every_shape_stays_inside_the_image():
    shapes = Shapes(32)
    corners = [[s, 5, o, x, y] for s in range(3) for o in (0, 5) for x in (0, 31) for y in (0, 31)]
    images = shapes.observations(np.array(corners))
    assert images.shape == (len(corners), 1, 32, 32)
    assert images.sum((1, 2, 3)).min() > 10
    border = np.concatenate(
        [images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1
    )
    assert border.sum() == 0


def test_load_shapes_is_a_fixed_subset_labelled_by_shape():
    dataset = load_shapes(32, sizes=(300, 50, 50))
    assert dataset.train.shape == (300, 1, 32, 32) and dataset.test.shape == (50, 1, 32, 32)
    assert set(dataset.train_labels.unique().tolist()) == {0, 1, 2}
    again = load_shapes(32, sizes=(300, 50, 50))
    assert np.array_equal(dataset.valid.numpy(), again.valid.numpy())
    assert is_binary(dataset.train)


def test_data_load_knows_shapes_and_its_fixed_split():
    dataset = data_mod.load("shapes", image_size=32)
    assert [len(s) for s in (dataset.train, dataset.valid, dataset.test)] == [20_000, 2_000, 2_000]
    assert dataset.x_shape == (1, 32, 32)
    likelihood, binarization, _ = data_mod.choose_likelihood(dataset, "auto", "auto")
    assert (likelihood, binarization) == ("bernoulli", "none")
    with pytest.raises(VaelabError, match="standard split"):
        data_mod.load("shapes", split="0.5,0.25,0.25")
