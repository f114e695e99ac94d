"""Pictures of a run: matplotlib functions that take arrays and return a Figure, and
:func:`draw_run`, which computes those arrays from a trained model and saves the PNGs.

Images are arrays of shape ``(N, C, H, W)`` with values in [0, 1], ``C`` = 1 or 3.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from PIL import Image  # noqa: E402

from . import data as data_mod  # noqa: E402
from .evaluate import posterior_stats  # noqa: E402
from .priors import StandardNormal  # noqa: E402


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
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)


def _show(ax, image: np.ndarray) -> None:
    """One image ``(C, H, W)`` or a tiled ``(H, W, C)`` array on ``ax``, no ticks."""
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def learning_curves(metrics: list[dict]) -> Figure:
    """ELBO, reconstruction term and KL per epoch, train and valid (nats per example)."""
    epochs = [m["epoch"] for m in metrics]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
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
        ax.set_ylabel("nats per example")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return fig


def reconstructions(inputs: np.ndarray, recons: np.ndarray) -> Figure:
    """Each column: an input (top) and its reconstruction E[x | z = mean of q(z|x)] (bottom)."""
    n = len(inputs)
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.2), layout="constrained")
    for i in range(n):
        _show(axes[0, i], inputs[i])
        _show(axes[1, i], recons[i])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("recon.")
    return fig


def image_grid(images: np.ndarray, title: str, ncols: int = 8) -> Figure:
    """A titled grid of images."""
    fig, ax = plt.subplots(
        figsize=(ncols * 0.8, (-(-len(images) // ncols)) * 0.8 + 0.4), layout="constrained"
    )
    _show(ax, tile(images, ncols))
    ax.set_title(title)
    return fig


def latent_scatter(means: np.ndarray, labels: np.ndarray | None, dims: tuple[int, int]) -> Figure:
    """Posterior means E_q[z] of test images in two latent dimensions, coloured by label."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6), layout="constrained")
    size = float(np.clip(3000 / max(len(means), 1), 2, 16))
    if labels is None:
        ax.scatter(means[:, 0], means[:, 1], s=size, alpha=0.6)
    else:
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for label in np.unique(labels):
            pick = labels == label
            ax.scatter(
                means[pick, 0],
                means[pick, 1],
                s=size,
                alpha=0.7,
                color=cmap(int(label) % cmap.N),
                label=str(label),
            )
        ax.legend(
            title="label",
            markerscale=12 / np.sqrt(size) if size < 12 else 1,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
        )
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title("posterior means of the test set")
    return fig


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
    with torch.random.fork_rng(devices=[]), torch.no_grad():
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
    fig, ax = plt.subplots(figsize=(7, 7), layout="constrained")
    _show(ax, tile(images, n))
    ax.set_title(
        f"decoded manifold at the prior's quantiles 3%..97%: z[{dims[0]}] from {a0:.2f} to "
        f"{a1:.2f} (left to right), z[{dims[1]}] from {b1:.2f} to {b0:.2f} (top to bottom)",
        fontsize=8,
    )
    return fig


def _ellipses(ax, mean, std, color, samples) -> None:
    for k, style in ((1, "-"), (2, "--")):
        ax.add_patch(
            Ellipse(mean, 2 * k * std[0], 2 * k * std[1], fill=False, ec=color, ls=style, lw=1.5)
        )
    ax.scatter(samples[:, 0], samples[:, 1], s=6, color=color)


def posterior_samples(
    background: np.ndarray,
    means: np.ndarray,
    stds: np.ndarray,
    samples: np.ndarray,
    inputs: np.ndarray,
    decodings: np.ndarray,
    dims: tuple[int, int],
) -> Figure:
    """For one x, many z. Left: q(z|x) of M test images as 1 sigma and 2 sigma ellipses with
    K sampled z over the cloud of all posterior means. Right, one row per image: the input,
    its posterior enlarged, and the decodings of its first J samples.

    ``background``: ``(N, 2)``; ``means``, ``stds``: ``(M, 2)``; ``samples``: ``(M, K, 2)``;
    ``inputs``: ``(M, C, H, W)``; ``decodings``: ``(M, J, C, H, W)``.
    """
    m, j = decodings.shape[:2]
    colors = plt.get_cmap("tab10")(np.arange(m) % 10)
    fig = plt.figure(figsize=(13, 5.5), layout="constrained")
    grid = fig.add_gridspec(m, 4 + j, width_ratios=[m * 1.5, 0.15, 1, 1] + [1] * j)
    ax = fig.add_subplot(grid[:, 0])
    ax.scatter(background[:, 0], background[:, 1], s=2, c="0.8")
    for i in range(m):
        _ellipses(ax, means[i], stds[i], colors[i], samples[i])
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title("q(z|x) of test images: 1σ (solid), 2σ (dashed), sampled z (dots)")
    for i in range(m):
        cell = fig.add_subplot(grid[i, 2])
        _show(cell, inputs[i])
        for spine in cell.spines.values():
            spine.set_edgecolor(colors[i])
            spine.set_linewidth(3)
        zoom = fig.add_subplot(grid[i, 3])
        _ellipses(zoom, means[i], stds[i], colors[i], samples[i])
        zoom.set_xlim(means[i, 0] - 3 * stds[i, 0], means[i, 0] + 3 * stds[i, 0])
        zoom.set_ylim(means[i, 1] - 3 * stds[i, 1], means[i, 1] + 3 * stds[i, 1])
        zoom.tick_params(labelsize=6)
        decoded = [fig.add_subplot(grid[i, 4 + jj]) for jj in range(j)]
        for jj, cell_ax in enumerate(decoded):
            _show(cell_ax, decodings[i, jj])
        if i == 0:
            cell.set_title("x", fontsize=9)
            zoom.set_title("q(z|x), ±3σ", fontsize=9)
            decoded[0].set_title("decodings of z ~ q(z|x)", fontsize=9, loc="left")
    return fig


def kl_per_dim(kl: np.ndarray) -> Figure:
    """Mean KL(q(z_d|x) || p(z_d)) over the test set for each latent dimension d."""
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(kl) + 2), 3.4), layout="constrained")
    ax.bar(np.arange(len(kl)), kl)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("nats")
    ax.set_title("KL per latent dimension (near 0: an inactive, collapsed dimension)")
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
    fig, ax = plt.subplots(figsize=(n * 0.7 + 1.2, rows * 0.7 + 0.5), layout="constrained")
    _show(ax, tile(images.reshape(rows * n, *images.shape[2:]), n))
    step = images.shape[3] + 1  # tile's row height: image plus one pixel of padding
    ax.set_yticks(1 + step * np.arange(rows) + step / 2)
    ax.set_yticklabels([f"z[{d}]  KL {kl[d]:.2f}" for d in dims], fontsize=7)
    title = f"each row: one z[d] from {values[0]:g} to {values[-1]:g}, the others fixed"
    ax.set_title(title, fontsize=8)
    return fig


# --- from a trained model to files -------------------------------------------------------------


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOT_EXAMPLES = 10_000
TRAVERSAL_DIMS = 32  # rows of traversals.png; wider latent spaces show their 32 largest-KL dims


@torch.no_grad()
def draw_run(
    model, dataset, metrics: list[dict], plot_dir: str | Path, binarization: str, seed: int = 0
) -> list[Path]:
    """Draw every plot of a run into ``plot_dir``; return the paths written.

    Latent plots use the two dimensions with the largest mean KL on the test set (the only two
    when the latent space is 2-D); the other dimensions are held at 0, the prior's mean. The
    manifold sweeps the prior's own quantiles in those two (:func:`manifold_grid`). Image
    runs also get latent traversals: each dimension by decreasing KL swept from -3 to 3, the
    others at the posterior mean of the first test example. Plots use at most the first
    :data:`PLOT_EXAMPLES` test examples. Data that are not images (tables, vectors) get the
    learning curves, the latent space and the KL per dimension.
    """
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    device = next(model.parameters()).device
    x_test = data_mod.eval_split(dataset, "test", binarization)[:PLOT_EXAMPLES]
    labels = None if dataset.test_labels is None else dataset.test_labels[:PLOT_EXAMPLES].numpy()
    images = len(model.x_shape) == 3
    means, stds, kls = posterior_stats(model, x_test)
    kl_mean = kls.mean(0).numpy()
    # the dimensions the decoder reads: all, or z1 of a two-layer model (z2 acts through z1),
    # so that manifolds and traversals sweep what changes the picture
    read = getattr(model.decoder, "d1", model.latent_dim)
    by_kl = [int(d) for d in np.argsort(-kl_mean) if d < read]
    dims = tuple(by_kl[:2]) if read > 1 else (0, 0)
    dims = tuple(sorted(dims))
    written = []

    def save(fig, name):
        path = plot_dir / name
        _save(fig, path)
        written.append(path)

    if metrics:
        save(learning_curves(metrics), "learning_curves.png")
    gen = torch.Generator().manual_seed(seed)
    if not images:
        if read >= 2:
            save(latent_scatter(means[:, dims].numpy(), labels, dims), "latent_space.png")
        save(kl_per_dim(kl_mean), "kl_per_dim.png")
        return written
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        first = x_test[:12]
        recon = model.decode(model.q_z(first.to(device)).mean).cpu()
        save(reconstructions(first.numpy(), recon.numpy()), "reconstructions.png")
        samples = model.sample(64).cpu().numpy()
        save(image_grid(samples, "E[x|z] for z ~ p(z): samples from the prior"), "samples.png")

        if read >= 2:
            m2 = means[:, dims].numpy()
            save(latent_scatter(m2, labels, dims), "latent_space.png")
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
            save(
                posterior_samples(
                    m2,
                    qz.mean.cpu()[:, dims].numpy(),
                    qz.stddev.cpu()[:, dims].numpy(),
                    zs[:, :, dims].transpose(0, 1).numpy(),
                    x_test[picks].numpy(),
                    decoded.numpy(),
                    dims,
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
    return written
