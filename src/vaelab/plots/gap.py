"""Pictures of the inference gap: the true posterior of a 2-D latent space with the amortized
q(z|x) and the optimised q*(z) on top, and the per-datapoint ELBO climbing above the
encoder's. matplotlib functions take arrays and return a Figure; :func:`draw_gap` computes
the arrays from a trained model. Not part of :func:`~vaelab.plots.draw_run`: these need an
optimisation per image, and are drawn by ``vaelab plot`` only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from .. import data as data_mod
from ..core.inference import Amortized, fit_local
from ..errors import VaelabError
from ..evaluate.gap import elbo_per_example, grid_bounds, grid_posterior
from .images import save_figure, show

GAP_PLOTS = ("posterior_gap.png", "local_elbo_trace.png")


def _ellipse(ax, mean, std, color, label) -> None:
    for k, style in ((1, "-"), (2, "--")):
        ax.add_patch(
            Ellipse(mean, 2 * k * std[0], 2 * k * std[1], fill=False, ec=color, ls=style, lw=1.6,
                    label=label if k == 1 else None)
        )  # fmt: skip


def posterior_gap(
    images: np.ndarray,
    z: np.ndarray,
    density: np.ndarray,
    q_loc: np.ndarray,
    q_std: np.ndarray,
    star_loc: np.ndarray,
    star_std: np.ndarray,
) -> Figure:
    """For M images: the image, then p(z|x) as filled contours with the 1 sigma (solid) and
    2 sigma (dashed) ellipses of the amortized q(z|x) and of the optimised q*(z).

    ``images``: ``(M, C, H, W)``; ``z``: ``(M, n, n, 2)`` grid; ``density``: ``(M, n, n)``
    p(z|x) on it; the locs and stds: ``(M, 2)``.
    """
    m = len(images)
    fig = Figure(figsize=(3.2 * m, 6.4), layout="constrained")
    axes = fig.subplots(2, m, height_ratios=[1, 3], squeeze=False)
    for i in range(m):
        show(axes[0, i], images[i])
        ax = axes[1, i]
        levels = np.linspace(0.02, 1, 12) * density[i].max()  # no fill where p(z|x) ~ 0
        ax.contourf(z[i, ..., 0], z[i, ..., 1], density[i], levels=levels, cmap="Greys")
        _ellipse(ax, q_loc[i], q_std[i], "tab:red", "amortized q(z|x)")
        _ellipse(ax, star_loc[i], star_std[i], "tab:blue", "optimised q*(z)")
        ax.set_xlabel("z[0]")
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    axes[1, 0].set_ylabel("z[1]")
    axes[1, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "true posterior p(z|x) (grey contours, normalised on a grid); 1σ solid, 2σ dashed"
    )
    return fig


def local_elbo_trace(trace: np.ndarray, amortized: float, n: int) -> Figure:
    """Mean ELBO of q*_i over ``n`` images against Adam steps, and the encoder's mean ELBO as
    a horizontal line: the distance between them at the end is the amortization gap."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(len(trace)), trace, lw=1, label="per-datapoint q* (Adam)")
    ax.axhline(amortized, color="tab:red", ls="--", label="amortized q(z|x)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("mean ELBO, nats per image")
    ax.set_title(f"per-datapoint ELBO of {n} test images")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def draw_gap(
    model, dataset, plot_dir: str | Path, binarization: str, n: int = 32, shown: int = 4,
    max_steps: int = 1000, seed: int = 0,
) -> list[Path]:  # fmt: skip
    """Fit q* to ``n`` test images (from the encoder's q, at most ``max_steps`` Adam steps);
    draw the first ``shown`` images' posteriors and the ELBO trace."""
    if model.latent_dim != 2:
        raise VaelabError(
            f"the posterior-gap plot needs a 2-D latent space; this run's is "
            f"{model.latent_dim}-D (train with --latent-dim 2)"
        )
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    x = data_mod.eval_split(dataset, "test", binarization)[:n]
    # a picture, not a measurement: 10 samples a step at learning rate 1e-2, stopping when the
    # mean over 50 steps has not improved for more than 4 windows (vaelab gap uses Cremer et
    # al.'s full protocol), so that `vaelab plot` stays quick
    fit = fit_local(
        model, x, init="encoder", lr=1e-2, samples=10, window=50, patience=4,
        max_steps=max_steps, seed=seed,
    )  # fmt: skip
    amortized = elbo_per_example(model, x, Amortized(model), samples=100, seed=seed).mean()
    with torch.no_grad():
        xs = x[:shown].to(next(model.parameters()).device)
        qz, star = model.q_z(xs), fit.posteriors.q_z(xs, torch.arange(len(xs)))
        lo, hi = grid_bounds([qz.mean, star.mean], [qz.stddev, star.stddev], width=4)
        z, log_density, _, _ = grid_posterior(model, xs, lo, hi, n=150)
    arrays = [t.cpu().numpy() for t in (qz.mean, qz.stddev, star.mean, star.stddev)]
    figures = {
        "posterior_gap.png": posterior_gap(
            x[:shown].numpy(), z.numpy(), log_density.exp().numpy(), *arrays
        ),
        "local_elbo_trace.png": local_elbo_trace(fit.trace.numpy(), amortized.item(), len(x)),
    }
    written = []
    for name, fig in figures.items():
        save_figure(fig, plot_dir / name)
        written.append(plot_dir / name)
    return written
