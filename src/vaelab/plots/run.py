"""From a trained model to files: :func:`draw_run` computes the arrays of every picture of a
run and saves the PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import data as data_mod
from ..device import fork_rng
from ..evaluate import posterior_stats
from ..progress import Progress, silent
from .ellipses import posterior_moments
from .figures import (
    image_grid,
    kl_per_dim,
    latent_scatter,
    learning_curves,
    posterior_samples,
    reconstructions,
)
from .gap import GAP_FLOPS, draw_gap
from .images import save_figure
from .sweeps import manifold, manifold_grid, traversal_codes, traversals

PLOT_EXAMPLES = 10_000
TRAVERSAL_DIMS = 32  # rows of traversals.png; wider latent spaces show their 32 largest-KL dims


def draw_run(
    model, dataset, metrics: list[dict], plot_dir: str | Path, binarization: str, seed: int = 0,
    gap_budget: float | None = GAP_FLOPS, progress: Progress = silent,
) -> list[Path]:  # fmt: skip
    """Draw every plot of a run into ``plot_dir``; return the paths written: the figures of
    :func:`run_figures` and, when :func:`gap_plots` says so, the posterior-gap figures of
    :func:`~vaelab.plots.gap.draw_gap` if they cost at most ``gap_budget`` floating-point
    operations (:func:`~vaelab.plots.gap.gap_flops`; None: whatever they cost). A 2-D MLP on
    MNIST takes a few seconds; a large decoder is skipped, and the report says how to draw
    its figures. ``progress`` is told of
    each file saved and of the posterior-gap figures' stages."""
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    figures = run_figures(model, dataset, metrics, binarization, seed)
    with progress("plots", len(figures), "plots") as task:
        for name, fig in figures.items():
            save_figure(fig, plot_dir / name)
            written.append(plot_dir / name)
            task.update()
    if gap_plots(model):
        written += draw_gap(
            model, dataset, plot_dir, binarization, seed=seed, budget=gap_budget,
            progress=progress,
        )  # fmt: skip
    return written


def gap_plots(model) -> bool:
    """Whether a run gets the posterior-gap figures: a 2-D latent space under one diagonal
    Gaussian q(z|x) (q* is fitted in that family), whose true posterior can be normalised on
    a grid (not hvae2's two layers), and images to show beside it (a table's row is no
    picture)."""
    images = len(model.x_shape) == 3
    diagonal = getattr(getattr(model, "posterior", None), "family", "diagonal") == "diagonal"
    return images and diagonal and model.latent_dim == 2 and not hasattr(model.decoder, "d1")


@torch.no_grad()
def run_figures(
    model, dataset, metrics: list[dict], binarization: str, seed: int = 0
) -> dict[str, Figure]:
    """Every figure of a run but the posterior-gap ones, by file name.

    Latent plots use the two dimensions with the largest mean KL on the test set (the only two
    when the latent space is 2-D); the other dimensions are held at 0, the prior's mean. The
    manifold sweeps the prior's own quantiles in those two (:func:`manifold_grid`). Image
    runs also get latent traversals: each dimension by decreasing KL swept from -3 to 3, the
    others at the posterior mean of the first test example. Plots use at most the first
    :data:`PLOT_EXAMPLES` test examples. Data that are not images (tables, vectors) get the
    learning curves, the latent space and the KL per dimension.
    """
    model.eval()
    device = next(model.parameters()).device
    x_test = data_mod.eval_split(dataset, "test", binarization)[:PLOT_EXAMPLES]
    labels = None if dataset.test_labels is None else dataset.test_labels[:PLOT_EXAMPLES].numpy()
    names = dataset.label_names  # class names, when the data have them
    images = len(model.x_shape) == 3
    means, stds, kls = posterior_stats(model, x_test)
    kl_mean = kls.mean(0).numpy()
    # the dimensions the decoder reads: all, or z1 of a two-layer model (z2 acts through z1),
    # so that manifolds and traversals sweep what changes the picture
    read = getattr(model.decoder, "d1", model.latent_dim)
    by_kl = [int(d) for d in np.argsort(-kl_mean) if d < read]
    dims = tuple(by_kl[:2]) if read > 1 else (0, 0)
    dims = tuple(sorted(dims))
    figures = {}

    def save(fig, name):
        figures[name] = fig

    if metrics:
        save(learning_curves(metrics), "learning_curves.png")
    gen = torch.Generator().manual_seed(seed)
    if not images:
        if read >= 2:
            scatter = latent_scatter(means[:, dims].numpy(), labels, dims, names)
            save(scatter, "latent_space.png")
        save(kl_per_dim(kl_mean), "kl_per_dim.png")
        return figures
    with fork_rng(device):
        torch.manual_seed(seed)
        first = x_test[:12]
        recon = model.decode(model.q_z(first.to(device)).mean).cpu()
        save(reconstructions(first.numpy(), recon.numpy()), "reconstructions.png")
        samples = model.sample(64).cpu().numpy()
        save(image_grid(samples, "E[x|z] for z ~ p(z): samples from the prior"), "samples.png")

        if read >= 2:
            m2 = means[:, dims].numpy()
            save(latent_scatter(m2, labels, dims, names), "latent_space.png")
            values = manifold_grid(model, dims, seed)  # (2, n)
            n = values.shape[1]
            z = torch.zeros(n, n, model.latent_dim)
            z[:, :, dims[0]] = values[0][None, :]
            z[:, :, dims[1]] = values[1].flip(0)[:, None]
            images = model.decode(z.reshape(n * n, -1).to(device)).cpu().numpy()
            save(manifold(images, values.numpy(), dims), "manifold.png")

            picks = torch.randperm(len(x_test), generator=gen)[:4]
            qz = model.q_z(x_test[picks].to(device))
            zs = qz.sample((50,)).cpu()  # (K, M, D)
            decoded = model.decode(zs[:6].to(device)).cpu().transpose(0, 1)  # (M, 6, *x_shape)
            # exact for a Gaussian q; an IAF's from ELLIPSE_DRAWS draws of its own
            moments = posterior_moments(qz)
            pair = torch.tensor(dims)
            save(
                posterior_samples(
                    m2,
                    moments.mean.cpu()[:, pair].numpy(),
                    moments.covariance.cpu()[:, pair][:, :, pair].numpy(),
                    zs[:, :, dims].transpose(0, 1).numpy(),
                    x_test[picks].numpy(),
                    decoded.numpy(),
                    dims,
                    moments.draws,
                ),
                "posterior_samples.png",
            )
        # dimensions by decreasing KL, at most TRAVERSAL_DIMS of them, around test example 0
        order = by_kl[:TRAVERSAL_DIMS]
        values = torch.linspace(-3, 3, 11)
        z = traversal_codes(means[0], order, values)
        decoded = model.decode(z.reshape(-1, model.latent_dim).to(device)).cpu()
        decoded = decoded.reshape(len(order), len(values), *model.x_shape).numpy()
        save(traversals(decoded, values.numpy(), order, kl_mean), "traversals.png")
    save(kl_per_dim(kl_mean), "kl_per_dim.png")
    return figures
