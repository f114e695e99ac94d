"""beta-TCVAE (Chen et al. 2018): the KL split into index-code mutual information, total
correlation and dimension-wise KL, with a weight of its own on the total correlation."""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Independent, Normal

from .elbo import Terms


def tc_decomposition(
    qz: Independent, pz: Distribution, z: torch.Tensor, n_data: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The KL's three parts per sample (Chen et al. 2018, "Isolating sources of
    disentanglement in VAEs"), estimated on one batch: ``(mi, tc, dim_kl)``, each ``(K, B)``.

        E_x KL(q(z|x) || p(z)) = I_q(x; z) + KL(q(z) || prod_d q(z_d)) + sum_d KL(q(z_d) || p(z_d))
        mi = log q(z|x) - log q(z),   tc = log q(z) - sum_d log q(z_d),
        dim_kl = sum_d log q(z_d) - log p(z)

    so ``mi + tc + dim_kl = log q(z|x) - log p(z)`` exactly, sample by sample. The aggregate
    posterior q(z) = (1/N) sum_n q(z|x_n) and its marginals q(z_d) are estimated by
    minibatch-weighted sampling over the batch's M examples x_j (the paper's MWS):

        log q(z_i) ~ logsumexp_j log q(z_i | x_j) - log(N M),   N = ``n_data``

    and likewise per dimension. The estimator is biased (when the batch is the whole data set,
    M = N, it is log q(z_i) - log N exactly) and its constants, (D - 1) log(NM) in ``tc``, do
    not reach the gradient. ``qz``: a diagonal Gaussian with batch ``(M,)``, event ``(D,)``;
    ``z``: ``(K, M, D)`` samples of it.
    """
    base = qz.base_dist
    # log q(z_i^k | x_j) per dimension: (K, M_i, M_j, D)
    log_q = Normal(base.loc, base.scale, validate_args=False).log_prob(z.unsqueeze(-2))
    log_nm = math.log(n_data * z.shape[-2])
    log_qz = torch.logsumexp(log_q.sum(-1), dim=-1) - log_nm  # (K, M)
    log_prod_qzd = (torch.logsumexp(log_q, dim=-2) - log_nm).sum(-1)  # (K, M)
    log_qz_x = qz.log_prob(z)  # (K, M)
    mi = log_qz_x - log_qz
    tc = log_qz - log_prod_qzd
    dim_kl = log_prod_qzd - pz.log_prob(z)
    return mi, tc, dim_kl


def beta_tc(model, x: torch.Tensor, tc_beta: float, n_data: int, beta: float = 1.0, k: int = 1):
    """The beta-TCVAE objective (Chen et al. 2018), with ``k`` samples per example:

        E_q[log p(x | z)] - beta (MI + tc_beta TC + dimension-wise KL)

    the three parts of the KL from :func:`tc_decomposition` (minibatch-weighted sampling over
    the batch ``x`` ``(M, *x_shape)`` from a training set of ``n_data`` examples). ``beta`` is
    the step's KL weight (1 unless ``--beta`` or ``--kl-warmup``): the paper's alpha = gamma =
    1. With ``tc_beta = 1`` the loss is the negative ELBO with the KL replaced by its Monte
    Carlo estimate log q(z|x) - log p(z).

    Returns :class:`Terms` whose ``elbo`` and ``kl`` are the ordinary ones (closed-form KL), so
    the logged numbers stay bounds on log p(x); ``loss`` adds (tc_beta - 1) TC, whose estimate
    carries the constant (D - 1) log(NM) (no gradient).
    """
    est = model.elbo_terms(x, k)
    mi, tc, dim_kl = tc_decomposition(est.qz, est.pz, est.z, n_data)
    penalty = (mi + tc_beta * tc + dim_kl).mean(0)
    loss = -(est.reconstruction - beta * penalty).mean()
    return Terms(loss=loss, elbo=est.elbo, reconstruction=est.reconstruction, kl=est.kl)
