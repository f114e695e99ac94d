"""The log-likelihood of a data split: the importance-sampled estimate log p^(x) with its
effective sample size (Burda et al. 2015), the NLL it gives in nats and, for discrete data,
in bits per dimension, and the exact log p(x) of a linear-Gaussian VAE to check it against.
"""

from __future__ import annotations

import math

import torch

from ..core.baselines import linear_gaussian_log_px
from ..core.likelihoods import (
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    GaussianLikelihood,
)
from ..core.priors import StandardNormal
from ..device import fork_rng
from ..errors import VaelabError
from ..progress import Progress, silent
from .sampling import _all_reduce_sum, _check_positive, _default_chunk, _ranks, samples_from_q
from .statistics import standard_error

DEFAULT_K = 5000  # importance samples per example: vaelab eval's and vaelab gap's default


@torch.no_grad()
def importance_sampled_log_px(
    model,
    x: torch.Tensor,
    k: int = DEFAULT_K,
    batch_size: int = 100,
    chunk: int | None = None,
    seed: int = 0,
    q=None,
    distributed: bool = False,
    progress: Progress = silent,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example importance-sampling estimate of log p(x) and its effective sample size.

    log p^(x) = logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,  z_1..z_K ~ q(z | x)

    (Burda et al. 2015.) p^(x) is unbiased for p(x), so E[log p^(x)] = L_K(x) <= log p(x),
    the K-sample importance-weighted bound, which tightens to log p(x) as K grows. With
    w_k = p(x, z_k) / q(z_k | x), ESS = (sum_k w_k)^2 / sum_k w_k^2, in [1, K]; it is K when
    q is the exact posterior (all w_k equal) and near 1 when one sample dominates.

    Memory is bounded by ``batch_size * chunk`` evaluations of p(x | z) at a time whatever
    ``k`` is: both logsumexps are accumulated across chunks in float64. Exactly ``k`` samples
    are used. The noise is fixed by ``seed`` (and ``batch_size``), not by ``chunk``, and the
    global RNG is left as it was.

    Parameters
    ----------
    x : ``(N, *x_shape)``, the data.
    k : samples z_k per example.
    batch_size, chunk : examples, and samples per example, evaluated at a time; ``chunk``
        defaults to ``EVAL_ROWS // batch_size`` (20 for batches of 100).
    seed : fixes the samples.
    q : the proposal, an inference object answering ``q.q_z(x, index)`` for the rows
        ``index`` of ``x`` (e.g. fitted :class:`vaelab.core.inference.LocalPosteriors`); by
        default the encoder.
    distributed : in a torchrun launch of W processes, rank r estimates batches r, r + W,
        ... and the ranks exchange their examples' estimates: every rank returns all N, the
        same as one process computes (the samples depend on the batch, not on the rank).
    progress : told of every chunk evaluated, in samples z (one stage, this rank's
        share: ``k`` times its examples).

    Returns
    -------
    log_px : ``(N,)`` float64, log p^(x) in nats.
    ess : ``(N,)`` float64, the effective sample size of each example's K weights.
    """
    chunk = _default_chunk(chunk, batch_size)
    _check_positive(k=k, batch_size=batch_size, chunk=chunk)
    device = next(model.parameters()).device
    log_k = math.log(k)
    rank, world = _ranks(distributed)
    # (log p^(x), ESS) of every example, float64; a rank fills in its batches' rows, and the
    # zeros elsewhere make a sum over the ranks gather the whole
    result = torch.zeros(2, len(x), dtype=torch.float64)
    # this rank's batches: (batch index, first row)
    mine = [(i, s) for i, s in enumerate(range(0, len(x), batch_size)) if i % world == rank]
    rows = sum(min(batch_size, len(x) - start) for _, start in mine)
    with (
        fork_rng(device),
        model.fixed_prior(),
        progress("importance sampling", rows * k, "samples") as task,
    ):
        for batch_index, start in mine:
            xb = x[start : start + batch_size].to(device)
            index = torch.arange(start, start + len(xb), device=device)
            qz = model.q_z(xb) if q is None else q.q_z(xb, index)
            # running logsumexp_k of log w_k and of 2 log w_k, (B,)
            lse_w = torch.full((len(xb),), -math.inf, dtype=torch.float64, device=device)
            lse_w2 = lse_w.clone()
            for z, log_q in samples_from_q(qz, k, chunk, seed, batch_index, device):
                log_w = (model.log_joint(xb, z) - log_q).double()  # (chunk, B)
                lse_w = torch.logaddexp(lse_w, torch.logsumexp(log_w, dim=0))
                lse_w2 = torch.logaddexp(lse_w2, torch.logsumexp(2 * log_w, dim=0))
                task.update(log_w.numel())
            result[0, start : start + len(xb)] = (lse_w - log_k).cpu()
            result[1, start : start + len(xb)] = torch.exp(2 * lse_w - lse_w2).cpu()
    if world > 1:
        _all_reduce_sum(result)
    return result[0], result[1]


def log_likelihood(
    model,
    x: torch.Tensor,
    k: int = DEFAULT_K,
    batch_size: int = 100,
    chunk: int | None = None,
    seed: int = 0,
    distributed: bool = False,
    progress: Progress = silent,
) -> dict[str, float]:
    """The importance-sampled negative log-likelihood of ``x``, nats per example.

    -log p^(x) averaged over the N examples, with log p^(x) from
    :func:`importance_sampled_log_px` (same arguments; ``distributed`` splits the examples
    across the processes of a torchrun launch; ``progress`` is told of each chunk). Since
    E[log p^(x)] <= log p(x) this is, in expectation, an upper bound on the true NLL.

    Returns
    -------
    dict with ``nll_nats`` (mean of -log p^(x), > 0 for discrete data), ``nll_se`` (standard
    error of that mean across examples: the spread of the data, not only the sampling noise),
    ``ess_mean`` and ``ess_min`` (effective sample size of the K weights, over examples),
    ``k`` and ``n``.
    """
    log_px, ess = importance_sampled_log_px(
        model, x, k, batch_size, chunk, seed, distributed=distributed, progress=progress
    )
    n = len(log_px)
    nll = -log_px
    return {
        "nll_nats": nll.mean().item(),
        "nll_se": standard_error(nll),
        "ess_mean": ess.mean().item(),
        "ess_min": ess.min().item(),
        "k": k,
        "n": n,
    }


def bits_per_dim(nll_nats: float, n_dims: int) -> float:
    """NLL in bits per data dimension: nll_nats / (n_dims ln 2).

    Meaningful for a likelihood over discrete values (e.g. Bernoulli on binarized pixels).
    For a density over 8-bit data rescaled to [0, 1], first add n_dims * log(256) nats to
    move the density to the 0..255 scale.
    """
    return nll_nats / (n_dims * math.log(2))


def is_discrete(model, x: torch.Tensor) -> bool:
    """Whether ``model``'s p(x | z) is a probability of discrete values for the data ``x``
    ``(N, *x_shape)``, so that -log2 p(x) is a code length and bits per dimension mean
    something: a Bernoulli on 0/1 data (binarized or binary), or the discretized logistic of
    8-bit levels. A Gaussian or continuous Bernoulli is a density (its -log p(x) can be
    negative and changes with the units of x); a Bernoulli on grey levels is no likelihood."""
    likelihood = model.likelihood
    if isinstance(likelihood, DiscretizedLogisticLikelihood):
        return True
    return isinstance(likelihood, BernoulliLikelihood) and bool(((x == 0) | (x == 1)).all())


@torch.no_grad()
def exact_log_px(model, x: torch.Tensor) -> dict[str, float]:
    """The exact mean log p(x) of a linear-Gaussian VAE, and its standard error over ``x``.

    For a decoder x = W z + b with Gaussian noise sigma and p(z) = N(0, I),
    p(x) = N(b, W W^T + diag sigma^2) (:func:`vaelab.core.baselines.linear_gaussian_log_px`).
    ``x``: ``(N, *x_shape)``. Other models raise :class:`VaelabError`.
    """
    output = getattr(model.decoder, "output", None)
    is_linear = output is not None and len(model.decoder.net) == 1
    if not (is_linear and isinstance(model.likelihood, GaussianLikelihood)):
        raise VaelabError(
            "the exact log p(x) is known only for a linear decoder with a Gaussian "
            "likelihood: train with --arch linear --likelihood gaussian"
        )
    if not isinstance(model.prior, StandardNormal):
        raise VaelabError("the exact log p(x) needs the standard normal prior")
    sigma = model.likelihood.log_scale.double().exp().flatten()
    log_px = linear_gaussian_log_px(x.flatten(1), output.weight, output.bias, sigma)
    return {
        "log_px": log_px.mean().item(),
        "log_px_se": standard_error(log_px),
    }
