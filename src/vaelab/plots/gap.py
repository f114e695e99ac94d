"""Pictures of the inference gap: the true posterior of a 2-D latent space with the amortized
q(z|x) and the optimised q*(z) on top, and the per-datapoint ELBO climbing above the
encoder's. matplotlib functions take arrays and return a Figure; :func:`gap_figures` computes
the arrays from a trained model and :func:`draw_gap` saves them. They need an optimisation per
image, bounded (:data:`GAP_IMAGES` images, at most :data:`GAP_STEPS` steps, a
:data:`GAP_GRID` grid): :func:`~vaelab.plots.draw_run` draws them at the end of training for
2-D runs under one Gaussian q whose decoder makes them cost at most :data:`GAP_FLOPS`
(:func:`gap_flops`), and ``vaelab plot`` always.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from torch.utils.flop_counter import FlopCounterMode

from .. import data as data_mod
from ..core.inference import Amortized, fit_local
from ..errors import VaelabError
from ..evaluate.gap import elbo_per_example, grid_bounds, grid_posterior
from ..progress import Progress, silent
from .figures import fit_title
from .images import save_figure, show

GAP_PLOTS = ("posterior_gap.png", "local_elbo_trace.png")
GAP_IMAGES = 8  # test images q* is fitted to (the first 4 are drawn)
GAP_STEPS = 500  # at most this many Adam steps (a 2-D MNIST model converges in about as many)
GAP_GRID = 100  # p(z|x) on a GAP_GRID x GAP_GRID grid per image drawn
GAP_SAMPLES = 10  # z per image and step of the fit
# draw_run draws them when they cost at most this many floating-point operations: 5x the
# 1e11 of a 2-D MLP on MNIST (784-400-2), which took 2.6 s on one core of a busy 2-core
# machine; a decoder of 64x64 colour images costs 3-10x more and is left to `vaelab plot`
GAP_FLOPS = 5e11


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
    title = "true posterior p(z|x) (grey contours, normalised on a grid); 1σ solid, 2σ dashed"
    fig.suptitle(fit_title(title, 3.2 * m))
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
    ax.set_title(fit_title(f"per-datapoint ELBO of {n} test images", 6.5))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def draw_gap(
    model, dataset, plot_dir: str | Path, binarization: str, n: int = GAP_IMAGES,
    shown: int = 4, max_steps: int = GAP_STEPS, seed: int = 0, budget: float | None = None,
    progress: Progress = silent,
) -> list[Path]:  # fmt: skip
    """Write the figures of :func:`gap_figures` into ``plot_dir``; return their paths: none
    when :func:`gap_flops` is above ``budget`` (None: no limit). ``progress`` is told of the
    fit, the encoder's ELBO and each file saved."""
    figures = gap_figures(
        model, dataset, binarization, n, shown, max_steps, seed, budget, progress
    )
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with progress("posterior-gap plots", len(figures), "plots") as task:
        for name, fig in figures.items():
            save_figure(fig, plot_dir / name)
            written.append(plot_dir / name)
            task.update()
    return written


def gap_flops(model, n: int = GAP_IMAGES, shown: int = 4, max_steps: int = GAP_STEPS) -> float:
    """The floating-point operations of :func:`gap_figures` at most, in its decoder: one
    decoding counted by torch's ``FlopCounterMode``, times the decodings, which are
    ``n * GAP_SAMPLES`` z a step for ``max_steps`` steps, each with its backward pass (about
    twice the forward's cost), ``GAP_GRID^2`` grid points for each of ``shown`` images and
    100 z per image for the encoder's ELBO. A count, not a timing: the same answer on every
    machine, so whether a run has the figures does not depend on how busy the machine was."""
    z = torch.zeros(1, model.latent_dim, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.decode(z)
    decodings = 3 * n * GAP_SAMPLES * max_steps + shown * GAP_GRID**2 + 100 * n
    return float(counter.get_total_flops() * decodings)


def gap_figures(
    model, dataset, binarization: str, n: int = GAP_IMAGES, shown: int = 4,
    max_steps: int = GAP_STEPS, seed: int = 0, budget: float | None = None,
    progress: Progress = silent,
) -> dict[str, Figure]:  # fmt: skip
    """Fit q* to ``n`` test images (from the encoder's q, at most ``max_steps`` Adam steps);
    the first ``shown`` images' posteriors and the ELBO trace, by file name. Empty when
    :func:`gap_flops` is above ``budget`` (None: draw whatever it costs): a large decoder,
    whose fit would take minutes on a CPU. ``progress`` is told of the
    fit's steps and of the encoder's ELBO."""
    if model.latent_dim != 2:
        raise VaelabError(
            f"the posterior-gap plot needs a 2-D latent space; this run's is "
            f"{model.latent_dim}-D (train with --latent-dim 2)"
        )
    if budget is not None and gap_flops(model, n, shown, max_steps) > budget:
        return {}
    model.eval()
    x = data_mod.eval_split(dataset, "test", binarization)[:n]
    # a picture, not a measurement: 10 samples a step at learning rate 1e-2, stopping when the
    # mean over 50 steps has not improved for more than 4 windows (vaelab gap uses Cremer et
    # al.'s full protocol), so that drawing them stays quick
    fit = fit_local(
        model, x, init="encoder", lr=1e-2, samples=GAP_SAMPLES, window=50, patience=4,
        max_steps=max_steps, seed=seed, progress=progress,
    )  # fmt: skip
    amortized = elbo_per_example(
        model, x, Amortized(model), samples=100, seed=seed, progress=progress
    ).mean()
    with torch.no_grad():
        xs = x[:shown].to(next(model.parameters()).device)
        qz, star = model.q_z(xs), fit.posteriors.q_z(xs, torch.arange(len(xs)))
        lo, hi = grid_bounds([qz.mean, star.mean], [qz.stddev, star.stddev], width=4)
        z, log_density, _, _ = grid_posterior(model, xs, lo, hi, n=GAP_GRID)
    arrays = [t.cpu().numpy() for t in (qz.mean, qz.stddev, star.mean, star.stddev)]
    return {
        "posterior_gap.png": posterior_gap(
            x[:shown].numpy(), z.numpy(), log_density.exp().numpy(), *arrays
        ),
        "local_elbo_trace.png": local_elbo_trace(fit.trace.numpy(), amortized.item(), len(x)),
    }
