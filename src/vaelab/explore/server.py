"""The explorer's web server: the standard library's ThreadingHTTPServer in front of an
:class:`~vaelab.explore.explorer.Explorer` (the model side, with no HTTP in it).

Routes (nothing else is served; the routes are matched on the raw request path, so no
spelling of ``..`` ever reaches the disk):

``GET /``, ``/static/explore.js``
    the page, from the package's own ``static/`` folder, read once at start.
``GET /plots/NAME.png``
    one of the run's plots, by a name listed in ``RUN/plots`` when the server started.
``GET /api/info``
    latent size D, the two map dimensions (largest mean KL on the test set), the KL per
    dimension, the image shape, and the test set's posterior means in the map dimensions
    ``(N, 2)`` with their labels, and ``label_names`` (label i is named ``label_names[i]``: a
    class folder, a table's label string; empty when the labels are plain numbers).
``POST /api/decode`` with ``{"z": [[z_1 .. z_D], ...]}``
    E[x | z] for at most :data:`~vaelab.explore.explorer.MAX_POINTS` latent vectors, as 8-bit
    pixels in (H, W, C) order.
``GET /api/point?index=I&k=K&seed=S``
    test image I, its reconstruction E[x | z = mean], q(z|x) (loc, scale, length D), K draws
    z ~ q(z|x) ``(K, D)``, and for each the decoder's mean E[x | z] (``decodings``) and a draw
    x ~ p(x | z) from the model's likelihood (``x_samples``), all fixed by (S, I);
    K <= :data:`~vaelab.explore.explorer.MAX_K` (default 16), S in 0..2^31 - 1 (default 0).

A malformed request is answered with HTTP 400 and ``{"error": message}``; an unknown path
with 404; any method but GET and POST with 405 and an ``Allow`` header; a failure inside the
server with 500 and no traceback. What it promises under abuse:

- a burst of connections waits in a listen backlog of :data:`BACKLOG`, not reset;
- a connection that sends nothing for :data:`READ_TIMEOUT` seconds (mid-request or idle
  between requests) is closed, so half-open connections cannot pile up;
- a request whose body is not read (a POST to an unknown path, a GET with a body, a body over
  :data:`MAX_BODY`) is answered with ``Connection: close`` and its connection closed, so no
  byte of a body is ever parsed as a request;
- JSON nested too deeply or holding a number beyond float range is a 400, never a 500;
- only requests whose Host header names loopback, the bound host or a name given with
  ``--allow-host`` are answered (403 otherwise), so a web page that rebinds its own domain
  name to this address cannot read it;
- the ``Server`` header names no Python version.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import re
import sys
import webbrowser
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import VaelabError
from ..files import read_regular
from .explorer import MAX_K, MAX_SEED, BadRequest, Explorer, parse_z

MAX_BODY = 8 << 20  # bytes of a request body: 1,024 vectors of a few hundred numbers fit
BACKLOG = 128  # connections waiting to be accepted; http.server's 5 reset a page's burst
READ_TIMEOUT = 10.0  # seconds a connection may stay silent, mid-request or between requests
ALLOWED_METHODS = "GET, POST"
PAGES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
}


LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}  # as they appear in a Host header
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?")  # a DNS name or an IPv4 address


def _header_name(name: str, flag: str = "--allow-host") -> str:
    """``name`` as a Host header spells it (lowercase, IPv6 in brackets), or VaelabError."""
    name = name.lower()
    if ":" in name:  # an IPv6 address, bracketed or not
        try:
            return f"[{ipaddress.IPv6Address(name.removeprefix('[').removesuffix(']'))}]"
        except ValueError:
            pass
    elif HOST_NAME.fullmatch(name):
        return name
    raise VaelabError(
        f"{flag} takes a host name or address without scheme or port, such as vaelab.test or "
        f"192.168.1.5 (got {name!r})"
    )


def served_names(host: str, allow_hosts: Iterable[str] = ()) -> frozenset[str]:
    """The names a request's Host header may give: loopback, ``host`` and ``allow_hosts``."""
    names = {_header_name(name) for name in allow_hosts}
    return frozenset(LOOPBACK_HOSTS | names | {_header_name(host, "--host")})


def _host_of(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``[::1]``."""
    name, _, port = header.rpartition(":")
    if not name or "]" in port:  # no port, or the colon was inside an IPv6 address
        name = header
    return name.lower()


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
    """One connection's requests: route, validate, answer. ``self.server`` holds the run."""

    server_version = "vaelab-explore"
    protocol_version = "HTTP/1.1"  # keep-alive: a moving mouse reuses one connection
    # headers and body go out as two writes; with Nagle's algorithm the second waits for the
    # client's delayed ACK, some 40 ms on Linux, on every request of a kept-alive connection
    disable_nagle_algorithm = True
    # seconds of silence before the connection is closed, set on the socket by setup()
    timeout = READ_TIMEOUT
    body_unread = False  # whether this request carries a body not (yet) read

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # each server's own (make_server's timeout)
        super().setup()

    def version_string(self) -> str:
        return self.server_version  # not http.server's "Python/3.x": no version to aim at

    def log_message(self, format, *args) -> None:  # noqa: A002  (quiet: one line per request is noise)
        pass

    def handle(self) -> None:
        """Answer the connection's requests; a client that goes away mid-answer (a closed tab,
        a reset) ends the connection quietly instead of printing a traceback."""
        try:
            super().handle()
        except ConnectionError:
            self.close_connection = True

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Iterable[tuple] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection or self.body_unread:
            # the bytes of an unread body would be parsed as this connection's next request:
            # a request smuggled inside another's body. send_header also sets close_connection
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value, headers: Iterable[tuple] = ()) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        self._send(status, body, "application/json", headers)

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """http.server's own refusals (a malformed request line, headers too long, a method
        with no ``do_`` function) as JSON like ours; the stream may hold unread bytes, so the
        connection ends."""
        self.close_connection = True
        headers = ()
        if code == HTTPStatus.NOT_IMPLEMENTED:  # its answer to a method we have no do_ for
            code, headers = HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", ALLOWED_METHODS)]
            message = f"method {self.command} is not allowed; use {ALLOWED_METHODS}"
        self._json(code, {"error": message or HTTPStatus(code).phrase}, headers)

    def _answer(self, route) -> None:
        # Content-Length or Transfer-Encoding: a body follows, and only _read_body reads one
        self.body_unread = "Content-Length" in self.headers or "Transfer-Encoding" in self.headers
        host = _host_of(self.headers.get("Host") or "")
        if host not in self.server.allowed_hosts:
            # a page elsewhere that rebinds its own name to this address gets no answer
            self.close_connection = True
            self._json(403, {"error": f"Host {host!r} is not served; see --allow-host"})
            return
        try:
            route()
        except BadRequest as exc:
            self.close_connection = True  # a request framed wrong may go on past what we read
            self._json(400, {"error": str(exc)})
        except (TimeoutError, ConnectionError):
            raise  # the client went silent or away: no answer, http.server ends the connection
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
            seed = _int_param(query, "seed", 0, MAX_SEED, default=0)
            self._json(200, explorer.point(index, k, seed))
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
        z = parse_z(self._read_body(), self.server.explorer.latent_dim)
        self._json(200, {"images": self.server.explorer.decode(z)})

    def _read_body(self) -> bytes:
        """The request's body, 1..MAX_BODY bytes framed by Content-Length, or BadRequest."""
        if "Transfer-Encoding" in self.headers:  # two framings: where the body ends is unclear
            raise BadRequest("send the body with a Content-Length, not a Transfer-Encoding")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest("a Content-Length header is required") from None
        if not 0 < length <= MAX_BODY:
            raise BadRequest(f"request body must be 1..{MAX_BODY} bytes (got {length})")
        body = self.rfile.read(length)
        self.body_unread = False
        return body


class ExplorerServer(ThreadingHTTPServer):
    """A thread per connection, a listen backlog for bursts, and what the handler needs."""

    request_queue_size = BACKLOG
    daemon_threads = True  # Ctrl-C does not wait for a kept-alive connection to go quiet

    def __init__(
        self, address, explorer: Explorer, allowed_hosts: frozenset[str], read_timeout: float
    ):
        super().__init__(address, Handler)
        self.explorer = explorer
        self.allowed_hosts = allowed_hosts
        self.read_timeout = read_timeout
        static = resources.files("vaelab.explore") / "static"
        self.static = {name: (static / name).read_bytes() for name, _ in PAGES.values()}


def make_server(
    explorer: Explorer,
    host: str = "127.0.0.1",
    port: int = 0,
    allow_hosts: Iterable[str] = (),
    timeout: float = READ_TIMEOUT,
) -> ExplorerServer:
    """A server bound to ``host:port`` (port 0: a free one), not yet serving, that answers
    requests addressed to loopback, ``host`` or ``allow_hosts`` and closes a connection silent
    for ``timeout`` seconds."""
    names = served_names(host, allow_hosts)
    try:
        server = ExplorerServer((host, port), explorer, names, timeout)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise VaelabError(
                f"port {port} on {host} is in use; choose another with --port, or omit --port "
                "for a free one"
            ) from None
        raise VaelabError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return server


def serve(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = False,
    allow_hosts: Iterable[str] = (),
):
    """Load ``run``, listen on ``host:port`` and answer until interrupted (Ctrl-C)."""
    names = served_names(host, allow_hosts)  # a bad name is one line before the model loads
    if host not in LOOPBACK:
        print(
            f"vaelab explore: warning: listening on {host}: anyone who can reach it can use "
            f"the explorer by the names {', '.join(sorted(names))} (more with --allow-host)",
            file=sys.stderr,
        )
    server = make_server(Explorer(run), host, port, names)
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
