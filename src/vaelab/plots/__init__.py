"""Pictures of a run: matplotlib functions that take arrays and return a Figure, and
:func:`draw_run`, which computes those arrays from a trained model and saves the PNGs.

Images are arrays of shape ``(N, C, H, W)`` with values in [0, 1], ``C`` = 1 or 3.

The modules, from arrays to files: ``images`` (tiling, PNG grids, an image on an axis),
``figures`` (curves, reconstructions, latent space, posterior samples, KL per dimension),
``sweeps`` (the manifold and the traversals, with the z they decode) and ``run``
(:func:`draw_run`). Every name is importable from ``vaelab.plots`` itself.
"""

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display; set here, before any submodule

from .figures import (  # noqa: E402
    image_grid,
    kl_per_dim,
    latent_scatter,
    learning_curves,
    posterior_samples,
    reconstructions,
)
from .images import _show as _show  # noqa: E402  (gap_plots draws with it)
from .images import save_grid_png, tile  # noqa: E402
from .run import PLOT_EXAMPLES, TRAVERSAL_DIMS, draw_run  # noqa: E402
from .run import _save as _save  # noqa: E402  (gap_plots saves with it)
from .sweeps import (  # noqa: E402
    MANIFOLD_LEVELS,
    PRIOR_DRAWS,
    manifold,
    manifold_grid,
    traversal_codes,
    traversals,
)

__all__ = [
    "MANIFOLD_LEVELS",
    "PLOT_EXAMPLES",
    "PRIOR_DRAWS",
    "TRAVERSAL_DIMS",
    "draw_run",
    "image_grid",
    "kl_per_dim",
    "latent_scatter",
    "learning_curves",
    "manifold",
    "manifold_grid",
    "posterior_samples",
    "reconstructions",
    "save_grid_png",
    "tile",
    "traversal_codes",
    "traversals",
]
