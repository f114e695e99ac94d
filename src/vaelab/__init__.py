"""vaelab: latent variable models with amortized variational inference.

>>> from vaelab import VAE, Config, train, load
>>> run = train(Config(data="digits", latent_dim=2, epochs=5, out="runs/api"))
>>> model = load(run)
>>> q = model.encode(x)            # q(z|x): .mean, .stddev, .rsample((K,)) -> (K, B, D)
>>> model.elbo(x), model.sample(16)
"""

from .checkpoint import load
from .config import Config
from .errors import VaelabError
from .model import VAE, reparameterize
from .train import train

__all__ = ["VAE", "Config", "VaelabError", "load", "reparameterize", "train"]
__version__ = "0.1.0"
