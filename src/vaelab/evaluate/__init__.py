"""Scoring a trained model: estimators of the ELBO, log p(x), the inference gaps and
disentanglement, each a function of a model and data that returns numbers.

Averages use float64 sums; the noise of every estimate comes from a fixed seed, drawn afresh
for each batch of examples, so the same run evaluated twice gives the same numbers, and so do
W processes of a torchrun launch that each score every W-th batch (``distributed``).

- ``sampling``: the seeds, rows at a time and ranks every estimator shares;
- ``statistics``: the standard error; ``elbo``: the ELBO of a data split;
- ``posterior``: posterior means, KL per dimension, active units;
- ``likelihood``: the importance-sampled log p(x) (Burda et al. 2015), the NLL, bits per
  dimension, the exact linear-Gaussian log p(x);
- ``ais``: annealed importance sampling; ``gap``: the approximation and amortization gaps
  (Cremer et al. 2018), and the true posterior of a 2-D latent space on a grid;
- ``validation``: what a run is scored with each epoch and at its end;
- ``disentangle``: MIG, DCI, SAP, the beta-VAE and FactorVAE metrics.
"""

from .ais import ais_log_px
from .elbo import evaluate_elbo
from .likelihood import (
    DEFAULT_K,
    bits_per_dim,
    exact_log_px,
    importance_sampled_log_px,
    log_likelihood,
)
from .posterior import active_units, posterior_means, posterior_stats
from .sampling import EVAL_ROWS, SAMPLE_BLOCK
from .statistics import standard_error

__all__ = [
    "DEFAULT_K",
    "EVAL_ROWS",
    "SAMPLE_BLOCK",
    "active_units",
    "ais_log_px",
    "bits_per_dim",
    "evaluate_elbo",
    "exact_log_px",
    "importance_sampled_log_px",
    "log_likelihood",
    "posterior_means",
    "posterior_stats",
    "standard_error",
]
