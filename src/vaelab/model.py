"""The latent variable model p(z) p_theta(x | z) with an amortized encoder q_phi(z | x).

Shapes: ``x`` is ``(B, *x_shape)``; ``z`` is ``(B, D)`` or, with K samples per x,
``(K, B, D)``: "many z for one x" is always the leading sample dimension.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from .config import Config
from .errors import VaelabError
from .likelihoods import BernoulliLikelihood, ContinuousBernoulliLikelihood, make_likelihood
from .networks import make_networks
from .priors import make_prior


def reparameterize(loc: torch.Tensor, log_var: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """z = loc + exp(log_var / 2) * eps, eps ~ N(0, I): a sample of N(loc, diag exp(log_var)).

    Differentiable in ``loc`` and ``log_var``. Shape ``(B, D)``, or ``(k, B, D)`` when ``k``
    is given.
    """
    shape = loc.shape if k is None else (k, *loc.shape)
    eps = torch.randn(shape, dtype=loc.dtype, device=loc.device)
    return loc + torch.exp(0.5 * log_var) * eps


LOG_VAR_BOUND = 20.0  # q's variances lie in (e^-20, e^20): standard deviations 4.5e-5 .. 2.2e4
LOG_VAR_LINEAR = 10.0  # inside (-10, 10) the encoder's log-variance is used exactly as it is


def bounded_log_var(
    raw: torch.Tensor, bound: float = LOG_VAR_BOUND, linear: float = LOG_VAR_LINEAR
) -> torch.Tensor:
    """log sigma^2 kept in (-bound, bound) by construction:

        f(r) = r                                                  for |r| <= a
        f(r) = sign(r) (a + (L - a) tanh((|r| - a) / (L - a)))    beyond,   a = linear, L = bound

    f is the identity in the working range, so no model changes there; beyond it f bends
    smoothly (continuous slope, 1 at |r| = a) towards +-L, so a diverging encoder cannot make
    sigma overflow to inf or underflow to 0, which would turn log q(z|x) into NaN. Not a clamp:
    f is strictly increasing and its slope only tends to 0.
    """
    excess = raw.abs() - linear
    width = bound - linear
    bent = torch.sign(raw) * (linear + width * torch.tanh(excess.clamp(min=0.0) / width))
    return torch.where(excess > 0, bent, raw)


def likelihood_and_networks(config: Config, x_shape: tuple[int, ...], arch: str, latent_dim: int):
    """The likelihood p(x | z) ``config`` names, and the ``arch`` encoder and decoder between
    ``x_shape`` and ``latent_dim`` units (the decoder emits the likelihood's parameters)."""
    likelihood = make_likelihood(
        config.likelihood,
        x_shape,
        sigma=config.sigma,
        learn_sigma=config.learn_sigma,
        shared_sigma=config.shared_sigma,
        components=config.logistic_components,
    )
    encoder, decoder = make_networks(
        arch,
        x_shape,
        config.hidden,
        latent_dim,
        config.activation,
        out_shape=getattr(likelihood, "param_shape", None),
    )
    return likelihood, encoder, decoder


class VAE(nn.Module):
    """p(x, z) = p(z) p_theta(x | z), with q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2).

    Parameters
    ----------
    encoder : module, ``x (B, *x_shape) -> (loc, log_var)``, each ``(B, D)``.
    decoder : module, ``z (*batch, D) -> parameters (*batch, *x_shape)``.
    prior : module, ``() -> p(z)`` with event shape ``(D,)``.
    likelihood : module, ``decoder output -> p(x | z)`` with event shape ``x_shape``.
    """

    def __init__(self, encoder, decoder, prior, likelihood, x_shape: tuple[int, ...]):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.x_shape = tuple(x_shape)

    @classmethod
    def from_config(cls, config: Config, x_shape: tuple[int, ...], n_train: int = 0) -> VAE:
        """The model a config describes; with ``inference = "local"`` it also holds
        ``local``, the per-example posteriors of ``n_train`` training examples."""
        if config.arch == "hvae2" and cls is VAE:
            from .hierarchy import HierarchicalVAE

            return HierarchicalVAE.from_config(config, x_shape, n_train)
        likelihood, encoder, decoder = likelihood_and_networks(
            config, x_shape, config.arch, config.latent_dim
        )
        prior = make_prior(
            config.prior, config.latent_dim, config.prior_components, encoder, x_shape
        )
        model = cls(encoder, decoder, prior, likelihood, x_shape)
        if config.inference == "local":
            from .inference import LocalTable

            model.local = LocalTable(n_train, config.latent_dim)
        return model

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    # --- the three distributions ------------------------------------------------------------

    def q_z(self, x: torch.Tensor) -> Distribution:
        """q_phi(z | x) = N(loc, diag exp(log_var)): batch shape ``(B,)``, event ``(D,)``.

        ``log_var`` is the encoder's output passed through :func:`bounded_log_var`."""
        loc, log_var = self.encoder(x)
        scale = torch.exp(0.5 * bounded_log_var(log_var))
        return Independent(Normal(loc, scale, validate_args=False), 1)

    def p_z(self) -> Distribution:
        """The prior p(z): event shape ``(D,)`` (inside :meth:`fixed_prior`, the one computed
        on entry)."""
        fixed = self.__dict__.get("_fixed_pz")
        return self.prior() if fixed is None else fixed

    @contextmanager
    def fixed_prior(self) -> Iterator[None]:
        """Compute p(z) once, without gradient, and reuse it within the block.

        For evaluation loops that ask for log p(z) many times while the weights stand still:
        a VampPrior would otherwise run the encoder on all its pseudo-inputs at every call.
        Gradients in z still flow through the fixed p(z)'s log_prob.
        """
        with torch.no_grad():
            self.__dict__["_fixed_pz"] = self.prior()
        try:
            yield
        finally:
            self.__dict__["_fixed_pz"] = None

    def p_x(self, z: torch.Tensor) -> Distribution:
        """p_theta(x | z): batch shape ``z.shape[:-1]``, event shape ``x_shape``."""
        return self.likelihood(self.decoder(z))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) = log p(z) + log p(x | z); ``z`` ``(*batch, B, D)`` -> ``(*batch, B)``."""
        return self.p_z().log_prob(z) + self.p_x(z).log_prob(x)

    @torch.no_grad()
    def init_output_bias(self, x: torch.Tensor) -> None:
        """Start the decoder's output bias at the data's mean ``x.mean(0)``: its logit for a
        Bernoulli likelihood (clamped to [1e-3, 1 - 1e-3]), the mean itself for a Gaussian.

        So p(x | z) starts as the best factorised model of the pixels, not at 1/2 each: the
        initialisation Burda et al. use. ``x``: ``(N, *x_shape)``; MLP and linear decoders.
        """
        output = getattr(self.decoder, "output", None)
        if hasattr(self.likelihood, "param_shape"):
            raise VaelabError(
                "--decoder-bias data needs one output per pixel: not --likelihood logistic"
            )
        if output is None:
            raise VaelabError("--decoder-bias data needs --arch mlp or linear")
        mean = x.double().mean(0).flatten()
        if isinstance(self.likelihood, BernoulliLikelihood | ContinuousBernoulliLikelihood):
            mean = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
        output.bias.copy_(mean.to(output.bias))

    # --- the user's API ---------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> Distribution:
        """The posterior q(z | x) for a batch: ``.mean``, ``.stddev``, ``.rsample((K,))``."""
        return self.q_z(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """E[x | z], the image the decoder paints for ``z``: shape ``(*batch, *x_shape)``."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, chunk: int = 4096) -> torch.Tensor:
        """n draws z ~ p(z), decoded: E[x | z] if ``mean`` else x ~ p(x | z). ``(n, *x_shape)``.

        Decoded ``chunk`` z at a time, so the decoder's activations stay bounded however large
        ``n`` is; the result does not depend on ``chunk``.
        """
        z = self.p_z().sample((n,))
        parts = [self.decode(c) if mean else self.p_x(c).sample() for c in z.split(chunk)]
        return torch.cat(parts)

    def elbo(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) per example, ``(B,)``, nats."""
        from .objectives import elbo

        return elbo(self, x, k=k).elbo
