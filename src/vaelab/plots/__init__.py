"""Pictures of a run: matplotlib functions that take arrays and return a Figure, and
:func:`draw_run`, which computes those arrays from a trained model and saves the PNGs.

Images are arrays of shape ``(N, C, H, W)`` with values in [0, 1], ``C`` = 1 or 3.

The modules, from arrays to files: ``images`` (tiling, PNG grids, an image on an axis),
``ellipses`` (q(z|x)'s mean and covariance, exact or from draws, and the axes of its
ellipse), ``figures`` (curves, reconstructions, latent space, posterior samples, KL per
dimension),
``sweeps`` (the manifold and the traversals, with the z they decode), ``run``
(:func:`run_figures`, :func:`draw_run`) and ``gap`` (the true posterior of a 2-D latent space
beside q and q*, drawn by :func:`draw_run` for 2-D runs). Every name is importable from
``vaelab.plots`` itself. Figures are built with matplotlib's object API (``Figure``), never
pyplot, so importing vaelab leaves the user's backend (a notebook's, say) as it was.
"""

from .ellipses import (
    ELLIPSE_DRAWS,
    Moments,
    ellipse_axes,
    exact_moments,
    posterior_moments,
    sample_moments,
)
from .figures import (
    ACTIVE_KL,
    KL_FLOOR,
    fit_title,
    image_grid,
    integer_ticks,
    kl_per_dim,
    latent_scatter,
    learning_curves,
    posterior_samples,
    reconstructions,
    valid_elbo_curves,
)
from .gap import (
    GAP_FLOPS,
    GAP_IMAGES,
    GAP_PLOTS,
    draw_gap,
    gap_figures,
    gap_flops,
    local_elbo_trace,
    posterior_gap,
)
from .images import figure_png, save_figure, save_grid_png, show, tile
from .run import PLOT_EXAMPLES, TRAVERSAL_DIMS, draw_run, gap_plots, run_figures
from .sweeps import (
    MANIFOLD_LEVELS,
    PRIOR_DRAWS,
    manifold,
    manifold_grid,
    traversal_codes,
    traversals,
)

__all__ = [
    "ACTIVE_KL",
    "ELLIPSE_DRAWS",
    "GAP_FLOPS",
    "GAP_IMAGES",
    "GAP_PLOTS",
    "KL_FLOOR",
    "MANIFOLD_LEVELS",
    "Moments",
    "PLOT_EXAMPLES",
    "PRIOR_DRAWS",
    "TRAVERSAL_DIMS",
    "draw_gap",
    "ellipse_axes",
    "exact_moments",
    "figure_png",
    "fit_title",
    "draw_run",
    "gap_figures",
    "gap_plots",
    "gap_flops",
    "image_grid",
    "integer_ticks",
    "kl_per_dim",
    "latent_scatter",
    "learning_curves",
    "local_elbo_trace",
    "manifold",
    "manifold_grid",
    "posterior_gap",
    "posterior_moments",
    "posterior_samples",
    "reconstructions",
    "run_figures",
    "sample_moments",
    "save_figure",
    "save_grid_png",
    "show",
    "tile",
    "traversal_codes",
    "traversals",
    "valid_elbo_curves",
]
