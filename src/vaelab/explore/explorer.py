"""The explorer's model side: a run opened once and the answers the page asks of it, no HTTP.

:class:`Explorer` answers info, decode (E[x | z] for ``(N, D)`` latent vectors) and point
(one test image's q(z|x), its mean and covariance ellipse in the map's two dimensions, K
draws z_k from it, and for each z_k both the decoder's mean E[x | z_k] and a draw
x_k ~ p(x | z_k)); :func:`parse_z` reads a decode request's JSON into ``(N, D)``, refusing
what a client got wrong with :class:`BadRequest`.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import open_run
from ..device import fork_rng
from ..errors import VaelabError
from ..evaluate import posterior_stats
from ..files import regular_files
from ..plots import PLOT_EXAMPLES
from ..plots.ellipses import ellipse_axes, posterior_moments
from ..report import check_run

MAX_POINTS = 1024  # latent vectors per decode request
MAX_K = 64  # posterior samples per clicked point
MAX_SEED = 2**31 - 1  # a point request's seed: 0..MAX_SEED

# torch.distributions draw from torch's one global generator; requests come on many threads
_GLOBAL_RNG = threading.Lock()


class BadRequest(Exception):
    """A request the client got wrong: answered with 400 and this message."""


class Explorer:
    """A run's model and test set, and the answers the page asks for (no HTTP in here).

    Images are ``(N, C, H, W)`` in [0, 1]; latent vectors ``(N, D)``.
    """

    def __init__(self, run: str | Path):
        self.run = check_run(run)
        opened = open_run(self.run)
        self.model = opened.model
        if self.model.latent_dim < 2:
            raise VaelabError("vaelab explore needs a latent space of 2 or more dimensions")
        if len(self.model.x_shape) != 3:
            raise VaelabError(
                f"vaelab explore draws images, and this run's examples have shape "
                f"{self.model.x_shape}; see its latent space with vaelab report {run}"
            )
        dataset = opened.data()
        # a tensor, also for a test split streamed from disk
        self.x = opened.split("test", dataset)[:PLOT_EXAMPLES]
        labels = dataset.test_labels
        self.labels = None if labels is None else labels[:PLOT_EXAMPLES].tolist()
        # label i is named label_names[i] (class folders, a table's label strings); [] when not
        self.label_names = [str(name) for name in dataset.label_names]
        with torch.inference_mode():
            means, _, kls = posterior_stats(self.model, self.x)
        self.kl = kls.double().mean(0)
        self.dims = sorted(int(d) for d in torch.argsort(self.kl, descending=True)[:2])
        self.map_points = means[:, self.dims]
        # regular files inside the run only: a link in plots/ is never served
        self.plots = {p.name: p for p in regular_files(self.run / "plots", "*.png", self.run)}

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def likelihood(self) -> str:
        """The name of p(x | z)'s family, for the page: Bernoulli, Gaussian, ..."""
        return type(self.model.likelihood).__name__.removesuffix("Likelihood")

    def info(self) -> dict:
        c, h, w = self.model.x_shape
        return {
            "run": self.run.resolve().name,
            "latent_dim": self.latent_dim,
            "dims": self.dims,
            "kl_per_dim": [round(v, 4) for v in self.kl.tolist()],
            "image": {"channels": c, "height": h, "width": w},
            "points": [[round(a, 4), round(b, 4)] for a, b in self.map_points.tolist()],
            "labels": self.labels,
            "label_names": self.label_names,
            "plots": sorted(self.plots),
            "max_points": MAX_POINTS,
            "max_k": MAX_K,
            "likelihood": self.likelihood,
        }

    @staticmethod
    def _pixels(images: torch.Tensor) -> list[list[int]]:
        """``(N, C, H, W)`` in [0, 1] -> N flat lists of bytes in (H, W, C) order."""
        scaled = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        return scaled.permute(0, 2, 3, 1).reshape(len(images), -1).tolist()

    def decode(self, z: torch.Tensor) -> list[list[int]]:
        """E[x | z] for ``z`` ``(N, D)``, as :meth:`_pixels`."""
        with torch.inference_mode():
            return self._pixels(self.model.decode(z))

    def sample_x(self, z: torch.Tensor, seed: int) -> torch.Tensor:
        """x ~ p(x | z) for ``z`` ``(N, D)``: ``(N, C, H, W)``, one draw per z from the
        model's own likelihood (``model.p_x(z).sample()``), the same for the same ``seed``.

        The likelihood draws from torch's global generator, so it is seeded for this call and
        restored after; the lock keeps another request's thread from seeding or drawing in
        between, which would make the draw depend on what else the server was answering.
        """
        with _GLOBAL_RNG, fork_rng(torch.device("cpu")), torch.inference_mode():
            torch.default_generator.manual_seed(seed)
            return self.model.p_x(z).sample()

    def point(self, index: int, k: int, seed: int = 0) -> dict:
        """Test image ``index`` and "for one x, many z":

        q(z|x)'s mean ``loc`` and marginal standard deviations ``scale`` (D numbers each), its
        1-sigma ellipse in the map's dimensions ``dims`` (``ellipse``: ``semi_axes`` and
        ``angle`` in degrees from z[dims[0]] towards z[dims[1]], :func:`ellipse_axes`), K draws
        z_k ~ q(z|x) ``(K, D)`` (``samples``), and for each z_k the decoder's mean E[x | z_k]
        (``decodings``) and one image x_k ~ p(x | z_k) (``x_samples``), the reconstruction
        E[x | z = loc], and the test image. Images as :meth:`_pixels`. The mean and covariance
        are exact for a Gaussian q; an IAF's are estimated from ``draws`` draws of q
        (:func:`~vaelab.plots.ellipses.posterior_moments`; ``draws`` = 0 when exact). The
        draws depend on (``seed``, ``index``) only: the same dots and images on every click.
        """
        x = self.x[index : index + 1]
        z_seed, x_seed = np.random.SeedSequence([seed, index]).generate_state(2, np.uint64)
        with torch.inference_mode():
            qz = self.model.q_z(x)
        # q draws from torch's global generator, as the likelihood does (see sample_x)
        with _GLOBAL_RNG, fork_rng(torch.device("cpu")), torch.inference_mode():
            torch.default_generator.manual_seed(int(z_seed))
            z = qz.rsample((k,))[:, 0]
            moments = posterior_moments(qz)
        loc, scale = moments.mean[0], moments.scale[0]
        pair = torch.tensor(self.dims)
        semi, angle = ellipse_axes(moments.covariance[0][pair][:, pair].double().numpy())
        with torch.inference_mode():
            decoded = self.model.decode(torch.cat([loc[None], z]))
        x_samples = self.sample_x(z, int(x_seed))
        return {
            "index": index,
            "seed": seed,
            "label": None if self.labels is None else self.labels[index],
            "loc": loc.tolist(),
            "scale": scale.tolist(),
            "ellipse": {"semi_axes": semi.tolist(), "angle": float(angle)},
            "draws": moments.draws,
            "samples": z.tolist(),
            "image": self._pixels(x)[0],
            "reconstruction": self._pixels(decoded[:1])[0],
            "decodings": self._pixels(decoded[1:]),
            "x_samples": self._pixels(x_samples),
        }


def _number(text: str) -> float:
    """json.loads' ``parse_int`` and ``parse_float``: every number a float, refused beyond
    float range. (As an int, a 10^400 parses and then fails to become a float.)"""
    value = float(text)
    if math.isinf(value):
        short = text if len(text) <= 20 else f"{text[:12]}... ({len(text)} characters)"
        raise BadRequest(f"number too large for a float: {short}")
    return value


def _constant(name: str) -> float:
    """``parse_constant``: json.loads takes NaN and Infinity, which are not JSON."""
    raise BadRequest(f"latent values must be finite numbers (got {name})")


def parse_z(body: bytes, latent_dim: int) -> torch.Tensor:
    """``{"z": [[...], ...]}`` -> a float32 tensor ``(N, D)``, or BadRequest saying why."""
    try:
        payload = json.loads(
            body, parse_int=_number, parse_float=_number, parse_constant=_constant
        )
    except (ValueError, UnicodeDecodeError):
        raise BadRequest('body is not JSON; send {"z": [[z_1, ..., z_D], ...]}') from None
    except RecursionError:  # the parser recurses once per level of nesting
        raise BadRequest("JSON nested too deeply; a decode request nests 3 levels") from None
    z = payload.get("z") if isinstance(payload, dict) else None
    if not isinstance(z, list) or not z:
        raise BadRequest('expected {"z": [[z_1, ..., z_D], ...]} with at least one vector')
    if len(z) > MAX_POINTS:
        raise BadRequest(f"at most {MAX_POINTS} latent vectors per request (got {len(z)})")
    for row in z:
        if not isinstance(row, list) or len(row) != latent_dim:
            raise BadRequest(f"each latent vector must be a list of {latent_dim} numbers")
        for v in row:
            # every JSON number is a finite float here (_number, _constant)
            if not isinstance(v, float):
                raise BadRequest(f"latent values must be finite numbers (got {v!r})")
            if abs(v) > 1e6:  # a finite float beyond float32 would become inf
                raise BadRequest(f"latent values must lie within ±1e6 (got {v!r})")
    return torch.tensor(z, dtype=torch.float32)
