"""Scoring a trained model on a data split.

The ELBO is averaged over examples with float64 sums; its noise comes from a fixed seed, drawn
afresh for each batch of examples, so the same run evaluated twice gives the same numbers, and
so do W processes of a torchrun launch that each score every W-th batch (``distributed``).
The importance-sampled log-likelihood (Burda et al. 2015) does the same, in chunks over K
and over the data so memory stays bounded whatever K is; ``active_units`` and
``bits_per_dim`` summarise it.

The modules, in the order a score is made: ``sampling`` (the seeds, rows at a time and ranks
they all share), ``elbo``, ``posterior`` (means, KL per dimension, active units) and
``likelihood`` (log p^(x), the NLL, bits per dimension, the exact linear-Gaussian log p(x)).
Every name is importable from ``vaelab.evaluate`` itself.
"""

from .elbo import evaluate_elbo
from .likelihood import bits_per_dim, exact_log_px, importance_sampled_log_px, log_likelihood
from .posterior import active_units, posterior_means, posterior_stats
from .sampling import EVAL_ROWS, SAMPLE_BLOCK, fixed_prior
from .sampling import _samples_from_q as _samples_from_q  # tests check its seeding

__all__ = [
    "EVAL_ROWS",
    "SAMPLE_BLOCK",
    "active_units",
    "bits_per_dim",
    "evaluate_elbo",
    "exact_log_px",
    "fixed_prior",
    "importance_sampled_log_px",
    "log_likelihood",
    "posterior_means",
    "posterior_stats",
]
