"""Training objectives: pure functions of ``(model, x, ...)`` returning a :class:`Terms`
record (loss, elbo, reconstruction, kl; nats per example). One module per estimator:

- ``elbo``: the ELBO (Kingma & Welling 2014) and free bits (Kingma et al. 2016);
- ``iwae``: the importance-weighted bound (Burda et al. 2015), standard or DReG gradient;
- ``beta_tc``: beta-TCVAE (Chen et al. 2018);
- ``factor_vae``: FactorVAE (Kim & Mnih 2018) and its discriminator;
- ``semi_amortized``: the encoder's q refined per batch (after Kim et al. 2018).

Which one a run trains with is decided in one place, :func:`vaelab.build.batch_terms`.
"""

from .beta_tc import beta_tc, tc_decomposition
from .elbo import Terms, elbo, free_bits_elbo
from .factor_vae import Discriminator, factor_vae
from .iwae import iwae
from .semi_amortized import semi_amortized_elbo

__all__ = [
    "Discriminator",
    "Terms",
    "beta_tc",
    "elbo",
    "factor_vae",
    "free_bits_elbo",
    "iwae",
    "semi_amortized_elbo",
    "tc_decomposition",
]
