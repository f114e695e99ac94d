"""The one place where a :class:`~vaelab.config.Config` becomes a model and its objective.

:func:`build_model` turns the config's names (arch, likelihood, prior, posterior, inference)
into the modules of :mod:`vaelab.core`; :func:`batch_terms` picks the objective of
:mod:`vaelab.objectives` the config names and runs it on one training batch. A new prior,
posterior family or objective is one class or function on its floor, registered here
(:data:`PRIORS`, :data:`POSTERIORS`, :func:`batch_terms`); likelihoods and networks are
registered beside their classes (``core.likelihoods.make_likelihood``,
``core.networks.make_networks``).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .core.hierarchy import Conditional, FirstLayerDecoder, HierarchicalVAE, TwoLayerPrior
from .core.inference import LocalTable
from .core.likelihoods import make_likelihood
from .core.model import VAE
from .core.networks import make_networks
from .core.posteriors import DiagonalPosterior, FullPosterior, IAFPosterior
from .core.priors import DEFAULT_COMPONENTS, MixtureOfGaussians, StandardNormal, VampPrior
from .errors import VaelabError
from .objectives import (
    Discriminator,
    Terms,
    beta_tc,
    elbo,
    factor_vae,
    free_bits_elbo,
    iwae,
    semi_amortized_elbo,
)


def likelihood_and_networks(
    config: Config, x_shape: tuple[int, ...], arch: str, latent_dim: int, extra: int = 0
):
    """The likelihood p(x | z) ``config`` names, and the ``arch`` encoder and decoder between
    ``x_shape`` and ``latent_dim`` units (the decoder emits the likelihood's parameters, the
    encoder ``extra`` numbers beside (loc, log_var) for the posterior family)."""
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
        extra=extra,
    )
    return likelihood, encoder, decoder


# p(z) by name: (latent_dim, n_components, encoder, x_shape) -> prior module; n_components is
# already resolved (priors.DEFAULT_COMPONENTS where the config says 0)
PRIORS = {
    "normal": lambda d, k, encoder, x_shape: StandardNormal(d),
    "mog": lambda d, k, encoder, x_shape: MixtureOfGaussians(d, k),
    "vamp": lambda d, k, encoder, x_shape: VampPrior(encoder, k, x_shape, d),
}


# q(z | x)'s family by name: (latent_dim, config) -> its module (vaelab.core.posteriors),
# whose ``extra`` says how many more numbers the encoder emits
POSTERIORS = {
    "diagonal": lambda d, config: DiagonalPosterior(),
    "full": lambda d, config: FullPosterior(d),
    "iaf": lambda d, config: IAFPosterior(d, config.flow_steps, config.flow_hidden),
}


def make_posterior(config: Config, latent_dim: int) -> nn.Module:
    """The posterior family ``config.posterior`` names (a key of :data:`POSTERIORS`)."""
    if config.posterior not in POSTERIORS:
        raise VaelabError(f"posterior {config.posterior!r} is not one of {', '.join(POSTERIORS)}")
    return POSTERIORS[config.posterior](latent_dim, config)


def make_prior(
    name: str, latent_dim: int, n_components: int = 0, encoder=None, x_shape=()
) -> nn.Module:
    """The prior ``name`` (a key of :data:`PRIORS`); ``n_components = 0`` takes
    :data:`~vaelab.core.priors.DEFAULT_COMPONENTS`. The VampPrior is built on ``encoder``."""
    if name not in PRIORS:
        raise VaelabError(f"prior {name!r} is not one of {', '.join(PRIORS)}")
    k = n_components or DEFAULT_COMPONENTS.get(name, 0)
    return PRIORS[name](latent_dim, k, encoder, x_shape)


def build_model(config: Config, x_shape: tuple[int, ...], n_train: int = 0) -> VAE:
    """The freshly initialised model ``config`` describes, for examples of ``x_shape``
    (initialised from torch's global generator: seed it first).

    With ``inference = "local"`` it also holds ``local``, the per-example posteriors of
    ``n_train`` training examples; with ``arch = "hvae2"`` it is a :class:`HierarchicalVAE`.
    ``model.config`` keeps ``config``, so that the model can be saved as a run on its own.
    """
    if config.arch == "hvae2":
        model = _build_hierarchical(config, x_shape)
    else:
        posterior = make_posterior(config, config.latent_dim)
        likelihood, encoder, decoder = likelihood_and_networks(
            config, x_shape, config.arch, config.latent_dim, posterior.extra
        )
        prior = make_prior(
            config.prior, config.latent_dim, config.prior_components, encoder, x_shape
        )
        model = VAE(encoder, decoder, prior, likelihood, x_shape, posterior)
        if config.inference == "local":
            model.local = LocalTable(n_train, config.latent_dim)
    model.config = config  # what vaelab.save writes beside the weights
    return model


def _build_hierarchical(config: Config, x_shape: tuple[int, ...]) -> HierarchicalVAE:
    """Two stochastic layers: D1 = ``latent_dim``, D2 = ``latent_dim_2`` (default D1 / 2)."""
    if config.inference != "amortized" or config.prior != "normal":
        raise VaelabError("--arch hvae2 needs --inference amortized and --prior normal")
    d1 = config.latent_dim
    d2 = config.latent_dim_2 or max(1, d1 // 2)
    hidden_2 = config.hidden_2 or config.hidden
    likelihood, encoder, decoder = likelihood_and_networks(config, x_shape, "mlp", d1)
    prior = TwoLayerPrior(d1, d2, hidden_2, config.activation)
    model = HierarchicalVAE(encoder, FirstLayerDecoder(decoder, d1), prior, likelihood, x_shape)
    model.q_z2 = Conditional(d1, hidden_2, d2, config.activation)
    return model


def batch_terms(
    model: VAE,
    x: torch.Tensor,
    index: torch.Tensor | None,
    config: Config,
    beta: float,
    step: int,
    n_data: int = 0,
    discriminator: Discriminator | None = None,
) -> tuple[Terms, torch.Tensor | None]:
    """The objective ``config`` names, on one training batch: ``(terms, rows)``.

    ``x``: ``(B, *x_shape)``, the examples at positions ``index`` ``(B,)`` of the training
    set; ``beta`` is the KL weight for this step (:func:`vaelab.training.schedules.kl_weight`).
    ``rows`` is ``None`` unless the run keeps one posterior per training example
    (``inference = "local"``): then it is the leaf tensor of the batch's posterior
    parameters, whose gradient the loop applies itself. ``n_data`` is the training set's size
    (beta-TCVAE's estimate of q(z)); ``discriminator`` FactorVAE's, when ``factor_gamma`` > 0.
    """
    k = config.k
    if config.inference == "local":  # classical SVI: q_i for each example i
        rows, qz = model.local.rows(index)
        return elbo(model, x, beta=beta, k=k, qz=qz), rows
    if config.inference == "semi-amortized":
        return semi_amortized_elbo(model, x, config.refine_steps, beta, k, step), None
    if config.objective == "iwae":
        return iwae(model, x, k=k, beta=beta, grad=config.iwae_grad), None
    if config.tc_beta:
        return beta_tc(model, x, config.tc_beta, n_data, beta=beta, k=k), None
    if config.factor_gamma:
        return factor_vae(model, x, discriminator, config.factor_gamma, beta=beta, k=k), None
    if config.free_bits:
        return free_bits_elbo(model, x, config.free_bits, beta=beta, k=k), None
    return elbo(model, x, beta=beta, k=k), None
