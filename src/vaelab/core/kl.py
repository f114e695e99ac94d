"""KL(q(z | x) || p(z)): per example, per latent dimension, and a mixture prior's marginals.

``kl_term`` gives KL per example ``(B,)``: the closed form for two diagonal Gaussians
``Independent(Normal, 1)`` over ``(D,)``,

    KL = sum_d 1/2 (r_d + t_d - 1 - log r_d),  r = sigma_q^2 / sigma_p^2,
                                                t = (mu_q - mu_p)^2 / sigma_p^2

the closed form for a full-covariance Gaussian q = N(mu, L L^T) against a diagonal one,
torch's ``kl_divergence`` where it knows the pair, else the Monte Carlo mean of
log q(z) - log p(z) over samples ``z`` ``(K, B, D)`` (an IAF q, a mixture prior).
``kl_per_dim`` gives ``(B, D)``: closed form for diagonal Gaussians (for a full-covariance q,
of its marginals N(mu_j, Sigma_jj)); for a mixture prior, KL(q_j || p_j) against each
dimension's marginal p_j(z_j) = sum_k pi_k N(z_j ; mu_kj, sigma_kj^2)
(``mixture_marginal_log_prob``, ``(*, D)`` for ``z`` ``(*, D)``), estimated with samples of
q. In nats.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

# (row, dimension, component) triples per chunk of a mixture prior's per-dimension KL: 2^18
# float32 are 1 MiB, so the chunk's two temporaries stay in the CPU's L2 cache between the
# passes over them (larger chunks measured slower: docs/benchmarks.md, benchmarks/kl_per_dim.py)
MIXTURE_KL_ELEMENTS = 1 << 18


def _diagonal_normal(d: Distribution) -> Normal | None:
    """The Normal inside ``Independent(Normal, 1)``, a diagonal Gaussian over ``(D,)``."""
    if isinstance(d, Independent) and type(d.base_dist) is Normal:
        if d.reinterpreted_batch_ndims == 1:
            return d.base_dist
    return None


def kl_term(qz: Distribution, pz: Distribution, z: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per example ``(B,)``: analytic where torch knows it, else the Monte Carlo
    mean of log q(z) - log p(z) over the samples ``z`` of shape ``(K, B, D)``.

    Two diagonal Gaussians take the closed form directly,

        KL = sum_d 1/2 (r_d + t_d - 1 - log r_d),  r = sigma_q^2 / sigma_p^2,
                                                    t = (mu_q - mu_p)^2 / sigma_p^2

    (torch's own formula, the same numbers), without torch's registry lookup, which
    ``torch.compile`` cannot trace; a full-covariance q against a diagonal p too
    (:func:`kl_full_diagonal`)."""
    q, p = _diagonal_normal(qz), _diagonal_normal(pz)
    if q is not None and p is not None:
        ratio = (q.scale / p.scale).pow(2)
        t = ((q.loc - p.loc) / p.scale).pow(2)
        return (0.5 * (ratio + t - 1 - ratio.log())).sum(-1)
    if isinstance(qz, MultivariateNormal) and p is not None:
        return kl_full_diagonal(qz, p)
    try:
        return kl_divergence(qz, pz)
    except NotImplementedError:
        return (qz.log_prob(z) - pz.log_prob(z)).mean(0)


def kl_full_diagonal(q: MultivariateNormal, p: Normal) -> torch.Tensor:
    """KL(N(mu, L L^T) || N(m, diag s^2)) per example ``(B,)``, in closed form:

        KL = 1/2 [sum_ij L_ij^2 / s_i^2 + sum_i ((mu_i - m_i) / s_i)^2 - D
                  + 2 sum_i log s_i - 2 sum_i log L_ii]

    ``q``: batch ``(B,)``, event ``(D,)``; ``p``: the Normal of a diagonal Gaussian over
    ``(D,)`` (batch ``()`` or ``(B,)``). torch knows the pair only as two
    ``MultivariateNormal``, which would build p's D x D matrices."""
    tril = q.scale_tril
    trace = (tril / p.scale.unsqueeze(-1)).pow(2).sum((-2, -1))
    mahalanobis = ((q.loc - p.loc) / p.scale).pow(2).sum(-1)
    log_det_q = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    log_det_p = p.scale.log().sum(-1)
    return 0.5 * (trace + mahalanobis - q.loc.shape[-1]) + log_det_p - log_det_q


def _per_dim_log_prob(pz: Distribution, z: torch.Tensor) -> torch.Tensor:
    """log p_j(z_j) ``(*, D)``: a two-layer prior's own terms, a mixture's marginals, or a
    diagonal Gaussian's factors."""
    if hasattr(pz, "log_prob_per_dim"):
        return pz.log_prob_per_dim(z)
    if isinstance(pz, MixtureSameFamily):
        return mixture_marginal_log_prob(pz, z)
    return pz.base_dist.log_prob(z)


def kl_per_dim(qz: Distribution, pz: Distribution, samples: int = 16) -> torch.Tensor:
    """KL per latent dimension ``(B, D)``.

    For diagonal Gaussians, in closed form (sums to :func:`kl_term`). For a mixture prior
    (its components diagonal Gaussians), KL(q_j || p_j) against each dimension's marginal
    p_j(z_j) = sum_k pi_k N(z_j ; mu_kj, sigma_kj^2), estimated with ``samples`` draws
    z ~ q of shape ``(samples, B, D)``:

        KL_j ~= mean_s [log q_j(z_sj) - log p_j(z_sj)]      (:func:`mixture_marginal_log_prob`)

    near 0 for a dimension that follows the prior (collapse), but not a split of the total
    KL, which the dependence between dimensions under p adds to. A full-covariance q gives the
    same for its marginals q_j = N(mu_j, Sigma_jj), which the dependence under q takes from.
    For the two-layer model (:mod:`vaelab.core.hierarchy`), E_q[log q(z_j | parents) -
    log p(z_j | parents)] per unit, Monte Carlo: these do sum to the KL. For an IAF q,
    E_q[log N(z0_j ; mu_j, sigma_j^2) - sum_t log sigma_tj - log p_j(z_j)], the KL's terms by
    dimension (:meth:`~vaelab.core.posteriors.InverseAutoregressiveFlow.log_prob_per_dim`),
    which sum to it when p factorises.
    """
    if hasattr(qz, "log_prob_per_dim"):  # two stochastic layers, or a flow: q's own terms
        z = qz.sample((samples,))
        return (qz.log_prob_per_dim(z) - _per_dim_log_prob(pz, z)).mean(0)
    # each dimension's marginal: q's own factors, or those of a full-covariance q
    marginal = Normal(qz.loc, qz.stddev) if isinstance(qz, MultivariateNormal) else qz.base_dist
    if not isinstance(pz, MixtureSameFamily):
        return kl_divergence(marginal, pz.base_dist)
    z = marginal.sample((samples,))  # (S, B, D)
    return (marginal.log_prob(z) - mixture_marginal_log_prob(pz, z)).mean(0)


def mixture_marginal_log_prob(pz: MixtureSameFamily, z: torch.Tensor) -> torch.Tensor:
    """log p_j(z_j) of each dimension's marginal under a mixture of K diagonal Gaussians,
    ``(*, D)`` for ``z`` ``(*, D)``:

        log p_j(z_j) = logsumexp_k [log pi_k - 1/2 ((z_j - mu_kj) / sigma_kj)^2
                                    - log sigma_kj - 1/2 log 2 pi]

    ``pz``: components ``Independent(Normal)`` with loc and scale ``(K, D)``, weights
    pi = softmax(logits) ``(K,)``. The (row, j, k) terms are formed ``(rows, D, K)`` at a
    time, at most :data:`MIXTURE_KL_ELEMENTS` of them, so the temporaries stay at a few MiB
    whatever the number of rows. torch's ``MixtureSameFamily.log_prob`` on the D marginals
    gives the same numbers with twice as many elementwise passes over such tensors.
    """
    normal = pz.component_distribution.base_dist  # batch (K, D)
    loc, inv_scale = normal.loc.T, normal.scale.reciprocal().T  # (D, K)
    log_weights = torch.log_softmax(pz.mixture_distribution.logits, -1)  # (K,)
    # log pi_k - log sigma_kj - 1/2 log 2 pi: every term's constant part, once
    const = log_weights - normal.scale.log().T - 0.5 * math.log(2 * math.pi)  # (D, K)
    flat = z.reshape(-1, z.shape[-1])
    log_p = torch.empty_like(flat)
    rows = max(1, MIXTURE_KL_ELEMENTS // loc.numel())
    for start in range(0, len(flat), rows):
        standard = (flat[start : start + rows, :, None] - loc) * inv_scale  # (rows, D, K)
        terms = torch.addcmul(const, standard, standard, value=-0.5)
        # into one output: a list of small per-chunk results, allocated among each chunk's
        # freed temporaries, would keep the heap from reusing the space around them, and the
        # resident memory would grow by up to a chunk's size per chunk
        log_p[start : start + rows] = torch.logsumexp(terms, -1)
    return log_p.view_as(z)
