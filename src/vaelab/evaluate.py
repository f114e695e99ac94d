"""Scoring a trained model on a data split.

The ELBO is averaged over examples with float64 sums; its noise comes from a fixed seed, drawn
afresh for each batch of examples, so the same run evaluated twice gives the same numbers, and
so do W processes of a torchrun launch that each score every W-th batch (``distributed``).
The importance-sampled log-likelihood (Burda et al. 2015) does the same, in chunks over K
and over the data so memory stays bounded whatever K is; ``active_units`` and
``bits_per_dim`` summarise it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.distributions import Distribution

from . import objectives
from .errors import VaelabError
from .priors import StandardNormal


def fixed_prior(model):
    """``model.fixed_prior()`` (p(z) computed once for a whole evaluation) where the model
    has it, else nothing."""
    fixed = getattr(model, "fixed_prior", None)
    return fixed() if fixed is not None else contextlib.nullcontext()


SAMPLE_BLOCK = 128  # z is drawn in blocks of this many samples, each block from its own seed
# (sample, example) pairs evaluated at a time by default: small enough that the decoder's
# outputs (rows x pixels) stay in the CPU's cache while the log-density reads them back, large
# enough for efficient matrix products. 2,048 rows of MNIST logits are 6.4 MB; 50,000 (the
# old 500 samples x 100 images) ran the same estimate at half the speed (docs/benchmarks.md)
EVAL_ROWS = 2048


def _default_chunk(chunk: int | None, batch_size: int) -> int:
    """``chunk`` if given, else the samples per example that make :data:`EVAL_ROWS` rows."""
    return chunk if chunk is not None else max(1, EVAL_ROWS // max(batch_size, 1))


@torch.no_grad()
def evaluate_elbo(
    model,
    x: torch.Tensor,
    k: int = 1,
    batch_size: int = 1000,
    seed: int = 0,
    distributed: bool = False,
) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction E_q[log p(x|z)] and KL over ``x`` (nats).

    Also the standard error of the mean ELBO across examples (``elbo_se``). The z of batch j
    are drawn right after seeding with (``seed``, j), or ``seed`` for j = 0. With
    ``distributed``, in a torchrun launch of W processes, rank r scores batches r, r + W, ...
    and the float64 sums are added over the ranks: every rank returns the one-process
    result (to float rounding).
    """
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64)
    rank, world = _ranks(distributed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for batch_index, start in enumerate(range(0, len(x), batch_size)):
            if batch_index % world != rank:
                continue
            # batch 0 from ``seed`` itself: a set of up to batch_size examples scores as it
            # did when one seed drew the noise of every batch in turn
            _seed_device(_block_seed(seed, batch_index, 0) if batch_index else seed, device)
            xb = x[start : start + batch_size].to(device)
            terms = objectives.elbo(model, xb, k=k)
            e = terms.elbo.double().cpu()
            sums += torch.stack(
                [
                    e.sum(),
                    (e * e).sum(),
                    terms.reconstruction.double().sum().cpu(),
                    terms.kl.double().sum().cpu(),
                ]
            )
    if world > 1:
        _all_reduce_sum(sums)
    n = len(x)
    mean = sums[0].item() / n
    var = max(sums[1].item() / n - mean * mean, 0.0)
    return {
        "elbo": mean,
        "elbo_se": math.sqrt(var / n) if n > 1 else float("nan"),
        "reconstruction": sums[2].item() / n,
        "kl": sums[3].item() / n,
        "n": n,
    }


@torch.no_grad()
def posterior_means(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """E_q[z | x], the encoder's posterior means ``(N, D)``, ``batch_size`` examples at a
    time: what the active-unit count needs, without :func:`posterior_stats`' KL."""
    device = next(model.parameters()).device
    return torch.cat([model.q_z(c.to(device)).mean.cpu() for c in x.split(batch_size)])


@torch.no_grad()
def posterior_stats(model, x: torch.Tensor, batch_size: int = 1000):
    """Posterior means and standard deviations ``(N, D)`` and the KL per dimension ``(N, D)``
    (:func:`vaelab.objectives.kl_per_dim`), ``batch_size`` examples at a time.

    Without gradients: under a mixture prior the per-dimension KL is a Monte Carlo sum over
    all K components, whose autograd graph would otherwise hold gigabytes."""
    device = next(model.parameters()).device
    means, stds, kls = [], [], []
    pz = model.p_z()
    for start in range(0, len(x), batch_size):
        qz = model.q_z(x[start : start + batch_size].to(device))
        means.append(qz.mean.cpu())
        stds.append(qz.stddev.cpu())
        kls.append(objectives.kl_per_dim(qz, pz).cpu())
    return torch.cat(means), torch.cat(stds), torch.cat(kls)


# --- importance-sampled log-likelihood ------------------------------------------------------


def _ranks(distributed: bool) -> tuple[int, int]:
    """(rank, world size) of a torchrun launch when ``distributed``, else (0, 1)."""
    if not distributed:
        return 0, 1
    from . import distributed as dist_mod

    return dist_mod.rank(), dist_mod.world_size()


def _all_reduce_sum(tensor: torch.Tensor) -> None:
    from . import distributed as dist_mod

    with dist_mod.lost_contact():
        dist_mod.all_reduce_sum(tensor)


def _seed_device(seed: int, device: torch.device) -> None:
    """Seed the generator that draws on ``device``: on the CPU only that one, since
    torch.manual_seed also seeds every accelerator backend, which costs milliseconds."""
    if device.type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _block_seed(seed: int, batch_index: int, block_index: int) -> int:
    """A torch seed for one block of samples, well mixed from the three integers."""
    state = np.random.SeedSequence([seed, batch_index, block_index]).generate_state(2)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _samples_from_q(
    qz: Distribution, k: int, chunk: int, seed: int, batch_index: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """z_0 .. z_{k-1} ~ q(z | x), yielded in consecutive chunks of ``(<= chunk, B, D)``.

    Sample j is row ``j % SAMPLE_BLOCK`` of a block of ``SAMPLE_BLOCK`` draws made right
    after seeding with (seed, batch_index, j // SAMPLE_BLOCK): the z_j, hence the estimate,
    do not depend on ``chunk``, and the first K' samples of a K-sample run are the K' samples
    of a K'-sample run. Call inside ``torch.random.fork_rng``: this reseeds the global RNG
    of ``device``, where q lives.
    """
    pending: list[torch.Tensor] = []
    n_pending = 0
    for block in range(-(-k // SAMPLE_BLOCK)):
        _seed_device(_block_seed(seed, batch_index, block), device)
        z = qz.sample((SAMPLE_BLOCK,))[: k - block * SAMPLE_BLOCK]
        while len(z):
            take = min(chunk - n_pending, len(z))
            pending.append(z[:take])
            n_pending += take
            z = z[take:]
            if n_pending == chunk:
                yield torch.cat(pending)
                pending, n_pending = [], 0
    if pending:
        yield torch.cat(pending)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not (isinstance(value, int) and value >= 1):
            raise VaelabError(f"{name} must be a positive integer, got {value!r}")


@torch.no_grad()
def importance_sampled_log_px(
    model,
    x: torch.Tensor,
    k: int = 5000,
    batch_size: int = 100,
    chunk: int | None = None,
    seed: int = 0,
    q=None,
    distributed: bool = False,
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
        ``index`` of ``x`` (e.g. fitted :class:`vaelab.inference.LocalPosteriors`); by
        default the encoder.
    distributed : in a torchrun launch of W processes, rank r estimates batches r, r + W,
        ... and the ranks exchange their examples' estimates: every rank returns all N, the
        same as one process computes (the samples depend on the batch, not on the rank).

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
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        fixed_prior(model),
    ):
        for batch_index, start in enumerate(range(0, len(x), batch_size)):
            if batch_index % world != rank:
                continue
            xb = x[start : start + batch_size].to(device)
            index = torch.arange(start, start + len(xb), device=device)
            qz = model.q_z(xb) if q is None else q.q_z(xb, index)
            # running logsumexp_k of log w_k and of 2 log w_k, (B,)
            lse_w = torch.full((len(xb),), -math.inf, dtype=torch.float64, device=device)
            lse_w2 = lse_w.clone()
            for z in _samples_from_q(qz, k, chunk, seed, batch_index, device):
                log_w = (model.log_joint(xb, z) - qz.log_prob(z)).double()  # (chunk, B)
                lse_w = torch.logaddexp(lse_w, torch.logsumexp(log_w, dim=0))
                lse_w2 = torch.logaddexp(lse_w2, torch.logsumexp(2 * log_w, dim=0))
            result[0, start : start + len(xb)] = (lse_w - log_k).cpu()
            result[1, start : start + len(xb)] = torch.exp(2 * lse_w - lse_w2).cpu()
    if world > 1:
        _all_reduce_sum(result)
    return result[0], result[1]


def log_likelihood(
    model,
    x: torch.Tensor,
    k: int = 5000,
    batch_size: int = 100,
    chunk: int | None = None,
    seed: int = 0,
    distributed: bool = False,
) -> dict[str, float]:
    """The importance-sampled negative log-likelihood of ``x``, nats per example.

    -log p^(x) averaged over the N examples, with log p^(x) from
    :func:`importance_sampled_log_px` (same arguments; ``distributed`` splits the examples
    across the processes of a torchrun launch). Since E[log p^(x)] <= log p(x) this
    is, in expectation, an upper bound on the true NLL.

    Returns
    -------
    dict with ``nll_nats`` (mean of -log p^(x), > 0 for discrete data), ``nll_se`` (standard
    error of that mean across examples: the spread of the data, not only the sampling noise),
    ``ess_mean`` and ``ess_min`` (effective sample size of the K weights, over examples),
    ``k`` and ``n``.
    """
    log_px, ess = importance_sampled_log_px(
        model, x, k, batch_size, chunk, seed, distributed=distributed
    )
    n = len(log_px)
    nll = -log_px
    return {
        "nll_nats": nll.mean().item(),
        "nll_se": (nll.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
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


def active_units(means: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions are active (Burda et al. 2015).

    Dimension d is active when A_d = Cov_x(E_{q(z|x)}[z_d]) > ``threshold``: the posterior
    mean moves with x. ``means``: ``(N, D)``, E_q[z] for each example, e.g. the first output
    of :func:`posterior_stats`. The variance over x is the unbiased sample variance.
    """
    if means.ndim != 2 or len(means) < 2:
        raise VaelabError(
            f"active_units needs posterior means of shape (N >= 2, D), got {tuple(means.shape)}"
        )
    return int((means.double().var(dim=0) > threshold).sum().item())


@torch.no_grad()
def exact_log_px(model, x: torch.Tensor) -> dict[str, float]:
    """The exact mean log p(x) of a linear-Gaussian VAE, and its standard error over ``x``.

    For a decoder x = W z + b with Gaussian noise sigma and p(z) = N(0, I),
    p(x) = N(b, W W^T + diag sigma^2) (:func:`vaelab.baselines.linear_gaussian_log_px`).
    ``x``: ``(N, *x_shape)``. Other models raise :class:`VaelabError`.
    """
    from .baselines import linear_gaussian_log_px
    from .likelihoods import GaussianLikelihood

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
    n = len(log_px)
    return {
        "log_px": log_px.mean().item(),
        "log_px_se": (log_px.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
    }
