"""The model and its posteriors, as distributions: no configuration, no training, no files.

- ``gaussian``: the diagonal Gaussian q, its bounded log-variance and its sampling;
- ``likelihoods``: decoder output -> p(x | z); ``priors``: modules that return p(z);
- ``networks``: plain encoders and decoders, tensors in and out; ``kl``: KL(q || p);
- ``model``: :class:`VAE` (q_z, p_z, p_x, log_joint, elbo, sample); ``hierarchy``: two
  stochastic layers; ``inference``: amortized and per-datapoint posteriors;
- ``baselines``: the closed forms of the linear-Gaussian model (pPCA).
"""
