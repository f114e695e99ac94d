"""The figures of a run that show data and codes as they are: learning curves,
reconstructions, grids of samples, the posterior means in two latent dimensions, q(z|x) as
ellipses with its samples and their decodings, and the KL per latent dimension. Arrays in,
Figure out.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator

from .ellipses import ellipse_axes
from .images import show, tile

ACTIVE_KL = 0.01  # nats: a dimension whose mean KL is above it is active (plot and report)
KL_FLOOR = 1e-4  # nats: the bottom of kl_per_dim's log axis; smaller KLs sit on it


def fit_title(text: str, inches: float, fontsize: float = 12.0) -> str:
    """``text`` broken at spaces into lines that fit ``inches`` at ``fontsize`` points, so that
    no title runs off its figure: a character of matplotlib's DejaVu Sans is at most about
    0.6 em wide on average over a line."""
    return textwrap.fill(text, width=max(16, int(inches * 72 / (0.6 * fontsize))))


def integer_ticks(axis, n: int | None = None) -> None:
    """Ticks only at integers on ``axis`` (epochs, latent dimensions): every one of ``0..n-1``
    when there are at most 32, else a few chosen by matplotlib."""
    if n is not None and n <= 32:
        axis.set_ticks(range(n))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))


def learning_curves(metrics: list[dict]) -> Figure:
    """ELBO, reconstruction term and KL per epoch, train and valid (nats per example)."""
    epochs = [m["epoch"] for m in metrics]
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, title in zip(
        axes,
        ("elbo", "reconstruction", "kl"),
        ("ELBO (higher is better)", "E_q[log p(x|z)]", "KL(q(z|x) || p(z))"),
        strict=True,
    ):
        ax.plot(epochs, [m[f"train_{key}"] for m in metrics], "o-", ms=3, label="train")
        ax.plot(epochs, [m[f"valid_{key}"] for m in metrics], "o-", ms=3, label="valid")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        integer_ticks(ax.xaxis)
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return fig


def valid_elbo_curves(curves: dict[str, tuple[list, list]]) -> Figure:
    """Validation ELBO per epoch of several runs on one axis: ``{name: (epochs, elbos)}``."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    for name, (epochs, elbos) in curves.items():
        ax.plot(epochs, elbos, label=name)
    ax.set_xlabel("epoch")
    integer_ticks(ax.xaxis)
    ax.set_ylabel("validation ELBO (nats)")
    ax.set_title("Validation ELBO per epoch (higher is better)")
    ax.legend()
    return fig


def reconstructions(inputs: np.ndarray, recons: np.ndarray) -> Figure:
    """Each column: an input (top) and its reconstruction E[x | z = mean of q(z|x)] (bottom)."""
    n = len(inputs)
    fig = Figure(figsize=(n * 0.9, 2.2), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)  # (2, n) even for one image
    for i in range(n):
        show(axes[0, i], inputs[i])
        show(axes[1, i], recons[i])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("recon.")
    return fig


def image_grid(images: np.ndarray, title: str, ncols: int = 8) -> Figure:
    """A titled grid of images."""
    fig = Figure(
        figsize=(ncols * 0.8, (-(-len(images) // ncols)) * 0.8 + 0.4), layout="constrained"
    )
    ax = fig.subplots()
    show(ax, tile(images, ncols))
    ax.set_title(fit_title(title, ncols * 0.8))
    return fig


def latent_scatter(
    means: np.ndarray,
    labels: np.ndarray | None,
    dims: tuple[int, int],
    label_names: list[str] | None = None,
) -> Figure:
    """Posterior means E_q[z] of test images in two latent dimensions, coloured by label;
    the legend names label i ``label_names[i]`` (a class folder, a table's label) when given."""
    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    size = float(np.clip(3000 / max(len(means), 1), 2, 16))
    if labels is None:
        ax.scatter(means[:, 0], means[:, 1], s=size, alpha=0.6)
    else:
        cmap = colormaps["tab10" if labels.max() < 10 else "tab20"]
        for label in np.unique(labels):
            pick = labels == label
            ax.scatter(
                means[pick, 0],
                means[pick, 1],
                s=size,
                alpha=0.7,
                color=cmap(int(label) % cmap.N),
                label=_label_name(int(label), label_names),
            )
        ax.legend(
            title="class" if label_names else "label",
            markerscale=12 / np.sqrt(size) if size < 12 else 1,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
        )
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title("posterior means of the test set")
    return fig


def _label_name(label: int, names: list[str] | None) -> str:
    return names[label] if names and 0 <= label < len(names) else str(label)


def _ellipses(ax, mean, covariance, color, samples) -> None:
    """q's 1 and 2 sigma ellipses from its 2 x 2 ``covariance`` (:func:`ellipse_axes`),
    and its draws ``(K, 2)``."""
    semi, angle = ellipse_axes(covariance)
    for k, style in ((1, "-"), (2, "--")):
        ax.add_patch(
            Ellipse(
                mean, 2 * k * semi[0], 2 * k * semi[1], angle=angle,
                fill=False, ec=color, ls=style, lw=1.5,
            )
        )  # fmt: skip
    ax.scatter(samples[:, 0], samples[:, 1], s=6, color=color)


def posterior_samples(
    background: np.ndarray,
    means: np.ndarray,
    covariances: np.ndarray,
    samples: np.ndarray,
    inputs: np.ndarray,
    decodings: np.ndarray,
    dims: tuple[int, int],
    draws: int = 0,
) -> Figure:
    """For one x, many z. Left: q(z|x) of M test images as 1 sigma and 2 sigma ellipses with
    K sampled z over the cloud of all posterior means. Right, one row per image: the input,
    its posterior enlarged, and the decodings of its first J samples.

    ``background``: ``(N, 2)``; ``means``: ``(M, 2)``; ``covariances``: ``(M, 2, 2)``, q's
    covariance in the two dimensions (:func:`~vaelab.plots.ellipses.posterior_moments`), or
    ``(M, 2)`` standard deviations of a diagonal q; ``samples``: ``(M, K, 2)``; ``inputs``:
    ``(M, C, H, W)``; ``decodings``: ``(M, J, C, H, W)``. ``draws``: 0 when the means and
    covariances are exact, else the S draws they were estimated from (the title says so).
    """
    covariances = np.asarray(covariances)
    if covariances.ndim == 2:  # standard deviations: the covariance diag(std^2)
        covariances = covariances[:, :, None] ** 2 * np.eye(2)
    stds = np.sqrt(np.diagonal(covariances, axis1=1, axis2=2))  # the ellipses' bounding boxes
    m, j = decodings.shape[:2]
    colors = colormaps["tab10"](np.arange(m) % 10)
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    grid = fig.add_gridspec(m, 4 + j, width_ratios=[m * 1.5, 0.15, 1, 1] + [1] * j)
    ax = fig.add_subplot(grid[:, 0])
    ax.scatter(background[:, 0], background[:, 1], s=2, c="0.8")
    for i in range(m):
        _ellipses(ax, means[i], covariances[i], colors[i], samples[i])
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    title = "q(z|x) of test images: 1σ (solid), 2σ (dashed), sampled z (dots)"
    if draws:
        title += f"; mean and ellipses estimated from {draws:,} draws"
    ax.set_title(fit_title(title, 13 * m * 1.5 / (m * 1.5 + 2.15 + j)))  # the column's width
    for i in range(m):
        cell = fig.add_subplot(grid[i, 2])
        show(cell, inputs[i])
        for spine in cell.spines.values():
            spine.set_edgecolor(colors[i])
            spine.set_linewidth(3)
        zoom = fig.add_subplot(grid[i, 3])
        _ellipses(zoom, means[i], covariances[i], colors[i], samples[i])
        zoom.set_xlim(means[i, 0] - 3 * stds[i, 0], means[i, 0] + 3 * stds[i, 0])
        zoom.set_ylim(means[i, 1] - 3 * stds[i, 1], means[i, 1] + 3 * stds[i, 1])
        zoom.tick_params(labelsize=6)
        decoded = [fig.add_subplot(grid[i, 4 + jj]) for jj in range(j)]
        for jj, cell_ax in enumerate(decoded):
            show(cell_ax, decodings[i, jj])
        if i == 0:
            cell.set_title("x", fontsize=9)
            zoom.set_title("q(z|x), ±3σ", fontsize=9)
            decoded[0].set_title("decodings of z ~ q(z|x)", fontsize=9, loc="left")
    return fig


def kl_per_dim(kl: np.ndarray, threshold: float = ACTIVE_KL) -> Figure:
    """Mean KL(q(z_d|x) || p(z_d)) over the test set for each latent dimension d, ``kl``
    ``(D,)``, on a log axis: the dimensions above ``threshold`` nats (the dashed line) are
    counted active and coloured, the others grey. A log axis, because a dimension of 0.05 nats
    beside one of 10 looks collapsed on a linear one, yet it is not."""
    d = len(kl)
    active = kl > threshold
    width = max(5.0, 0.35 * d + 2)
    fig = Figure(figsize=(width, 3.6), layout="constrained")
    ax = fig.subplots()
    shown = np.maximum(kl, KL_FLOOR)  # a collapsed dimension, or a Monte Carlo KL below 0
    ax.bar(
        np.arange(d), shown - KL_FLOOR, bottom=KL_FLOOR,
        color=np.where(active, "tab:blue", "0.65"),
    )  # fmt: skip
    ax.axhline(threshold, color="k", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(KL_FLOOR, max(shown.max(), threshold) * 3)
    integer_ticks(ax.xaxis, d)
    if d > 16:
        ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("mean KL, nats (log scale)")
    title = (
        f"KL per latent dimension: {int(active.sum())} of {d} above {threshold:g} nats (dashed "
        "line); grey bars are inactive, collapsed dimensions"
    )
    ax.set_title(fit_title(title, width, 10), fontsize=10)
    return fig
