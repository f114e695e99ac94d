"""Shared fixtures: one short real training run on the embedded digits, reused read-only."""

from __future__ import annotations

import os

# One thread for torch, here and in the subprocesses tests start: pytest-xdist runs one worker
# per core, and tiny models on two threads of a busy machine spend most of their time waiting
# on each other (a 2-D run's posterior-gap figures took 14 s on two threads, 2.5 s on one).
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from vaelab import Config, train  # noqa: E402

torch.set_num_threads(1)

# every plot a run with a latent space of 2 or more dimensions must have
PLOTS = {
    "learning_curves.png",
    "reconstructions.png",
    "samples.png",
    "latent_space.png",
    "manifold.png",
    "posterior_samples.png",
    "kl_per_dim.png",
    "traversals.png",
}
# and what a 2-D run with one Gaussian q adds (at the end of training, or by `vaelab plot`):
# the true posterior beside q and q*, and q*'s ELBO by step
GAP_PLOTS = {"posterior_gap.png", "local_elbo_trace.png"}


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A 2-epoch, 2-D latent run on digits, trained through the public API."""
    out = tmp_path_factory.mktemp("runs") / "digits2d"
    config = Config(data="digits", latent_dim=2, epochs=2, out=str(out), hidden=[64])
    return train(config, progress=False, log=lambda _: None)
