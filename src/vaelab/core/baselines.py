"""Closed forms for the linear-Gaussian latent variable model, the yardstick for estimators.

p(z) = N(0, I_D),  p(x | z) = N(W z + b, diag(sigma^2)),  p(x) = N(x ; b, W W^T + diag(sigma^2))

With one shared sigma this is probabilistic PCA (Tipping & Bishop 1999), whose maximum-
likelihood fit is itself closed form. A VAE with a linear decoder and a Gaussian likelihood is
this model, so its log p(x), posterior and ELBO are known exactly here: what the Monte Carlo
estimators in :mod:`vaelab.evaluate` and :mod:`vaelab.objectives` are tested against.

Everything is float64 on the CPU. ``weight`` is ``(P, D)`` as in ``torch.nn.Linear(D, P)``,
``bias`` is ``(P,)``, ``sigma`` the noise standard deviation: a number or ``(P,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import VaelabError


def _f64(a) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a)  # torch cannot view negative strides, e.g. x[:, ::-1]
    return torch.as_tensor(a, dtype=torch.float64).detach().cpu()


def _noise_variance(sigma, p: int) -> torch.Tensor:
    """sigma^2 as a ``(P,)`` vector."""
    return (_f64(sigma) ** 2).expand(p)


def linear_gaussian_log_px(x, weight, bias, sigma) -> torch.Tensor:
    """Exact log p(x) = log N(x ; b, W W^T + diag(sigma^2)), ``x`` ``(N, P)`` -> ``(N,)``.

    Through the Cholesky factor L of the covariance: -1/2 (P log 2 pi + 2 sum log diag L
    + |L^-1 (x - b)|^2).
    """
    x, w, b = _f64(x), _f64(weight), _f64(bias)
    p = w.shape[0]
    cov = w @ w.T + torch.diag(_noise_variance(sigma, p))
    chol = torch.linalg.cholesky(cov)
    y = torch.linalg.solve_triangular(chol, (x - b).T, upper=False)  # (P, N)
    log_det = 2 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (p * math.log(2 * math.pi) + log_det + (y**2).sum(0))


def linear_gaussian_posterior(x, weight, bias, sigma) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact posterior p(z | x) = N(loc, cov), the same covariance for every x.

    cov = M^-1 with M = I + W^T diag(sigma^-2) W;  loc = cov W^T diag(sigma^-2) (x - b).
    Returns ``loc`` ``(N, D)`` and ``cov`` ``(D, D)``. It is diagonal exactly when the columns
    of diag(sigma^-1) W are orthogonal; only then can a mean-field q(z | x) equal it.
    """
    x, w, b = _f64(x), _f64(weight), _f64(bias)
    p, d = w.shape
    w_scaled = w / _noise_variance(sigma, p)[:, None]  # diag(sigma^-2) W, (P, D)
    cov = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + w.T @ w_scaled)
    cov = 0.5 * (cov + cov.T)
    return (x - b) @ w_scaled @ cov, cov


def linear_gaussian_elbo(x, weight, bias, sigma, loc, var) -> torch.Tensor:
    """The exact ELBO for q(z | x) = N(loc, diag var), per row of ``x`` ``(N, P)`` -> ``(N,)``.

    ELBO = E_q[log p(x | z)] - KL(q || N(0, I)), with
    E_q[log p(x | z)] = -1/2 sum_p [log 2 pi sigma_p^2
                                    + ((x - W loc - b)_p^2 + (W diag(var) W^T)_pp) / sigma_p^2],
    KL = 1/2 sum_d [var_d + loc_d^2 - 1 - log var_d]. ``loc``, ``var``: ``(N, D)`` (or ``var``
    ``(D,)``). Equals log p(x) - KL(q || p(z | x)).
    """
    x, w, b, loc, var = _f64(x), _f64(weight), _f64(bias), _f64(loc), _f64(var)
    s2 = _noise_variance(sigma, w.shape[0])
    residual = x - loc @ w.T - b  # (N, P)
    spread = var @ (w**2).T  # diag(W diag(var) W^T), (N, P) or (P,)
    reconstruction = -0.5 * (torch.log(2 * math.pi * s2) + (residual**2 + spread) / s2).sum(-1)
    kl = 0.5 * (var + loc**2 - 1 - torch.log(var)).sum(-1)
    return reconstruction - kl


@dataclass(frozen=True)
class PPCA:
    """A fitted pPCA model: x = W z + b + noise, z ~ N(0, I_D), noise ~ N(0, noise_variance I).

    weight : ``(P, D)``; bias : ``(P,)``; noise_variance : sigma^2.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    noise_variance: float

    def log_prob(self, x) -> torch.Tensor:
        """log p(x) per row of ``x`` ``(N, P)`` -> ``(N,)`` float64 (nats)."""
        return linear_gaussian_log_px(x, self.weight, self.bias, math.sqrt(self.noise_variance))

    def score(self, x) -> float:
        """Mean log p(x) over the rows of ``x``, as ``sklearn.decomposition.PCA.score``."""
        return self.log_prob(x).mean().item()


def fit_ppca(x, n_latent: int, ddof: int = 0) -> PPCA:
    """The maximum-likelihood pPCA fit of ``x`` ``(N, P)`` with ``n_latent`` = D < P.

    With S the sample covariance (divisor N - ``ddof``) and eigenvalues l_1 >= ... >= l_P,
    eigenvectors U (Tipping & Bishop 1999, eqs. 7-8):
    b = mean(x),  sigma^2 = (1 / (P - D)) sum_{j > D} l_j,  W = U_D (diag(l_1..l_D) - sigma^2)^1/2
    (W is unique up to a rotation of z; this is the one with orthogonal columns).
    ``ddof=0`` is the maximum-likelihood estimate; ``ddof=1`` reproduces scikit-learn's
    ``PCA(n_components=D)`` (which divides by N - 1) when N > P.
    """
    x = _f64(x)
    if x.ndim != 2:
        raise VaelabError(f"fit_ppca takes data of shape (N, P), got {tuple(x.shape)}")
    n, p = x.shape
    if not 0 < n_latent < p:
        raise VaelabError(f"n_latent must be between 1 and P - 1 = {p - 1}, got {n_latent}")
    bias = x.mean(0)
    centred = x - bias
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / (n - ddof))
    eigenvalues = eigenvalues.flip(0).clamp(min=0.0)  # descending; clip round-off below 0
    eigenvectors = eigenvectors.flip(1)
    noise_variance = eigenvalues[n_latent:].mean()
    if noise_variance <= 0:
        raise VaelabError(
            f"the data span at most {n_latent} dimensions, so sigma^2 = 0 and p(x) is "
            "degenerate: use a smaller n_latent"
        )
    scale = torch.sqrt((eigenvalues[:n_latent] - noise_variance).clamp(min=0.0))
    weight = eigenvectors[:, :n_latent] * scale
    return PPCA(weight=weight, bias=bias, noise_variance=noise_variance.item())


ppca = fit_ppca  # vaelab.baselines.ppca(x, D), the name README uses: the closed-form pPCA fit
