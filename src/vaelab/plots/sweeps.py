"""The figures that sweep z through the decoder: the manifold over a grid at the prior's
quantiles in two dimensions, and traversals of one dimension at a time around one code; with
the z values each one decodes.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from ..core.priors import StandardNormal
from ..device import fork_rng
from .figures import fit_title
from .images import show, tile

MANIFOLD_LEVELS = torch.linspace(0.03, 0.97, 20)  # the grid's quantile levels, per dimension
PRIOR_DRAWS = 10_000  # draws from a prior without a closed-form quantile function


def manifold_grid(model, dims: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """The z values ``(2, n)`` the manifold sweeps along ``z[dims[0]]`` and ``z[dims[1]]``:
    the quantiles of p(z)'s marginal in each dimension at :data:`MANIFOLD_LEVELS` (3% .. 97%).

    For the standard normal prior they are Phi^-1(level), the same in both dimensions. Any
    other prior (a mixture, a VampPrior, hvae2's p(z1 | z2) p(z2)) spreads its mass elsewhere,
    so they are the empirical quantiles of :data:`PRIOR_DRAWS` draws z ~ p(z), seeded by
    ``seed`` (the same picture every time; the global generator is left as it was).
    """
    if isinstance(model.prior, StandardNormal):
        values = torch.distributions.Normal(0.0, 1.0).icdf(MANIFOLD_LEVELS)
        return torch.stack([values, values])
    with fork_rng(next(model.parameters()).device), torch.no_grad():
        torch.manual_seed(seed)
        z = model.p_z().sample((PRIOR_DRAWS,)).cpu().double()  # (S, D)
    levels = MANIFOLD_LEVELS.double()
    return torch.stack([torch.quantile(z[:, d], levels) for d in dims]).float()


def manifold(images: np.ndarray, z_values: np.ndarray, dims: tuple[int, int]) -> Figure:
    """Decoder means over an n x n grid of z: column j has z[dims[0]] = ``z_values[0, j]``,
    row i has z[dims[1]] = ``z_values[1, n - 1 - i]`` (high to low); ``z_values`` ``(2, n)``,
    from :func:`manifold_grid`."""
    n = z_values.shape[1]
    (a0, a1), (b0, b1) = z_values[0, [0, -1]], z_values[1, [0, -1]]
    fig = Figure(figsize=(7, 7), layout="constrained")
    ax = fig.subplots()
    show(ax, tile(images, n))
    title = (
        f"decoded manifold at the prior's quantiles 3%..97%: z[{dims[0]}] from {a0:.2f} to "
        f"{a1:.2f} (left to right), z[{dims[1]}] from {b1:.2f} to {b0:.2f} (top to bottom)"
    )
    ax.set_title(fit_title(title, 7, 9), fontsize=9)
    return fig


def traversal_codes(loc: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Codes ``(R, V, D)`` equal to ``loc`` ``(D,)`` except z[r, v, dims[r]] = values[v]."""
    z = loc.repeat(len(dims), len(values), 1)
    for r, d in enumerate(dims):
        z[r, :, d] = values
    return z


def traversals(images: np.ndarray, values: np.ndarray, dims: list[int], kl: np.ndarray) -> Figure:
    """Latent traversals: row r decodes z with z[dims[r]] swept over ``values`` and the other
    dimensions at one test example's posterior mean. ``images``: ``(R, V, C, H, W)``."""
    rows, n = images.shape[:2]
    fig = Figure(figsize=(n * 0.7 + 1.2, rows * 0.7 + 0.5), layout="constrained")
    ax = fig.subplots()
    show(ax, tile(images.reshape(rows * n, *images.shape[2:]), n))
    # flush left against its labels: centred, constrained layout needs a second pass to place
    # an axes of fixed aspect, and savefig's one pass cut the labels by a few pixels
    ax.set_anchor("W")
    step = images.shape[3] + 1  # tile's row height: image plus one pixel of padding
    ax.set_yticks(1 + step * np.arange(rows) + step / 2)
    ax.set_yticklabels([f"z[{d}]  KL {kl[d]:.2f}" for d in dims], fontsize=7)
    title = f"each row: one z[d] from {values[0]:g} to {values[-1]:g}, the others fixed"
    ax.set_title(fit_title(title, n * 0.7 + 1.2, 8), fontsize=8)
    return fig
