"""Image arrays ``(N, C, H, W)`` in [0, 1] tiled into one grid, written as a PNG, or shown on a
matplotlib axis: the pieces the figures of images are built from; and a figure saved as a PNG.
Files are written atomically (:func:`vaelab.files.write_atomic`).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..files import write_atomic


def tile(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Images ``(N, C, H, W)`` -> one array ``(rows*(H+pad), ncols*(W+pad), C)``."""
    n, c, h, w = images.shape
    rows = -(-n // ncols)
    out = np.ones((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), dtype=np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = img.transpose(1, 2, 0)
    return out


def save_grid_png(
    images: np.ndarray, path: str | Path, ncols: int | None = None, scale: int = 4
) -> None:
    """Write images ``(N, C, H, W)`` in [0, 1] as one PNG grid, each pixel ``scale`` wide."""
    ncols = ncols or int(np.ceil(np.sqrt(len(images))))
    grid = (np.clip(tile(images, ncols), 0, 1) * 255).round().astype(np.uint8)
    grid = grid[..., 0] if grid.shape[-1] == 1 else grid
    img = Image.fromarray(grid)
    buffer = io.BytesIO()
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(buffer, format="png")
    write_atomic(path, buffer.getvalue())


def show(ax, image: np.ndarray) -> None:
    """One image ``(C, H, W)`` or a tiled ``(H, W, C)`` array on ``ax``, no ticks."""
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` as a PNG at 110 dpi, atomically (a reader never sees half a picture)."""
    write_atomic(path, figure_png(fig))


def figure_png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes at 110 dpi."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
