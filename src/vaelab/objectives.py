"""Training objectives: functions of ``(model, x, ...)`` returning a :class:`Terms` record.

Every number is in nats per example: log-densities summed over the data's dimensions,
then (for ``loss`` only) averaged over the batch. beta multiplies the KL of that same
per-example ELBO; no other scale factor enters.

The KL each objective subtracts (closed form, per latent dimension, a mixture prior's
marginals) is computed in :mod:`vaelab.kl`; every name there is importable from here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, Normal

from .kl import MIXTURE_KL_ELEMENTS as MIXTURE_KL_ELEMENTS
from .kl import _diagonal_normal as _diagonal_normal
from .kl import kl_per_dim, kl_term
from .kl import mixture_marginal_log_prob as mixture_marginal_log_prob


@dataclass(frozen=True)
class Terms:
    """What one objective evaluation returns.

    loss : scalar, the quantity minimised: mean over the batch of -(reconstruction - beta kl).
    elbo : ``(B,)``, reconstruction - kl (beta plays no part: this is the bound on log p(x)).
    reconstruction : ``(B,)``, E_q[log p(x | z)], estimated with the K samples.
    kl : ``(B,)``, KL(q(z | x) || p(z)): closed form when both are Gaussian, else Monte Carlo.
    """

    loss: torch.Tensor
    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def elbo(model, x: torch.Tensor, beta: float = 1.0, k: int = 1, qz=None) -> Terms:
    """The evidence lower bound, estimated with ``k`` reparameterized samples per example.

    ELBO(x) = E_{q(z|x)}[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x)   (Kingma & Welling 2014)

    ``x``: ``(B, *x_shape)``; z is drawn with shape ``(k, B, D)``. q is the encoder's unless
    ``qz`` is given (per-datapoint or refined posteriors, :mod:`vaelab.inference`).
    """
    qz = model.q_z(x) if qz is None else qz
    z = qz.rsample((k,))
    reconstruction = model.p_x(z).log_prob(x).mean(0)
    kl = kl_term(qz, model.p_z(), z)
    loss = -(reconstruction - beta * kl).mean()
    return Terms(loss=loss, elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


def iwae(model, x: torch.Tensor, k: int, beta: float = 1.0, grad: str = "standard") -> Terms:
    """The importance-weighted bound with ``k`` samples per example (Burda et al. 2015).

    L_K(x) = E[log (1/K) sum_k w_k],  w_k = p(x, z_k) / q(z_k | x),  z_1..z_K ~ q(z | x)

    ELBO(x) = L_1 <= L_K <= L_{K+1} <= log p(x); the estimate here is one draw of the K
    samples, computed as logsumexp_k(log w_k) - log K. ``x``: ``(B, *x_shape)``; z is drawn
    reparameterized with shape ``(k, B, D)``.

    ``grad = "dreg"`` keeps the value and the decoder's (and prior's) gradient, and gives the
    encoder the doubly reparameterized gradient (Tucker et al. 2018):

        grad_phi L_K = E[ sum_k w~_k^2  d log w_k / d z_k  d z_k / d phi ],  w~ = softmax_k(log w)

    with log q's parameters held fixed inside log w_k. Its expectation is the standard
    estimator's, but its signal-to-noise ratio does not decay as K grows (Rainforth et al.
    2018). It needs ``beta = 1``.

    Returns
    -------
    Terms
        elbo : ``(B,)``, the estimate of L_K(x) (beta plays no part: this is the bound).
        loss : scalar, -mean_B of logsumexp_k(log p(x|z_k) - beta (log q(z_k|x) - log p(z_k)))
            - log K; with beta = 1 this is -mean(elbo), with k = 1 it is the one-sample
            beta-ELBO with a Monte Carlo KL.
        reconstruction : ``(B,)``, (1/K) sum_k log p(x | z_k), the ordinary ELBO's first term
            averaged over the same K samples (not importance-weighted).
        kl : ``(B,)``, KL(q(z | x) || p(z)) as :func:`elbo` reports it (:func:`kl_term`:
            closed form when known, else the Monte Carlo mean over the same samples). So
            ``reconstruction - kl`` is the ordinary K-sample ELBO estimate, <= ``elbo`` on
            average; the gap is what importance weighting buys.
    """
    if grad not in ("standard", "dreg"):
        raise ValueError(f"grad must be 'standard' or 'dreg', got {grad!r}")
    qz = model.q_z(x)
    pz = model.p_z()
    z = qz.rsample((k,))
    log_px_z = model.p_x(z).log_prob(x)  # (k, B)
    log_k = log_px_z.new_tensor(float(k)).log()  # in the model's dtype
    if grad == "dreg":
        if beta != 1.0:
            raise ValueError("the DReG estimator is for the IWAE bound itself: beta must be 1")
        return _iwae_dreg(qz, pz, z, log_px_z, log_k, kl_term(qz, pz, z))
    log_ratio = pz.log_prob(z) - qz.log_prob(z)  # log p(z) - log q(z | x), (k, B)
    bound = torch.logsumexp(log_px_z + log_ratio, dim=0) - log_k
    if beta == 1.0:
        objective = bound
    else:
        objective = torch.logsumexp(log_px_z + beta * log_ratio, dim=0) - log_k
    reconstruction = log_px_z.mean(0)
    kl = kl_term(qz, pz, z)
    return Terms(loss=-objective.mean(), elbo=bound, reconstruction=reconstruction, kl=kl)


def _iwae_dreg(qz, pz, z, log_px_z, log_k, kl) -> Terms:
    """The IWAE bound whose backward pass gives the DReG gradient (see :func:`iwae`).

    log w_k uses a copy of q with detached parameters, so phi reaches log w only through
    z_k. The surrogate sum_k w~_k log w_k (w~ held constant) has the standard gradient in
    theta; a hook on z multiplies the gradient reaching each z_k by w~_k once more, which
    turns phi's w~_k into w~_k^2. The loss's value is -mean(L_K), as for ``grad="standard"``.
    """
    base = qz.base_dist
    q_fixed = Independent(Normal(base.loc.detach(), base.scale.detach(), validate_args=False), 1)
    log_w = log_px_z + pz.log_prob(z) - q_fixed.log_prob(z)  # (k, B)
    weights = torch.softmax(log_w.detach(), dim=0)  # w~_k, (k, B)
    if z.requires_grad:
        z.register_hook(lambda g: g * weights.unsqueeze(-1))
    bound = torch.logsumexp(log_w.detach(), dim=0) - log_k
    surrogate = (weights * log_w).sum(0)
    objective = bound + (surrogate - surrogate.detach())  # value L_K, gradient DReG
    return Terms(loss=-objective.mean(), elbo=bound, reconstruction=log_px_z.mean(0), kl=kl)


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
    qz = model.q_z(x)
    pz = model.p_z()
    z = qz.rsample((k,))
    reconstruction = model.p_x(z).log_prob(x).mean(0)
    mi, tc, dim_kl = tc_decomposition(qz, pz, z, n_data)
    penalty = (mi + tc_beta * tc + dim_kl).mean(0)
    loss = -(reconstruction - beta * penalty).mean()
    kl = kl_term(qz, pz, z)
    return Terms(loss=loss, elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


def batch_terms(
    model,
    x: torch.Tensor,
    index: torch.Tensor,
    config,
    beta: float,
    step: int,
    n_data: int = 0,
    critic=None,
):
    """The objective ``config`` names, on one training batch: ``(terms, rows)``.

    ``x``: ``(B, *x_shape)``, the examples at positions ``index`` ``(B,)`` of the training
    set; ``beta`` is the KL weight for this step (:func:`vaelab.schedules.kl_weight`).
    ``rows`` is ``None`` unless the run keeps one posterior per training example
    (``inference = "local"``): then it is the leaf tensor of the batch's posterior
    parameters, whose gradient the loop applies itself. ``n_data`` is the training set's size
    (beta-TCVAE's estimate of q(z)); ``critic`` the FactorVAE discriminator
    (:class:`vaelab.factor.Critic`) when ``config.factor_gamma`` > 0.
    """
    from . import inference

    if config.inference == "local":  # classical SVI: q_i for each example i
        rows, qz = model.local.rows(index)
        return elbo(model, x, beta=beta, k=config.k, qz=qz), rows
    if config.inference == "semi-amortized":
        steps = config.refine_steps
        return inference.semi_amortized_elbo(model, x, steps, beta, config.k, step), None
    if config.objective == "iwae":
        return iwae(model, x, k=config.k, beta=beta, grad=config.iwae_grad), None
    if config.tc_beta:
        return beta_tc(model, x, config.tc_beta, n_data, beta=beta, k=config.k), None
    if config.factor_gamma:
        from .factor import factor_vae

        return factor_vae(model, x, critic, config.factor_gamma, beta=beta, k=config.k), None
    if getattr(config, "free_bits", 0.0):
        return free_bits_elbo(model, x, config.free_bits, beta=beta, k=config.k), None
    return elbo(model, x, beta=beta, k=config.k), None


def free_bits_elbo(model, x: torch.Tensor, free_bits: float, beta: float = 1.0, k: int = 1):
    """The ELBO whose loss floors each latent dimension's KL at ``free_bits`` nats.

        loss = -mean_B E_q[log p(x | z)] + beta sum_j max(lambda, mean_B KL_j)

    (Kingma et al. 2016, "free bits", one group per latent dimension.) A dimension whose
    batch-mean KL is below lambda gets no gradient from the KL term, so the encoder is not
    pushed to collapse it onto the prior. ``elbo`` and ``kl`` are the true ELBO and KL, not
    floored. Needs a prior whose KL splits over dimensions (the standard normal).
    """
    qz = model.q_z(x)
    pz = model.p_z()
    z = qz.rsample((k,))
    reconstruction = model.p_x(z).log_prob(x).mean(0)
    per_dim = kl_per_dim(qz, pz)  # (B, D)
    kl = per_dim.sum(-1)
    floored = per_dim.mean(0).clamp(min=free_bits).sum()
    loss = -reconstruction.mean() + beta * floored
    return Terms(loss=loss, elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)
