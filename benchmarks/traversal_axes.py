"""Which factor each latent dimension of a shapes run carries, and along which image axis its
traversal moves the shape: the numbers behind "single dimensions move single factors".

    python benchmarks/traversal_axes.py runs/shapes-beta4 [--n 2000] [--seed 0]

For ``--n`` images drawn from all 737,280 factor combinations, the encoder means E_q[z_d | x]
are compared with the true factors: |Spearman ρ| against scale, x and y position (ordered
factors), and the correlation ratio η against the shape (a category). Then each active
dimension (mean KL over those images above 0.05 nats) is swept from -3 to 3 around the code of
a centred, mid-sized ellipse, as in ``plots/traversals.png``, and the decoded image's centroid
is followed: Δx and Δy (fractions of the image's width and height, end minus start; Δy > 0 is
down the image), the angle
between that path and the nearest image axis (0° is a move along x or y alone, 45° a diagonal;
none for a sweep that moves the centroid less than 0.1),
and the decoded mass (expected lit pixels) at its smallest and largest. Prints one Markdown
table.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from vaelab import VaelabError, load
from vaelab.checkpoint import load_config
from vaelab.data.shapes import Shapes
from vaelab.evaluate import posterior_stats
from vaelab.plots.sweeps import traversal_codes

ACTIVE_KL = 0.05  # nats: a dimension below this carries (next to) nothing
MOVES = 0.1  # a sweep moving the centroid less than this (image widths) has no direction
CENTRE = (1, 3, 0, 16, 16)  # ellipse, scale 0.8, unrotated, at the centre (factor classes)


def ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0 .. n-1 of ``a`` ``(n,)``, ties sharing their average rank."""
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(len(a))
    _, tie, counts = np.unique(a, return_inverse=True, return_counts=True)
    return (np.bincount(tie, r) / counts)[tie]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ: Pearson's correlation of the two samples' ranks."""
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def correlation_ratio(values: np.ndarray, groups: np.ndarray) -> float:
    """η: the share of ``values``' spread explained by the group means, sqrt(SS_between /
    SS_total); 0 when every group has the same mean, 1 when each group is one value."""
    total = ((values - values.mean()) ** 2).sum()
    between = sum(
        (groups == g).sum() * (values[groups == g].mean() - values.mean()) ** 2
        for g in np.unique(groups)
    )
    return float(math.sqrt(between / total)) if total > 0 else 0.0


@torch.no_grad()
def axes_table(run, n: int, seed: int) -> list[dict]:
    config = load_config(run)
    if config.data != "shapes":
        raise VaelabError(f"{run} was trained on {config.data!r}; this needs a shapes run")
    if config.inference == "local":
        raise VaelabError(f"{run} was trained with --inference local: it has no encoder to read")
    if n < 10:
        raise VaelabError(f"--n must be at least 10 images (got {n})")
    model = load(run).eval()
    side = model.x_shape[-1]
    shapes = Shapes(side)
    factors = shapes.sample_factors(n, np.random.default_rng(seed))
    means, _, kls = posterior_stats(model, torch.from_numpy(shapes.observations(factors)))
    means, kl = means.double().numpy(), kls.double().mean(0).numpy()
    active = [int(d) for d in np.argsort(-kl) if kl[d] > ACTIVE_KL]

    centre = torch.from_numpy(shapes.observations(np.array([CENTRE])))
    loc = model.q_z(centre).mean[0]
    values = torch.linspace(-3, 3, 11)
    grid = (torch.arange(side, dtype=torch.float64) + 0.5) / side
    rows = []
    for d in active:
        z = traversal_codes(loc, [d], values)[0]  # (V, D), as plots/traversals.png sweeps
        p = model.decode(z).double().reshape(len(values), side, side)  # E[x | z], in [0, 1]
        mass = p.sum((-1, -2))
        cx = (p.sum(-2) * grid).sum(-1) / mass
        cy = (p.sum(-1) * grid).sum(-1) / mass
        dx, dy = float(cx[-1] - cx[0]), float(cy[-1] - cy[0])
        tilt = math.degrees(math.atan2(abs(dy), abs(dx)))
        moves = math.hypot(dx, dy) >= MOVES
        rows.append(
            {
                "dim": d,
                "kl": float(kl[d]),
                "shape_eta": correlation_ratio(means[:, d], factors[:, 0]),
                "scale": abs(spearman(means[:, d], factors[:, 1])),
                "x": abs(spearman(means[:, d], factors[:, 3])),
                "y": abs(spearman(means[:, d], factors[:, 4])),
                "dx": dx,
                "dy": dy,
                "off_axis_degrees": min(tilt, 90 - tilt) if moves else None,
                "mass": (float(mass.min()), float(mass.max())),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run trained with --data shapes")
    parser.add_argument("--n", type=int, default=2000, help="images to encode (2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        rows = axes_table(args.run, args.n, args.seed)
    except VaelabError as exc:
        print(f"traversal_axes: {exc}", file=sys.stderr)
        return 2
    print("| z | KL | shape η | scale ρ | x ρ | y ρ | sweep Δx | sweep Δy | off axis | mass |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        angle = "–" if r["off_axis_degrees"] is None else f"{r['off_axis_degrees']:.0f}°"
        print(
            f"| z[{r['dim']}] | {r['kl']:.2f} | {r['shape_eta']:.2f} | {r['scale']:.2f} "
            f"| {r['x']:.2f} | {r['y']:.2f} | {r['dx']:+.2f} | {r['dy']:+.2f} "
            f"| {angle} | {r['mass'][0]:.0f} to {r['mass'][1]:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
