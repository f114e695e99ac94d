"""Named configurations that reproduce published set-ups: ``vaelab train --preset NAME``.

A preset is a dict of :class:`~vaelab.config.Config` values. It is the lowest layer: a
``--config`` file overrides it and flags override both, so ``--preset mnist-vae --minutes 30``
is the preset under a 30-minute budget.
"""

from __future__ import annotations

from typing import Any

from .errors import VaelabError

# Burda et al. 2015, one stochastic layer: x -> 200 tanh -> 200 tanh -> z (50) and back,
# Bernoulli likelihood on dynamically binarized MNIST, Adam with eps = 1e-4. The decoder's
# output bias starts at the logit of the training pixel means. The batch of 100 (Burda used
# 20) buys about 3x the samples per second on a CPU; the cosine schedule anneals the rate
# over whatever budget the run is given.
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

PRESETS: dict[str, dict[str, Any]] = {
    "mnist-vae": {**_BURDA_ONE_LAYER, "objective": "elbo", "k": 1},
    "mnist-iwae": {**_BURDA_ONE_LAYER, "objective": "iwae", "k": 50},
}


def preset(name: str) -> dict[str, Any]:
    """The configuration values of preset ``name`` (a fresh copy)."""
    if name not in PRESETS:
        raise VaelabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return {key: (list(v) if isinstance(v, list) else v) for key, v in PRESETS[name].items()}
