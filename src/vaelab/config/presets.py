"""Named configurations that reproduce published set-ups: ``vaelab train --preset NAME``.

A preset is a dict of :class:`~vaelab.config.Config` values. It is the lowest layer: a
``--config`` file overrides it and flags override both, so ``--preset mnist-vae --minutes 30``
is the preset under a 30-minute budget. Why each value was chosen, with the trials behind
it, is in docs/benchmarks.md ("Presets").
"""

from __future__ import annotations

from typing import Any

from ..errors import VaelabError

# Burda et al. 2015, one stochastic layer: x -> 200 tanh -> 200 tanh -> z (50) and back,
# Bernoulli likelihood on dynamically binarized MNIST, Adam with eps = 1e-4, the decoder's
# output bias at the logit of the pixel means. A batch of 100 (Burda used 20) for a CPU's
# throughput; the cosine schedule anneals over whatever budget the run is given.
_BURDA_ONE_LAYER: dict[str, Any] = {
    "data": "mnist",
    "arch": "mlp",
    "hidden": [200, 200],
    "activation": "tanh",
    "latent_dim": 50,
    "likelihood": "bernoulli",
    "binarize": "dynamic",
    "decoder_bias": "data",
    "batch_size": 100,
    "lr": 1e-3,
    "adam_eps": 1e-4,
    "lr_schedule": "cosine",
    "epochs": 1000,
    "keep_best": True,
}

# Tomczak & Welling 2018, one stochastic layer with the VampPrior: x -> 300 -> 300 -> z (40)
# and back with gated units as in their code, K = 500 pseudo-inputs, Bernoulli on dynamically
# binarized MNIST, a 10-epoch KL warm-up. A batch of 500 (theirs: 100), since every step also
# encodes the 500 pseudo-inputs; the rest as mnist-vae.
_VAMP_ONE_LAYER: dict[str, Any] = {
    "data": "mnist",
    "arch": "mlp",
    "hidden": [300, 300],
    "activation": "gated",
    "decoder_bias": "data",
    "adam_eps": 1e-4,
    "latent_dim": 40,
    "prior": "vamp",
    "prior_components": 500,
    "likelihood": "bernoulli",
    "binarize": "dynamic",
    "batch_size": 500,
    "lr": 2e-3,
    "lr_schedule": "cosine",
    "kl_warmup": 10,
    "epochs": 1000,
    "minutes": 30.0,
    "keep_best": True,
}

PRESETS: dict[str, dict[str, Any]] = {
    "mnist-vae": {**_BURDA_ONE_LAYER, "objective": "elbo", "k": 1},
    "mnist-iwae": {**_BURDA_ONE_LAYER, "objective": "iwae", "k": 50},
    "mnist-vamp": dict(_VAMP_ONE_LAYER),
    # the VampPrior model on the IWAE bound with K = 5, for an hour
    "mnist-best": {
        **_VAMP_ONE_LAYER,
        "objective": "iwae",
        "k": 5,
        "minutes": 60.0,
    },
}


def preset(name: str) -> dict[str, Any]:
    """The configuration values of preset ``name`` (a fresh copy)."""
    if name not in PRESETS:
        raise VaelabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return {key: (list(v) if isinstance(v, list) else v) for key, v in PRESETS[name].items()}
