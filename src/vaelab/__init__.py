"""vaelab: latent variable models with amortized variational inference.

>>> from vaelab import VAE, Config, train, load
>>> run = train(Config(data="digits", latent_dim=2, epochs=5, out="runs/api"))
>>> model = load(run)
>>> q = model.encode(x)            # q(z|x): .mean, .stddev, .rsample((K,)) -> (K, B, D)
>>> model.elbo(x), model.sample(16)

The package is a house of floors, each importing only from those below it (docs/architecture.md):
config -> data -> core -> objectives -> build, checkpoint -> training -> evaluate -> plots,
report, encode, explore -> runs -> cli.
"""

from importlib.metadata import PackageNotFoundError, version

from . import evaluate
from .checkpoint import Run, load, open_run, save
from .config import Config
from .core import baselines, inference
from .core.gaussian import reparameterize
from .core.model import VAE
from .errors import VaelabError
from .evaluate import disentangle
from .runs import resume, train

__all__ = [
    "VAE",
    "Config",
    "Run",
    "VaelabError",
    "baselines",
    "disentangle",
    "evaluate",
    "inference",
    "load",
    "open_run",
    "reparameterize",
    "resume",
    "save",
    "train",
]
try:
    __version__ = version("vaelab")  # pyproject.toml's, as installed
except PackageNotFoundError:  # a source tree never installed
    __version__ = "unknown"
