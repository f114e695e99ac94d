"""Decoder output -> a distribution p(x | z) over whole examples.

Each likelihood is a module that takes the decoder's output, shape ``(*batch, *x_shape)``,
and returns a ``torch.distributions`` object whose event shape is ``x_shape``: its
``log_prob(x)`` already sums over every pixel (nats per example).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import (
    Bernoulli,
    Categorical,
    ContinuousBernoulli,
    Distribution,
    Independent,
    Normal,
)
from torch.nn import functional as F

from ..errors import VaelabError


class BernoulliPixels(Independent):
    """prod_i Bernoulli(x_i ; sigmoid(l_i)) over the event dims: torch's
    ``Independent(Bernoulli(logits=l))``, with a log-density in fewer passes over memory.

    log p(x | z) = sum_i [x_i l_i - softplus(l_i)], which is minus the binary cross-entropy
    with logits, summed. torch's ``Bernoulli.log_prob`` makes each pixel's term in five
    full-size passes (log-sigmoid with its buffer, 1 - x, a product, a difference, a
    negation); here softplus writes them once and two passes in place turn them into the
    terms, which are then summed. Per-pixel terms, not sum(x l) - sum(softplus(l)): those
    two sums run to thousands for confident logits, and their difference in float32 would
    lose what the small terms keep. It speeds up the importance-sampled log-likelihood,
    which runs this on every (sample, image) pair (docs/benchmarks.md, evaluation speed);
    most of what is left is the softplus itself, an exp and a log1p per pixel.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` ``(*batch, *event)`` (broadcast against the logits) -> ``(*batch,)``."""
        logits = self.base_dist.logits
        dims = tuple(range(-self.reinterpreted_batch_ndims, 0))
        # softplus(l) = l exactly past the threshold: log1p(exp(-40)) = 4e-18 is below float64's
        # rounding of 40 (torch's default, 20, would be 2e-9 off in float64). Its backward
        # reads l, not its output, so the output may be overwritten in place
        terms = F.softplus(logits, threshold=40.0).neg_().addcmul_(logits, value)
        return terms.sum(dims) if dims else terms


class BernoulliLikelihood(nn.Module):
    """p(x | z) = prod_i Bernoulli(x_i ; sigmoid(logits_i)); the decoder emits logits.

    For binary (or binarized) data. ``log_prob`` is minus the binary cross-entropy with
    logits, computed stably from the logits, never from a sigmoid.
    """

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, logits: torch.Tensor) -> Distribution:
        return BernoulliPixels(Bernoulli(logits=logits, validate_args=False), len(self.x_shape))

    @staticmethod
    def mean(out: torch.Tensor) -> torch.Tensor:
        """E[x | z] = sigmoid(logits): what plots show as the decoded image."""
        return torch.sigmoid(out)


class GaussianLikelihood(nn.Module):
    """p(x | z) = prod_i N(x_i ; mu_i, sigma_i^2); the decoder emits the means mu.

    ``sigma`` is fixed, or (``learn_sigma``) learned: one sigma per output dimension, stored
    as ``log_scale`` of shape ``x_shape``, or (``shared``) one for all, shape ``()``; either is
    initialised at log(sigma).
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        sigma: float = 0.1,
        learn_sigma: bool = False,
        shared: bool = False,
    ):
        super().__init__()
        self.x_shape = tuple(x_shape)
        log_scale = torch.full(() if shared else self.x_shape, math.log(sigma))
        if learn_sigma:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def forward(self, loc: torch.Tensor) -> Distribution:
        scale = self.log_scale.exp().expand_as(loc)
        return Independent(Normal(loc, scale, validate_args=False), len(self.x_shape))

    @staticmethod
    def mean(out: torch.Tensor) -> torch.Tensor:
        return out


class ContinuousBernoulliLikelihood(nn.Module):
    """p(x | z) = prod_i CB(x_i ; lambda_i), lambda_i = sigmoid(logits_i), x_i in [0, 1]:

        CB(x ; lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x),
        C(lambda) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda)   (C(1/2) = 2)

    (Loaiza-Ganem & Cunningham 2019): the Bernoulli's form made a density on [0, 1], for
    grey levels that are not binary. torch computes log C from a Taylor expansion for lambda
    within 1e-3 of 1/2, where the closed form divides two vanishing numbers.
    """

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)

    def forward(self, logits: torch.Tensor) -> Distribution:
        cb = ContinuousBernoulli(logits=logits, validate_args=False)
        return Independent(cb, len(self.x_shape))

    @staticmethod
    def mean(out: torch.Tensor) -> torch.Tensor:
        """E[x | z] of the continuous Bernoulli (not lambda itself)."""
        return ContinuousBernoulli(logits=out, validate_args=False).mean


BINS = 256  # 8-bit images, scaled to [0, 1]: x = k / 255
LOG_SCALE_MIN = -7.0  # a logistic narrower than this is far inside one bin (PixelCNN++'s floor)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate for small and large d (Maechler 2012). Each branch
    sees only inputs where it is finite, so neither puts a NaN in the other's gradient."""
    ln2 = math.log(2.0)
    small = torch.where(d < ln2, d, ln2)
    large = torch.where(d < ln2, ln2, d)
    return torch.where(d < ln2, torch.log(-torch.expm1(-small)), torch.log1p(-torch.exp(-large)))


def log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(a) - sigmoid(b)) for a > b, without cancellation in either tail.

    sigmoid(a) - sigmoid(b) = sigmoid(-b) - sigmoid(-a): the pair is flipped so both lie on
    the lower side, where log sigmoid keeps full precision; then
    log(s(a) - s(b)) = log s(a) + log(1 - exp(log s(b) - log s(a))).

    When a - b is so small that log s(a) - log s(b) loses its digits (a logistic far wider
    than a bin), the midpoint rule takes over: s(a) - s(b) = (a - b) s'(c) (1 + O((a - b)^2)),
    c = (a + b) / 2, s' = s(c) s(-c) (PixelCNN++'s fallback, which keeps the gradient alive).
    """
    flip = a + b > 0
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_a, log_b = F.logsigmoid(a), F.logsigmoid(b)
    exact = log_a + _log1mexp((log_a - log_b).clamp(min=1e-30))
    mid = 0.5 * (a + b)
    midpoint = torch.log((a - b).clamp(min=1e-30)) + F.logsigmoid(mid) + F.logsigmoid(-mid)
    return torch.where(log_a - log_b > 1e-3, exact, midpoint)


class DiscretizedLogisticMixture(Distribution):
    """A mixture of logistics discretized to ``BINS`` levels on [0, 1], per pixel:

        P(x) = sum_m pi_m [F_m(x + h) - F_m(x - h)],  F_m(y) = sigmoid((y - mu_m) / s_m),
        h = 1 / (2 (BINS - 1)),

    with the edges absorbing the tails: F_m(x + h) at x = 0 and 1 - F_m(x - h) at x = 1
    (Salimans et al. 2017, PixelCNN++; no channel coupling here). ``logits``, ``loc``,
    ``log_scale``: ``(*batch, M)``; batch shape ``(*batch)``.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, logits, loc, log_scale, validate_args=False):
        self.logits, self.loc = logits, loc
        self.log_scale = log_scale.clamp(min=LOG_SCALE_MIN)
        super().__init__(batch_shape=loc.shape[:-1], validate_args=validate_args)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        half = 0.5 / (BINS - 1)
        x = x.unsqueeze(-1)
        centred = x - self.loc
        inv_scale = torch.exp(-self.log_scale)
        plus, minus = inv_scale * (centred + half), inv_scale * (centred - half)
        log_mass = torch.where(
            x < half,
            F.logsigmoid(plus),  # x = 0: everything below its upper edge
            torch.where(
                x > 1 - half,
                F.logsigmoid(-minus),  # x = 1: everything above its lower edge
                log_sigmoid_difference(plus, minus),
            ),
        )
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + log_mass, -1)

    @property
    def mean(self) -> torch.Tensor:
        """sum_m pi_m mu_m, clamped to [0, 1] (the discretization's edges aside)."""
        return (torch.softmax(self.logits, -1) * self.loc).sum(-1).clamp(0.0, 1.0)

    def sample(self, sample_shape=()) -> torch.Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            m = Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            loc = self.loc.expand(shape).gather(-1, m).squeeze(-1)
            log_scale = self.log_scale.expand(shape).gather(-1, m).squeeze(-1)
            u = torch.rand_like(loc).clamp(1e-6, 1 - 1e-6)
            y = loc + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
            return torch.round(y.clamp(0.0, 1.0) * (BINS - 1)) / (BINS - 1)


class DiscretizedLogisticLikelihood(nn.Module):
    """p(x | z) = prod_i DiscretizedLogisticMixture(x_i), for 8-bit images scaled to [0, 1].

    The decoder emits ``param_shape`` = ``(P * C, *rest)`` for data ``(C, *rest)``: per pixel
    P = 2 numbers (mu, log s) with one component, 3 M (mixture logits, mu, log s) with M.
    Its log-probability is a true log-likelihood of the 256-level data (nats), comparable to
    other discrete models' NLL.
    """

    def __init__(self, x_shape: tuple[int, ...], n_components: int = 1):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.n_components = n_components
        self.n_params = 2 if n_components == 1 else 3 * n_components
        self.param_shape = (self.n_params * self.x_shape[0], *self.x_shape[1:])

    def _split(self, out: torch.Tensor):
        n = len(self.x_shape)
        out = out.unflatten(-n, (self.n_params, self.x_shape[0])).movedim(-n - 1, -1)
        if self.n_components == 1:
            loc, log_scale = out.chunk(2, -1)
            return torch.zeros_like(loc), loc, log_scale
        return out.chunk(3, -1)

    def forward(self, out: torch.Tensor) -> Distribution:
        return Independent(DiscretizedLogisticMixture(*self._split(out)), len(self.x_shape))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return DiscretizedLogisticMixture(*self._split(out)).mean


def make_likelihood(
    name: str,
    x_shape: tuple[int, ...],
    sigma: float,
    learn_sigma: bool,
    shared_sigma: bool,
    components: int = 1,
):
    if name == "bernoulli":
        return BernoulliLikelihood(x_shape)
    if name == "continuous-bernoulli":
        return ContinuousBernoulliLikelihood(x_shape)
    if name == "logistic":
        return DiscretizedLogisticLikelihood(x_shape, components)
    if name == "gaussian":
        return GaussianLikelihood(
            x_shape, sigma=sigma, learn_sigma=learn_sigma, shared=shared_sigma
        )
    raise VaelabError(
        f"likelihood {name!r} is chosen from the data when training; to build a model "
        "directly, name it: bernoulli, gaussian, continuous-bernoulli or logistic"
    )
