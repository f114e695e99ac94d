"""The latent variable model p(z) p_theta(x | z) with an amortized encoder q_phi(z | x).

Shapes: ``x`` is ``(B, *x_shape)``; ``z`` is ``(B, D)`` or, with K samples per x,
``(K, B, D)``: "many z for one x" is always the leading sample dimension.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution

from ..errors import VaelabError
from .gaussian import Noise
from .kl import kl_term
from .likelihoods import BernoulliLikelihood, ContinuousBernoulliLikelihood
from .posteriors import DiagonalPosterior


@dataclass(frozen=True)
class ELBOEstimate:
    """One Monte Carlo estimate of the ELBO and what it was made of.

    qz : q(z | x), batch ``(B,)``, event ``(D,)``; pz : p(z), event ``(D,)``.
    z : ``(K, B, D)``, the K reparameterized draws z ~ q(z | x).
    log_px_z : ``(K, B)``, log p(x | z_k) of each draw.
    kl : ``(B,)``, KL(q(z | x) || p(z)): closed form for two diagonal Gaussians, else the
        Monte Carlo mean of log q(z) - log p(z) over the same draws.
    """

    qz: Distribution
    pz: Distribution
    z: torch.Tensor
    log_px_z: torch.Tensor
    kl: torch.Tensor

    @property
    def reconstruction(self) -> torch.Tensor:
        """E_q[log p(x | z)] per example ``(B,)``: the mean over the K draws."""
        return self.log_px_z.mean(0)

    @property
    def elbo(self) -> torch.Tensor:
        """ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) per example ``(B,)``."""
        return self.reconstruction - self.kl


class VAE(nn.Module):
    """p(x, z) = p(z) p_theta(x | z), with q_phi(z | x) = N(mu_phi(x), diag sigma_phi(x)^2)
    or, with another ``posterior``, a richer family built on it.

    Parameters
    ----------
    encoder : module, ``x (B, *x_shape) -> (loc, log_var)``, each ``(B, D)``; for a
        ``posterior`` with ``extra`` > 0, ``(loc, log_var, extra)``, the last ``(B, extra)``.
    decoder : module, ``z (*batch, D) -> parameters (*batch, *x_shape)``.
    prior : module, ``() -> p(z)`` with event shape ``(D,)``.
    likelihood : module, ``decoder output -> p(x | z)`` with event shape ``x_shape``.
    posterior : module, the family of q (:mod:`vaelab.core.posteriors`), ``(loc, log_var,
        *extra, noise=) -> q(z | x)``; default the diagonal Gaussian.
    """

    # where q's reparameterization draws its eps: None, torch's global generator; a
    # data-parallel training step sets a source that draws the whole global batch's
    noise: Noise | None = None
    # the dtype the encoder's and decoder's matrix products run in (None: float32, the
    # weights'); set by :meth:`computing_in`. The outputs are float32 whatever it is, so
    # every log-density, KL and sum over pixels stays float32
    compute_dtype: torch.dtype | None = None

    def __init__(
        self,
        encoder,
        decoder,
        prior,
        likelihood,
        x_shape: tuple[int, ...],
        posterior: nn.Module | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.likelihood = likelihood
        self.x_shape = tuple(x_shape)
        self.posterior = DiagonalPosterior() if posterior is None else posterior

    @property
    def latent_dim(self) -> int:
        return self.prior.latent_dim

    # --- the three distributions ------------------------------------------------------------

    def q_z(self, x: torch.Tensor) -> Distribution:
        """q_phi(z | x): batch shape ``(B,)``, event ``(D,)``. N(loc, diag exp(log_var)) for
        the diagonal family, ``log_var`` the encoder's output passed through
        :func:`~vaelab.core.gaussian.bounded_log_var`; the full-covariance Gaussian or the
        IAF for the others (:attr:`posterior`, :mod:`vaelab.core.posteriors`)."""
        return self.posterior(*self.network(self.encoder, x), noise=self.noise)

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
        return self.likelihood(self.network(self.decoder, z))

    # --- numerical precision ----------------------------------------------------------------

    def network(self, net: nn.Module, x: torch.Tensor):
        """``net(x)`` (the encoder or the decoder), its matrix products and convolutions in
        :attr:`compute_dtype` through ``torch.autocast``, its outputs cast back to float32."""
        if self.compute_dtype is None:
            return net(x)
        with torch.autocast(x.device.type, dtype=self.compute_dtype):
            out = net(x)
        return tuple(t.float() for t in out) if isinstance(out, tuple) else out.float()

    @contextmanager
    def computing_in(self, dtype: torch.dtype | None) -> Iterator[None]:
        """Run the encoder and decoder in ``dtype`` (e.g. ``torch.bfloat16``; None: float32)
        within the block; the weights, the gradients and every density stay float32."""
        before, self.compute_dtype = self.compute_dtype, dtype
        try:
            yield
        finally:
            self.compute_dtype = before

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
        return self.likelihood.mean(self.network(self.decoder, z))

    @torch.no_grad()
    def sample(self, n: int, mean: bool = True, chunk: int = 4096) -> torch.Tensor:
        """n draws z ~ p(z), decoded: E[x | z] if ``mean`` else x ~ p(x | z). ``(n, *x_shape)``.

        Decoded ``chunk`` z at a time, so the decoder's activations stay bounded however large
        ``n`` is; the result does not depend on ``chunk``.
        """
        z = self.p_z().sample((n,))
        parts = [self.decode(c) if mean else self.p_x(c).sample() for c in z.split(chunk)]
        return torch.cat(parts)

    def elbo_terms(
        self, x: torch.Tensor, k: int = 1, qz: Distribution | None = None
    ) -> ELBOEstimate:
        """The ELBO of ``x`` ``(B, *x_shape)`` estimated with ``k`` reparameterized draws: the
        one ELBO estimate in vaelab, which every objective and the evaluation build on.

            ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) <= log p(x)   (nats)

        The expectation is the mean over the draws z ``(k, B, D)``; the KL is
        :func:`~vaelab.core.kl.kl_term`. q is the encoder's unless ``qz`` is given (a
        per-datapoint or refined posterior, :mod:`vaelab.core.inference`).
        """
        qz = self.q_z(x) if qz is None else qz
        pz = self.p_z()
        z = qz.rsample((k,))
        log_px_z = self.p_x(z).log_prob(x)  # (k, B)
        return ELBOEstimate(qz, pz, z, log_px_z, kl_term(qz, pz, z))

    def elbo(self, x: torch.Tensor, k: int = 1, qz: Distribution | None = None) -> torch.Tensor:
        """ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z)) per example, ``(B,)``, nats
        (:meth:`elbo_terms`)."""
        return self.elbo_terms(x, k, qz).elbo
