"""``shapes``: binary images of a square, an ellipse or a heart, generated from the dSprites
factors of variation (Matthey et al. 2017), one image per combination of factor values.

Factors (class index -> value), in the mixed-radix order of the index, slowest first:

======  ===========  ==========================================
shape   3 values     square, ellipse, heart
scale   6 values     0.5 ... 1 (evenly spaced)
orient  40 values    k * 2π / 40, k = 0 ... 39 (radians)
pos_x   32 values    0 ... 1 (left to right)
pos_y   32 values    0 ... 1 (top to bottom)
======  ===========  ==========================================

3 * 6 * 40 * 32 * 32 = 737,280 images. ``index = ((((s * 6 + c) * 40 + o) * 32 + x) * 32 + y)``,
as dSprites orders its array. An image is rendered on demand from its factor values (a filled
polygon drawn by Pillow, no anti-aliasing, so pixels are exactly 0 or 1), so the set never sits
in memory. As in dSprites, the square repeats itself every quarter turn and the ellipse every
half turn: orientation is only partly identifiable for them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..errors import VaelabError
from .dataset import Dataset

FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")
# for `vaelab train --data shapes`: a fixed random subset of the combinations, rendered
TRAIN_VALID_TEST = (20_000, 2_000, 2_000)
SUBSET_SEED = 0
DEFAULT_IMAGE_SIZE = 64  # dSprites' size; --image-size 32 for quick runs
# the largest shape (scale 1) reaches this fraction of the image side from its centre; the
# centre travels between EDGE and 1 - EDGE, so every shape keeps 1.6 pixels (at 32 x 32) clear
# of the border: a shape that touched it would be cut, and its position read from the cut
RADIUS = 0.18
EDGE = 0.23


def _outline(shape: int) -> np.ndarray:
    """Vertices ``(V, 2)`` of a shape at scale 1, centred, within the unit disc (y down)."""
    if shape == 0:  # square: corners at distance 1
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) / math.sqrt(2)
    t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
    if shape == 1:  # ellipse with axes 1 and 1/2
        return np.stack([np.cos(t), 0.5 * np.sin(t)], 1)
    # heart: x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t (y up, so negated)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    points = np.stack([x, y], 1)
    points -= (points.max(0) + points.min(0)) / 2  # centre the bounding box
    return points / np.linalg.norm(points, axis=1).max()


_OUTLINES = [_outline(s) for s in range(3)]


def factor_values(factors: np.ndarray) -> np.ndarray:
    """Class indices ``(..., 5)`` -> values: shape index, scale, angle (rad), x, y in [0, 1]."""
    f = np.asarray(factors)
    return np.stack(
        [
            f[..., 0].astype(float),
            0.5 + 0.1 * f[..., 1],
            f[..., 2] * (2 * math.pi / FACTOR_SIZES[2]),
            f[..., 3] / (FACTOR_SIZES[3] - 1),
            f[..., 4] / (FACTOR_SIZES[4] - 1),
        ],
        -1,
    )


def render(factors, image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """The binary image ``(image_size, image_size)`` float32 of one factor tuple ``(5,)``."""
    shape, scale, angle, px, py = (int(f) for f in factors)
    scale = (0.5 + 0.1 * scale) * RADIUS * image_size
    angle *= 2 * math.pi / FACTOR_SIZES[2]
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # pixel (i, j) covers [j, j+1) x [i, i+1); Pillow fills pixels whose centres are inside
    cx = (EDGE + (1 - 2 * EDGE) * px / (FACTOR_SIZES[3] - 1)) * image_size - 0.5
    cy = (EDGE + (1 - 2 * EDGE) * py / (FACTOR_SIZES[4] - 1)) * image_size - 0.5
    points = _OUTLINES[shape] @ np.array([[cos, sin], [-sin, cos]]) + (cx, cy)
    canvas = Image.new("L", (image_size, image_size), 0)
    ImageDraw.Draw(canvas).polygon(points.ravel().tolist(), fill=255)
    return (np.asarray(canvas) > 127).astype(np.float32)


class Shapes:
    """All 737,280 images, rendered lazily: ``shapes[i]`` is ``(1, S, S)`` float32 in {0, 1}.

    Also the ground-truth sampler the disentanglement metrics need:
    :meth:`sample_factors` and :meth:`observations`.
    """

    factor_sizes = FACTOR_SIZES
    factor_names = FACTOR_NAMES

    def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE):
        if not 16 <= image_size <= 512:
            raise VaelabError(
                f"shapes are drawn at 16 to 512 pixels a side (got {image_size}); "
                "use --image-size 64 (dSprites' size) or 32"
            )
        self.image_size = image_size

    def __len__(self) -> int:
        return math.prod(FACTOR_SIZES)

    def __getitem__(self, index: int) -> np.ndarray:
        return render(factors_of(index), self.image_size)[None]

    def observations(self, factors: np.ndarray) -> np.ndarray:
        """Factor class indices ``(N, 5)`` -> images ``(N, 1, S, S)`` float32."""
        factors = np.asarray(factors).reshape(-1, len(FACTOR_SIZES))
        out = np.empty((len(factors), 1, self.image_size, self.image_size), np.float32)
        for i, f in enumerate(factors):
            out[i, 0] = render(f, self.image_size)
        return out

    def images(self, indices) -> np.ndarray:
        """Images ``(N, 1, S, S)`` of the flat indices ``(N,)``."""
        return self.observations(factors_of(np.asarray(indices)))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor tuples ``(n, 5)``, each factor uniform over its classes."""
        return np.stack([rng.integers(0, k, n) for k in FACTOR_SIZES], 1)


def factors_of(index) -> np.ndarray:
    """Flat index (scalar or ``(N,)``) -> factor class indices ``(..., 5)``, mixed radix."""
    index = np.asarray(index, dtype=np.int64)
    if np.any(index < 0) or np.any(index >= math.prod(FACTOR_SIZES)):
        raise VaelabError(f"shapes indices run from 0 to {math.prod(FACTOR_SIZES) - 1}")
    digits = []
    for size in reversed(FACTOR_SIZES):
        index, digit = np.divmod(index, size)
        digits.append(digit)
    return np.stack(digits[::-1], -1)


def index_of(factors) -> np.ndarray:
    """Factor class indices ``(..., 5)`` -> flat index ``(...)``: the inverse of
    :func:`factors_of`."""
    factors = np.asarray(factors, dtype=np.int64)
    if factors.shape[-1] != len(FACTOR_SIZES):
        raise VaelabError(f"a shapes factor tuple has {len(FACTOR_SIZES)} entries {FACTOR_NAMES}")
    if np.any(factors < 0) or np.any(factors >= np.array(FACTOR_SIZES)):
        raise VaelabError(f"factor class indices must lie below their sizes {FACTOR_SIZES}")
    index = np.zeros(factors.shape[:-1], np.int64)
    for k, size in enumerate(FACTOR_SIZES):
        index = index * size + factors[..., k]
    return index


def load_shapes(image_size: int = 0, sizes: tuple[int, int, int] = TRAIN_VALID_TEST) -> Dataset:
    """A fixed random subset of the combinations (:data:`TRAIN_VALID_TEST`, drawn without
    replacement with :data:`SUBSET_SEED`), rendered at ``image_size`` (0: 64) into
    ``(N, 1, S, S)`` tensors; labels are the shape factor (0 square, 1 ellipse, 2 heart)."""
    shapes = Shapes(image_size or DEFAULT_IMAGE_SIZE)
    rng = np.random.default_rng(SUBSET_SEED)
    picks = rng.choice(len(shapes), size=sum(sizes), replace=False)
    parts = np.split(picks, [sizes[0], sizes[0] + sizes[1]])
    xs = [torch.from_numpy(shapes.images(p)) for p in parts]
    ys = [torch.from_numpy(factors_of(p)[:, 0]) for p in parts]
    return Dataset("shapes", *xs, *ys, label_names=list(SHAPE_NAMES))
