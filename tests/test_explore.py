"""`vaelab explore`: a real server on 127.0.0.1, asked over HTTP as a browser would."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from vaelab import Config, train
from vaelab.checkpoint import load
from vaelab.cli import build_parser, main
from vaelab.explore import Explorer, make_server
from vaelab.explore.explorer import MAX_POINTS
from vaelab.explore.server import READ_TIMEOUT

from .test_images import write_images


@pytest.fixture(scope="module")
def server(digits_run):
    explorer = Explorer(digits_run)
    srv = make_server(explorer)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def request(server, method, path, body=None, headers=None):
    """(status, parsed JSON or raw bytes) for one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        if response.getheader("Content-Type") == "application/json":
            data = json.loads(data)
        return response.status, data
    finally:
        conn.close()


def decode(server, payload):
    return request(server, "POST", "/api/decode", json.dumps(payload).encode())


def test_it_listens_on_loopback_only_by_default(server):
    assert server.server_address[0] == "127.0.0.1"


def test_info_has_the_test_sets_posterior_means_and_labels(server):
    status, info = request(server, "GET", "/api/info")
    explorer = server.explorer
    assert status == 200
    assert info["latent_dim"] == 2 and info["dims"] == [0, 1]
    assert len(info["points"]) == len(info["labels"]) == len(explorer.x)
    means = explorer.model.q_z(explorer.x[:5]).mean.detach()
    assert torch.allclose(torch.tensor(info["points"][:5]), means, atol=1e-3)
    assert info["image"] == {"channels": 1, "height": 8, "width": 8}


def test_decode_returns_the_trained_decoders_images(server, digits_run):
    z = [[0.0, 0.0], [1.5, -2.0], [-3.0, 3.0]]
    status, answer = decode(server, {"z": z})
    assert status == 200
    expected = load(digits_run).decode(torch.tensor(z)).detach().reshape(3, -1) * 255
    got = torch.tensor(answer["images"], dtype=torch.float32)
    assert got.shape == (3, 64)
    assert (got - expected).abs().max() <= 0.5 + 1e-3  # rounding to 8 bits only
    assert not torch.equal(got[0], got[2])  # different z, different images


def test_a_point_has_its_posterior_samples_and_reconstruction(server):
    status, point = request(server, "GET", "/api/point?index=7&k=5")
    assert status == 200
    loc = server.explorer.model.q_z(server.explorer.x[7:8]).mean[0].tolist()
    assert point["loc"] == pytest.approx(loc, abs=1e-5)
    assert len(point["samples"]) == len(point["decodings"]) == 5
    assert all(len(z) == 2 for z in point["samples"]) and all(s > 0 for s in point["scale"])
    assert len(point["image"]) == len(point["reconstruction"]) == 64
    assert point["label"] == server.explorer.labels[7]
    assert request(server, "GET", "/api/point?index=7&k=5")[1] == point  # same dots each click


def test_a_points_draws_are_decoded_as_means_and_as_samples_from_p_x_given_z(server):
    """For one x, many z: each z_k ~ q(z|x) as E[x|z_k] and as a draw x_k ~ p(x|z_k)."""
    status, point = request(server, "GET", "/api/point?index=3&k=64")
    assert status == 200 and server.explorer.likelihood == "Bernoulli"
    means = torch.tensor(point["decodings"], dtype=torch.float64) / 255
    draws = torch.tensor(point["x_samples"], dtype=torch.float64) / 255
    assert means.shape == draws.shape == (64, 64) and len(point["samples"]) == 64
    # a Bernoulli draw is an image of 0s and 1s, unlike the grey means it is drawn from ...
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(draws, means) and 0.05 < means.mean() < 0.95
    # ... and from those means: the 4,096 pixels agree with them on average within 3 s.e.
    # (0.5 / 64 at most), and each pixel's 64 draws within 4.5 s.e. (0.5 / 8 at most)
    assert abs(draws.mean() - means.mean()) < 3 * 0.5 / 64
    assert (draws.mean(0) - means.mean(0)).abs().max() < 4.5 * 0.5 / 8
    # the model's own likelihood gives these means for these z
    z = torch.tensor(point["samples"])
    expected = server.explorer.model.p_x(z).mean.detach().reshape(64, -1)
    assert (means - expected).abs().max() <= 0.5 / 255 + 1e-6


def test_a_points_draws_are_fixed_by_the_seed_even_under_concurrent_requests(server):
    def get(seed):
        status, point = request(server, "GET", f"/api/point?index=3&k=16&seed={seed}")
        assert status == 200 and point["seed"] == seed
        return point

    once = {seed: get(seed) for seed in (0, 1)}
    assert once[0]["x_samples"] != once[1]["x_samples"]  # a new seed, new draws
    assert once[0]["samples"] != once[1]["samples"]
    assert once[0]["loc"] == once[1]["loc"]  # and the same q(z|x)
    # twelve threads asking at once: each answer is the one its seed gives alone, though the
    # likelihood's sampler draws from torch's one global generator
    answers = {}
    threads = [
        threading.Thread(target=lambda i=i: answers.__setitem__(i, get(i % 2))) for i in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answers[i] == once[i % 2] for i in range(12))


BAD_DECODES = [
    (b'{"z": [[0.0]]}', "list of 2 numbers"),
    (b'{"z": [[0.0, 1.0, 2.0]]}', "list of 2 numbers"),
    (b'{"z": [[NaN, 0.0]]}', "finite"),
    (b'{"z": [[Infinity, 0.0]]}', "finite"),
    (b'{"z": [[1e300, 0.0]]}', "within"),
    (b'{"z": [["1", 0.0]]}', "finite numbers"),
    (b'{"z": [[true, 0.0]]}', "finite numbers"),
    (b'{"z": [[[0.0], 0.0]]}', "finite numbers"),
    (b'{"z": []}', "at least one"),
    (b'{"z": [0.0, 0.0]}', "list of 2 numbers"),
    (b'{"x": [[0.0, 0.0]]}', "expected"),
    (b"[1, 2]", "expected"),
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (json.dumps({"z": [[0.0, 0.0]] * (MAX_POINTS + 1)}).encode(), "at most 1024"),
]


@pytest.mark.parametrize("body, message", BAD_DECODES)
def test_bad_decode_requests_get_400_and_a_json_message(server, body, message):
    status, answer = request(server, "POST", "/api/decode", body)
    assert status == 400
    assert message in answer["error"] and "Traceback" not in answer["error"]


def test_the_most_points_allowed_are_decoded(server):
    status, answer = decode(server, {"z": [[0.1, -0.2]] * MAX_POINTS})
    assert status == 200 and len(answer["images"]) == MAX_POINTS


def raw(server, data: bytes) -> str:
    """Send raw bytes; return all the server answers before it closes the connection."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        # a server closing with bytes of ours unread resets the connection after its answer
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks).decode()


def test_a_body_too_large_or_without_length_is_refused_unread(server):
    head = b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    reply = raw(server, head + b"Content-Length: 999999999\r\n\r\n")
    assert reply.startswith("HTTP/1.1 400") and "request body must be" in reply
    reply = raw(server, head + b"\r\n")
    assert reply.startswith("HTTP/1.1 400") and "Content-Length" in reply


@pytest.mark.parametrize(
    "query",
    [
        "",
        "index=-1",
        "index=180",
        "index=abc",
        "index=1&k=0",
        "index=1&k=65",
        "index=1&seed=-1",
        "index=1&seed=2147483648",
        "index=1&seed=x",
    ],
)
def test_bad_point_requests_get_400(server, query):
    status, answer = request(server, "GET", f"/api/point?{query}")
    assert status == 400 and "error" in answer


@pytest.mark.parametrize(
    "path",
    [
        "/../config.toml",
        "/%2e%2e/config.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/static/../../etc/passwd",
        "/static/..%2f..%2fserver.py",
        "/static/explore.js/../../server.py",
        "/plots/../config.toml",
        "/plots/..%2fconfig.toml",
        "/plots/%2e%2e/model.safetensors",
        "/config.toml",
        "/summary.json",
        "/static/",
        "//etc/passwd",
    ],
)
def test_nothing_but_its_pages_and_the_runs_plots_is_served(server, digits_run, path):
    status, answer = request(server, "GET", path)
    assert status == 404
    assert answer["error"].startswith("no such page")


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_requests_for_another_host_name_are_refused(server, host):
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host: no answer."""
    status, answer = request(server, "GET", "/api/info", headers={"Host": host})
    assert status == 403 and "not served" in answer["error"]
    port = server.server_address[1]
    assert request(server, "GET", "/api/info", headers={"Host": f"localhost:{port}"})[0] == 200


def test_its_pages_and_the_runs_plots_are_served(server, digits_run):
    status, page = request(server, "GET", "/")
    assert status == 200 and b'<canvas id="map"' in page
    status, script = request(server, "GET", "/static/explore.js")
    assert status == 200 and b"/api/decode" in script
    status, png = request(server, "GET", "/plots/manifold.png")
    assert status == 200 and png == (digits_run / "plots" / "manifold.png").read_bytes()


def test_a_decode_takes_well_under_100_ms(server):
    """One z per request over one keep-alive connection, as the page sends them."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    times = []
    try:
        for i in range(60):
            body = json.dumps({"z": [[i / 20 - 1.5, 1.5 - i / 20]]})
            start = time.perf_counter()
            conn.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            times.append(time.perf_counter() - start)
            assert response.status == 200
    finally:
        conn.close()
    median_ms = statistics.median(times) * 1000
    print(f"decode latency: median {median_ms:.1f} ms, max {max(times) * 1000:.1f} ms")
    assert median_ms < 20
    assert sorted(times)[int(0.9 * len(times))] < 0.1  # 90% of requests under 100 ms


def test_the_command_serves_until_interrupted_and_warns_off_loopback(digits_run):
    """`vaelab explore RUN --host 0.0.0.0` warns, serves, and stops cleanly on Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaelab", "explore", str(digits_run), "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a suite started in the background by a script (`make test &`)
        # runs with SIGINT ignored, the server would inherit that and never see the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline()
        assert "serving" in line and "http://0.0.0.0:" in line
        port = int(line.split("http://0.0.0.0:")[1].split("/")[0])
        # a client that resets its connection mid-request (a closed tab) costs no traceback
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as rude:
                rude.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        conn.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "stopped" in err and "Traceback" not in err
    assert "warning: listening on 0.0.0.0" in err


def test_the_command_binds_loopback_unless_told_otherwise():
    args = build_parser().parse_args(["explore", "runs/x"])
    assert args.host == "127.0.0.1" and args.port == 0 and not args.open
    assert args.allow_host == []


def test_a_port_in_use_is_one_line_and_exit_2(digits_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["explore", str(digits_run), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and err.count("\n") == 1


@pytest.mark.parametrize("which", ["missing", "not a run"])
def test_a_missing_run_is_one_line_and_exit_2(tmp_path, capsys, which):
    run = tmp_path / "missing" if which == "missing" else tmp_path
    assert main(["explore", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vaelab explore: error:") and err.count("\n") == 1


def test_a_link_in_plots_is_neither_listed_nor_served(digits_run, tmp_path):
    """A run folder from someone else: plots/ holding a link to a private file, and a link
    swapped in for a real plot after the server started."""
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    secret = tmp_path / "id_rsa"
    secret.write_bytes(b"PRIVATE KEY")
    (run / "plots" / "key.png").symlink_to(secret)
    srv = make_server(Explorer(run))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        status, info = request(srv, "GET", "/api/info")
        assert status == 200 and "key.png" not in info["plots"]
        assert "manifold.png" in info["plots"]
        assert request(srv, "GET", "/plots/key.png")[0] == 404
        (run / "plots" / "manifold.png").unlink()
        (run / "plots" / "manifold.png").symlink_to(secret)
        status, body = request(srv, "GET", "/plots/manifold.png")
        assert status == 404 and b"PRIVATE" not in json.dumps(body).encode()
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


@contextlib.contextmanager
def serving(srv):
    """``srv`` answering on a thread for the length of the block."""
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_200_concurrent_requests_are_all_answered(server):
    """A burst larger than http.server's listen backlog of 5, which reset some connections."""
    port = server.server_address[1]
    start = threading.Barrier(200)
    statuses, failures = [], []

    def get():
        start.wait()  # connect all at once
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        except OSError as exc:
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=get) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and statuses == [200] * 200


def dropped(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (waiting at most the socket's own timeout)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


# what a client sends before it stops: nothing, part of a request line, of the headers, a body
HALF_OPEN = [
    b"",
    b"GET /api/in",
    b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    b'POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"z": [',
]


def test_a_half_open_connection_is_dropped_after_the_timeout_while_others_are_answered(server):
    assert READ_TIMEOUT >= 5  # a slow client on a slow network still gets its answers
    with serving(make_server(server.explorer, timeout=1)) as srv:
        port = srv.server_address[1]
        opened = time.monotonic()
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in HALF_OPEN]
        try:
            for sock, data in zip(stalled, HALF_OPEN, strict=True):
                sock.sendall(data)
            for _ in range(3):  # meanwhile, other clients are answered at once
                assert request(srv, "GET", "/api/info")[0] == 200
            assert all(dropped(sock) for sock in stalled)
            assert 1 <= time.monotonic() - opened < 5
        finally:
            for sock in stalled:
                sock.close()


SMUGGLED = b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        b"POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n",
        b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n",
        b"POST /api/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9999999%d\r\n\r\n",
    ],
    ids=["POST to an unknown path", "GET with a body", "body over the limit"],
)
def test_a_body_left_unread_ends_the_connection_and_is_never_parsed_as_a_request(server, head):
    """On one kept-alive connection, a request whose unread body is itself a request."""
    reply = raw(server, head % len(SMUGGLED) + SMUGGLED)
    assert len(re.findall(r"^HTTP/1\.1 \d{3} ", reply, re.MULTILINE)) == 1
    assert "\r\nConnection: close\r\n" in reply


@pytest.mark.parametrize(
    "method", ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT", "BREW"]
)
def test_other_methods_get_405_with_json_and_an_allow_header(server, method):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request(method, "/api/info", body=b"{}" if method in ("PUT", "PATCH") else None)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 405 and response.getheader("Allow") == "GET, POST"
    assert response.getheader("Content-Type") == "application/json"
    if method != "HEAD":  # a HEAD answer has no body
        assert method in json.loads(body)["error"]


OUT_OF_BOUNDS = [
    (b"[" * 3000, "nested too deeply"),
    (b'{"z": ' + b'{"a": ' * 3000, "nested too deeply"),
    (b'{"z": [[1' + b"0" * 400 + b", 0.0]]}", "too large"),
    (b'{"z": [[-1' + b"0" * 5000 + b", 0.0]]}", "too large"),
    (b'{"z": [[1e400, 0.0]]}', "too large"),
    (b'{"z": [[0.0, -1.5e309]]}', "too large"),
]


@pytest.mark.parametrize("body, message", OUT_OF_BOUNDS)
def test_json_nested_too_deeply_or_with_numbers_too_large_gets_400(server, body, message):
    status, answer = request(server, "POST", "/api/decode", body)
    assert status == 400 and message in answer["error"]


def test_the_host_check_stays_on_off_loopback_and_allow_host_adds_names(server):
    with serving(make_server(server.explorer, allow_hosts=["vaelab.test"])) as srv:
        port = srv.server_address[1]
        for host in (f"vaelab.test:{port}", "VAELAB.test", f"127.0.0.1:{port}", "[::1]"):
            assert request(srv, "GET", "/api/info", headers={"Host": host})[0] == 200, host
        status, answer = request(srv, "GET", "/api/info", headers={"Host": "evil.example"})
        assert status == 403 and "not served" in answer["error"]
    with serving(make_server(server.explorer, host="0.0.0.0")) as srv:
        assert request(srv, "GET", "/api/info", headers={"Host": "evil.example"})[0] == 403
        assert request(srv, "GET", "/api/info")[0] == 200  # 127.0.0.1:PORT


def test_allow_host_repeats_and_a_bad_name_is_one_line_and_exit_2(digits_run, capsys):
    args = build_parser().parse_args(
        ["explore", "r", "--allow-host", "a.test", "--allow-host", "b"]
    )
    assert args.allow_host == ["a.test", "b"]
    for bad in ("evil.example:80", "http://evil.example", "", "a b"):
        assert main(["explore", str(digits_run), "--allow-host", bad]) == 2
        err = capsys.readouterr().err
        assert "--allow-host" in err and err.count("\n") == 1


def test_the_server_header_names_no_python(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request("GET", "/api/info")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.getheader("Server") == "vaelab-explore"


def train_on_class_folders(root: Path) -> Path:
    """A 1-epoch run on 60 random 6x6 PNGs in the class folders ``cats/`` and ``dogs/`` (both
    classes are in its test split). Its latent space is 3-D: a 2-D run also fits q* for the
    posterior-gap figures at the end of training, which would take most of the time."""
    for seed, name in enumerate(("cats", "dogs")):
        write_images(root / "pets" / name, 30, seed=seed)
    data, out = str(root / "pets"), str(root / "run")
    config = Config(data=data, latent_dim=3, epochs=1, hidden=[8], batch_size=8, out=out)
    return train(config, progress=False, log=lambda _: None)


def test_info_names_the_classes_of_a_run_on_class_folders(tmp_path, server):
    with serving(make_server(Explorer(train_on_class_folders(tmp_path)))) as pets:
        status, info = request(pets, "GET", "/api/info")
        assert status == 200
        assert info["label_names"] == ["cats", "dogs"]
        assert set(info["labels"]) == {0, 1}  # label i is named label_names[i]
        _, point = request(pets, "GET", "/api/point?index=0&k=1")
        assert info["label_names"][point["label"]] in ("cats", "dogs")
    # digits' labels are plain numbers: no names
    assert request(server, "GET", "/api/info")[1]["label_names"] == []
