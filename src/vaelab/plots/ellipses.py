"""q(z | x) as an ellipse: its mean and covariance, exact where the family has them and
estimated from S draws where it has not, and the axes of the ellipse a covariance draws.

    diagonal  q = N(mu, diag sigma^2):  mean mu, covariance diag sigma^2     (exact)
    full      q = N(mu, L L^T):         mean mu, covariance L L^T            (exact)
    iaf       no closed form (nor for hvae2's two layers): from S draws z_s ~ q(z | x),
              mean z_bar = (1/S) sum_s z_s,
              covariance (1/(S - 1)) sum_s (z_s - z_bar)(z_s - z_bar)^T

An IAF's ``.mean`` and ``.stddev`` are the flow linearised at mu (the delta method), not
E_q[z] and its spread, so its ellipse is drawn from draws instead. The k-sigma ellipse of a
2-D covariance C = V diag(lambda) V^T is {z : (z - m)^T C^-1 (z - m) = k^2}: semi-axes
k sqrt(lambda_i) along the eigenvectors V_i (:func:`ellipse_axes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

# draws behind an estimated ellipse: the relative standard error of an estimated standard
# deviation is about 1/sqrt(2 S), 2% here, well under a line's width on the figures
ELLIPSE_DRAWS = 1000


@dataclass(frozen=True)
class Moments:
    """The mean ``(B, D)`` and covariance ``(B, D, D)`` of q(z | x); ``draws`` = 0 when they
    are exact, else the S draws they were estimated from."""

    mean: torch.Tensor
    covariance: torch.Tensor
    draws: int

    @property
    def exact(self) -> bool:
        return self.draws == 0

    @property
    def scale(self) -> torch.Tensor:
        """The marginal standard deviations sqrt(C_dd) ``(B, D)``: the half-widths of the
        1-sigma ellipse's bounding box."""
        return self.covariance.diagonal(dim1=-2, dim2=-1).sqrt()


def exact_moments(q: Distribution) -> Moments | None:
    """q's mean and covariance in closed form when q is Gaussian (the diagonal and the full
    family), else None."""
    if isinstance(q, MultivariateNormal):  # the full family, FullNormal
        return Moments(q.mean, q.covariance_matrix, 0)
    if isinstance(q, Independent) and isinstance(q.base_dist, Normal):  # the diagonal one
        return Moments(q.mean, torch.diag_embed(q.variance), 0)
    return None


def sample_moments(samples: torch.Tensor) -> Moments:
    """The sample mean and the unbiased sample covariance (module docstring) of ``samples``
    ``(S, B, D)``, S >= 2, computed in float64 (a sum of S outer products)."""
    z = samples.double()
    mean = z.mean(0)
    centred = z - mean
    covariance = torch.einsum("sbi,sbj->bij", centred, centred) / (len(z) - 1)
    return Moments(mean.to(samples.dtype), covariance.to(samples.dtype), len(z))


def posterior_moments(q: Distribution, draws: int = ELLIPSE_DRAWS) -> Moments:
    """q(z | x)'s mean and covariance: exact for a Gaussian q, else estimated from ``draws``
    fresh draws ``q.sample((draws,))`` (torch's global generator)."""
    exact = exact_moments(q)
    if exact is not None:
        return exact
    return sample_moments(q.sample((draws,)))


def ellipse_axes(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 1-sigma ellipse of 2-D covariances ``(..., 2, 2)``: semi-axes ``(..., 2)`` and the
    angle ``(...,)`` in degrees, in (-45, 45], from the first coordinate's axis to the first
    semi-axis (counterclockwise; matplotlib's ``Ellipse(xy, 2 a, 2 b, angle=)``).

    The eigenvectors of [[a, b], [b, c]] lie at theta = atan2(2 b, a - c) / 2 and theta + 90;
    the first semi-axis is the one within 45 degrees of the first coordinate's axis, so that a
    diagonal covariance gives angle 0 and semi-axes (sqrt a, sqrt c) exactly. The variance
    along a unit vector u is u^T C u: each eigenvalue, read along its eigenvector."""
    cov = np.asarray(covariance, dtype=np.float64)
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    theta = 0.5 * np.arctan2(2 * b, a - c)  # in [-90, 90] degrees
    theta = np.where(theta > np.pi / 4, theta - np.pi / 2, theta)
    theta = np.where(theta <= -np.pi / 4, theta + np.pi / 2, theta)
    cos, sin = np.cos(theta), np.sin(theta)
    along = a * cos**2 + 2 * b * sin * cos + c * sin**2
    across = a * sin**2 - 2 * b * sin * cos + c * cos**2
    semi = np.sqrt(np.clip(np.stack([along, across], -1), 0, None))  # rounding below 0
    return semi, np.degrees(theta)
