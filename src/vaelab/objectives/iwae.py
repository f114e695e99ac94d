"""The importance-weighted bound (IWAE) as a training objective, with the standard or the
doubly reparameterized (DReG) encoder gradient."""

from __future__ import annotations

import torch

from ..core.gaussian import DiagonalNormal
from .elbo import Terms


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
    est = model.elbo_terms(x, k)
    qz, pz, z, log_px_z = est.qz, est.pz, est.z, est.log_px_z  # z (k, B, D), log_px_z (k, B)
    log_k = log_px_z.new_tensor(float(k)).log()  # in the model's dtype
    if grad == "dreg":
        if beta != 1.0:
            raise ValueError("the DReG estimator is for the IWAE bound itself: beta must be 1")
        return _iwae_dreg(qz, pz, z, log_px_z, log_k, est.kl)
    log_ratio = pz.log_prob(z) - qz.log_prob(z)  # log p(z) - log q(z | x), (k, B)
    bound = torch.logsumexp(log_px_z + log_ratio, dim=0) - log_k
    if beta == 1.0:
        objective = bound
    else:
        objective = torch.logsumexp(log_px_z + beta * log_ratio, dim=0) - log_k
    return Terms(loss=-objective.mean(), elbo=bound, reconstruction=est.reconstruction, kl=est.kl)


def _iwae_dreg(qz, pz, z, log_px_z, log_k, kl) -> Terms:
    """The IWAE bound whose backward pass gives the DReG gradient (see :func:`iwae`).

    log w_k uses a copy of q with detached parameters, so phi reaches log w only through
    z_k. The surrogate sum_k w~_k log w_k (w~ held constant) has the standard gradient in
    theta; a hook on z multiplies the gradient reaching each z_k by w~_k once more, which
    turns phi's w~_k into w~_k^2. The loss's value is -mean(L_K), as for ``grad="standard"``.
    """
    base = qz.base_dist
    q_fixed = DiagonalNormal(base.loc.detach(), base.scale.detach())
    log_w = log_px_z + pz.log_prob(z) - q_fixed.log_prob(z)  # (k, B)
    weights = torch.softmax(log_w.detach(), dim=0)  # w~_k, (k, B)
    if z.requires_grad:
        z.register_hook(lambda g: g * weights.unsqueeze(-1))
    bound = torch.logsumexp(log_w.detach(), dim=0) - log_k
    surrogate = (weights * log_w).sum(0)
    objective = bound + (surrogate - surrogate.detach())  # value L_K, gradient DReG
    return Terms(loss=-objective.mean(), elbo=bound, reconstruction=log_px_z.mean(0), kl=kl)
