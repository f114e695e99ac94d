"""The explorer's web server: the standard library's ThreadingHTTPServer and a trained model.

Routes (nothing else is served; the routes are matched on the raw request path, so no
spelling of ``..`` ever reaches the disk):

``GET /``, ``/static/explore.js``
    the page, from the package's own ``static/`` folder, read once at start.
``GET /plots/NAME.png``
    one of the run's plots, by a name listed in ``RUN/plots`` when the server started.
``GET /api/info``
    latent size D, the two map dimensions (largest mean KL on the test set), the KL per
    dimension, the image shape, and the test set's posterior means in the map dimensions
    ``(N, 2)`` with their labels.
``POST /api/decode`` with ``{"z": [[z_1 .. z_D], ...]}``
    E[x | z] for at most :data:`MAX_POINTS` latent vectors, as 8-bit pixels in (H, W, C) order.
``GET /api/point?index=I&k=K``
    test image I, its reconstruction E[x | z = mean], q(z|x) (loc, scale, length D), K draws
    z ~ q(z|x) ``(K, D)`` (fixed seed per image) and their decodings; K <= :data:`MAX_K`.

A malformed request is answered with HTTP 400 and ``{"error": message}``; an unknown path
with 404; a failure inside the server with 500 and no traceback. Bound to loopback, the server
answers only requests whose Host header names loopback (403 otherwise), so a web page that
rebinds its own domain name to 127.0.0.1 cannot read it.
"""

from __future__ import annotations

import errno
import json
import math
import sys
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from ..checkpoint import open_run
from ..errors import VaelabError
from ..evaluate import posterior_stats
from ..files import read_regular, regular_files
from ..plots import PLOT_EXAMPLES
from ..report import check_run

MAX_POINTS = 1024  # latent vectors per decode request
MAX_K = 64  # posterior samples per clicked point
MAX_BODY = 8 << 20  # bytes of a request body: 1,024 vectors of a few hundred numbers fit
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
}


LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}  # as they appear in a Host header


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
            "plots": sorted(self.plots),
            "max_points": MAX_POINTS,
            "max_k": MAX_K,
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

    def point(self, index: int, k: int) -> dict:
        """Test image ``index``: q(z|x), K draws from it, their decodings, the reconstruction."""
        x = self.x[index : index + 1]
        generator = torch.Generator().manual_seed(index)  # the same dots on every click
        with torch.inference_mode():
            qz = self.model.q_z(x)
            loc, scale = qz.mean[0], qz.stddev[0]
            z = loc + scale * torch.randn(k, self.latent_dim, generator=generator)
            decoded = self.model.decode(torch.cat([loc[None], z]))
        return {
            "index": index,
            "label": None if self.labels is None else self.labels[index],
            "loc": loc.tolist(),
            "scale": scale.tolist(),
            "samples": z.tolist(),
            "image": self._pixels(x)[0],
            "reconstruction": self._pixels(decoded[:1])[0],
            "decodings": self._pixels(decoded[1:]),
        }


def parse_z(body: bytes, latent_dim: int) -> torch.Tensor:
    """``{"z": [[...], ...]}`` -> a float32 tensor ``(N, D)``, or BadRequest saying why."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest('body is not JSON; send {"z": [[z_1, ..., z_D], ...]}') from None
    z = payload.get("z") if isinstance(payload, dict) else None
    if not isinstance(z, list) or not z:
        raise BadRequest('expected {"z": [[z_1, ..., z_D], ...]} with at least one vector')
    if len(z) > MAX_POINTS:
        raise BadRequest(f"at most {MAX_POINTS} latent vectors per request (got {len(z)})")
    for row in z:
        if not isinstance(row, list) or len(row) != latent_dim:
            raise BadRequest(f"each latent vector must be a list of {latent_dim} numbers")
        for v in row:
            # bool is an int in Python; a finite float beyond float32 would become inf
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise BadRequest(f"latent values must be finite numbers (got {v!r})")
            if abs(v) > 1e6:
                raise BadRequest(f"latent values must lie within ±1e6 (got {v!r})")
    return torch.tensor(z, dtype=torch.float32)


def _int_param(query: dict, name: str, low: int, high: int, default: int | None = None) -> int:
    values = query.get(name)
    if not values:
        if default is None:
            raise BadRequest(f"missing query parameter {name}")
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise BadRequest(f"{name} must be an integer (got {values[0]!r})") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must lie in {low}..{high} (got {value})")
    return value


class Handler(BaseHTTPRequestHandler):
    """One request: route, validate, answer. ``self.server.explorer`` holds the run."""

    server_version = "vaelab-explore"
    protocol_version = "HTTP/1.1"  # keep-alive: a moving mouse reuses one connection
    # headers and body go out as two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK, some 40 ms on Linux, on every request of a kept-alive connection
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # noqa: A002  (quiet: one line per request is noise)
        pass

    def handle(self) -> None:
        """Answer the connection's requests; a client that goes away mid-answer (a closed tab,
        a reset) ends the connection quietly instead of printing a traceback."""
        try:
            super().handle()
        except ConnectionError:
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value, separators=(",", ":")).encode(), "application/json")

    def _answer(self, route) -> None:
        allowed = self.server.allowed_hosts
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()  # drop the port
        if allowed is not None and host not in allowed:
            # a page elsewhere that rebinds its own name to 127.0.0.1 gets no answer
            self.close_connection = True
            self._json(403, {"error": f"Host {host!r} is not served; use 127.0.0.1"})
            return
        try:
            route()
        except BadRequest as exc:
            self.close_connection = True  # an unread or half-read body must not be parsed next
            self._json(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001  (a bug: say so in one line, never a traceback)
            print(f"vaelab explore: error answering {self.path!r}: {exc!r}", file=sys.stderr)
            self._json(500, {"error": "internal error; see the server's output"})

    def do_GET(self) -> None:  # noqa: N802  (the name http.server calls)
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(self._post)

    def _get(self) -> None:
        explorer = self.server.explorer
        url = urlsplit(self.path)
        if url.path in PAGES:
            name, content_type = PAGES[url.path]
            self._send(200, self.server.static[name], content_type)
        elif url.path == "/favicon.ico":  # browsers ask for it; there is none
            self._send(204, b"", "image/x-icon")
        elif url.path == "/api/info":
            self._json(200, explorer.info())
        elif url.path == "/api/point":
            query = parse_qs(url.query)
            index = _int_param(query, "index", 0, len(explorer.x) - 1)
            k = _int_param(query, "k", 1, MAX_K, default=16)
            self._json(200, explorer.point(index, k))
        elif url.path.startswith("/plots/") and url.path[7:] in explorer.plots:
            try:
                self._send(200, read_regular(explorer.plots[url.path[7:]]), "image/png")
            except OSError:  # gone, or swapped for a link since the server started
                self._json(404, {"error": "no such plot"})
        else:
            self._json(404, {"error": f"no such page: {url.path}"})

    def _post(self) -> None:
        if urlsplit(self.path).path != "/api/decode":
            self._json(404, {"error": "POST goes to /api/decode only"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest("a Content-Length header is required") from None
        if not 0 < length <= MAX_BODY:
            raise BadRequest(f"request body must be 1..{MAX_BODY} bytes (got {length})")
        z = parse_z(self.rfile.read(length), self.server.explorer.latent_dim)
        self._json(200, {"images": self.server.explorer.decode(z)})


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: a free one), not yet serving."""
    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise VaelabError(
                f"port {port} on {host} is in use; choose another with --port, or omit --port "
                "for a free one"
            ) from None
        raise VaelabError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    server.daemon_threads = True
    server.explorer = explorer
    # on loopback, only requests addressed to loopback (see Handler._answer); else any
    server.allowed_hosts = LOOPBACK_HOSTS if host in LOOPBACK else None
    static = resources.files("vaelab.explore") / "static"
    server.static = {name: (static / name).read_bytes() for name, _ in PAGES.values()}
    return server


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False):
    """Load ``run``, listen on ``host:port`` and answer until interrupted (Ctrl-C)."""
    if host not in LOOPBACK:
        print(
            f"vaelab explore: warning: listening on {host}: anyone who can reach this address "
            "can use the explorer",
            file=sys.stderr,
        )
    server = make_server(Explorer(run), host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"vaelab explore: serving {run} at {url} (Ctrl-C stops)", flush=True)
    if open_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("vaelab explore: stopped", file=sys.stderr)
    finally:
        server.server_close()
