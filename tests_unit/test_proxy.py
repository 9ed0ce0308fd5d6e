"""The api component's reverse proxy (:mod:`envfixtures.drivers.marathon.proxy`) against two tiny real backends.

The backends are real HTTP servers on loopback (in-process threads) that echo what they received; the
task list comes from a tiny fake Marathon (an HTTP server answering ``/v2/apps/<id>?embed=app.tasks``
with JSON this test controls), since the unit here is the proxy. The real Marathon path is covered
by the infra and api suites.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from envfixtures.core.ports import free_port
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon import auth, proxy

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "/ef-test/orders-api"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def _start(handler: type[BaseHTTPRequestHandler]) -> _Server:
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _stop(server: _Server) -> None:
    server.shutdown()
    server.server_close()


def echo_backend(name: str) -> _Server:
    """A backend answering every request with what it received, as JSON, and its own name."""

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status = int(self.headers.get("X-Status", "200"))
            payload = json.dumps({
                "backend": name, "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode(),
            }).encode()  # fmt: skip
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Backend", name)
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_TRACE = do_PROPFIND = do_any  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    return _start(Echo)


class FakeMarathon:
    """Answers ``GET /v2/apps/<APP_ID>?embed=app.tasks`` with tasks this test sets; counts the reads.

    With ``credentials`` set, a read without exactly those (HTTP basic) is 401, as the local scheduler answers.
    """

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []
        self.reads = 0
        self.refused = 0
        self.available = True
        self.credentials: tuple[str, str] | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.reads += 1
                if not owner.available:
                    self.send_error(503)
                    return
                if owner.credentials:
                    token = base64.b64encode(":".join(owner.credentials).encode()).decode()
                    if self.headers.get("Authorization") != f"Basic {token}":
                        owner.refused += 1
                        self.send_error(401)
                        return
                if self.path != f"/v2/apps{APP_ID}?embed=app.tasks":
                    self.send_error(404)
                    return
                app = {"id": APP_ID, "healthChecks": [{"protocol": "HTTP", "path": "/health"}], "tasks": owner.tasks}
                data = json.dumps({"app": app}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _start(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, *ports_alive: tuple[int, bool | None]) -> None:
        """Tasks on these ports; alive None = no health result yet."""
        self.tasks = [
            {"id": f"t{i}", "host": "127.0.0.1", "ports": [port], "state": "TASK_RUNNING",
             "healthCheckResults": [] if alive is None else [{"alive": alive}]}
            for i, (port, alive) in enumerate(ports_alive)
        ]  # fmt: skip


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    servers = {name: echo_backend(name) for name in ("a", "b")}
    yield {name: s.server_address[1] for name, s in servers.items()}
    for server in servers.values():
        _stop(server)


@pytest.fixture
def marathon() -> Iterator[FakeMarathon]:
    fake = FakeMarathon()
    yield fake
    _stop(fake.server)


@pytest.fixture
def start_proxy(marathon: FakeMarathon) -> Iterator[Any]:
    started: list[tuple[proxy.ProxyServer, threading.Event, threading.Thread]] = []

    def start(refresh: float = 0.1, upstream_timeout: float = 5.0) -> str:
        targets = proxy.Targets(proxy.marathon_source(marathon.url, APP_ID), refresh=refresh)
        targets.start()
        server = proxy.ProxyServer(("127.0.0.1", 0), targets, upstream_timeout=upstream_timeout)
        stop = threading.Event()
        thread = threading.Thread(target=proxy.serve, args=(server, stop), daemon=True)
        thread.start()
        started.append((server, stop, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for _server, stop, thread in started:
        stop.set()
        thread.join(timeout=5)


def test_healthy_targets_need_a_live_result_for_every_health_check() -> None:
    app = {
        "healthChecks": [{"path": "/a"}, {"path": "/b"}],
        "tasks": [
            {"host": "h", "ports": [1], "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}] * 2},
            {"host": "h", "ports": [2], "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}]},
            {"host": "h", "ports": [3], "state": "TASK_RUNNING",
             "healthCheckResults": [{"alive": True}, {"alive": False}]},
            {"host": "h", "ports": [4], "state": "TASK_STAGING", "healthCheckResults": [{"alive": True}] * 2},
            {"host": "h", "ports": [], "state": "TASK_RUNNING", "healthCheckResults": [{"alive": True}] * 2},
        ],
    }  # fmt: skip
    assert proxy.healthy_targets(app) == [("h", 1)]
    # Without health checks a running task is a target.
    assert proxy.healthy_targets({"tasks": [{"host": "h", "ports": [5, 6], "state": "TASK_RUNNING"}]}) == [("h", 5)]


def test_requests_go_round_robin_over_the_healthy_tasks(backends, marathon, start_proxy) -> None:
    marathon.set((backends["a"], True), (backends["b"], True))
    base = start_proxy()
    with requests.Session() as session:
        seen = [session.get(f"{base}/orders", timeout=5).json()["backend"] for _ in range(10)]
    assert seen.count("a") == seen.count("b") == 5
    assert all(x != y for x, y in zip(seen, seen[1:], strict=False)), seen


def test_method_path_query_headers_and_body_pass_both_ways(backends, marathon, start_proxy) -> None:
    marathon.set((backends["a"], True))
    base = start_proxy()
    r = requests.put(
        f"{base}/orders/x%20y?limit=3&cursor=a%2Fb", data=b'{"k": "v"}',
        headers={"X-Custom": "1", "X-Status": "201", "Connection": "keep-alive, X-Drop", "X-Drop": "hop",
                 "Content-Type": "application/json", "X-Forwarded-For": "10.0.0.9"},
        timeout=5,
    )  # fmt: skip
    assert r.status_code == 201
    echo = r.json()
    assert (echo["method"], echo["path"], echo["body"]) == ("PUT", "/orders/x%20y?limit=3&cursor=a%2Fb", '{"k": "v"}')
    sent = echo["headers"]
    assert sent["x-custom"] == "1" and sent["content-type"] == "application/json"
    assert sent["content-length"] == str(len(b'{"k": "v"}'))
    assert "x-drop" not in sent, "a header named in Connection is hop-by-hop"
    assert sent["x-forwarded-for"] == "10.0.0.9, 127.0.0.1" and sent["x-forwarded-proto"] == "http"
    assert sent["host"] == base.removeprefix("http://"), "the client's Host reaches the task"
    assert r.headers["X-Backend"] == "a" and "Keep-Alive" not in r.headers
    for method in ("DELETE", "PATCH", "POST"):
        assert requests.request(method, f"{base}/p", timeout=5).json()["method"] == method
    head = requests.head(f"{base}/p", timeout=5)
    assert head.status_code == 200 and head.content == b""


def test_a_chunked_request_body_is_passed_on(backends, marathon, start_proxy) -> None:
    marathon.set((backends["a"], True))
    base = start_proxy()
    r = requests.post(f"{base}/orders", data=iter([b'{"a": ', b"1}"]), timeout=5)
    assert r.json()["body"] == '{"a": 1}' and "transfer-encoding" not in r.json()["headers"]


def test_unhealthy_and_unchecked_tasks_get_nothing_and_the_list_follows_marathon(
    backends, marathon, start_proxy
) -> None:
    marathon.set((backends["a"], True), (backends["b"], False))
    base = start_proxy(refresh=0.1)
    assert {requests.get(base, timeout=5).json()["backend"] for _ in range(6)} == {"a"}
    marathon.set((backends["a"], None), (backends["b"], True))
    wait_for(
        lambda: requests.get(base, timeout=5).json()["backend"] == "b",
        what="b takes over",
        timeout=5,
        retry_on=(OSError, ValueError, KeyError),  # a 502 while the list changes has no "backend"
    )
    assert {requests.get(base, timeout=5).json()["backend"] for _ in range(6)} == {"b"}


def test_no_healthy_task_is_a_502_json_error(marathon, start_proxy) -> None:
    marathon.set()
    base = start_proxy()
    r = requests.post(f"{base}/orders", json={}, timeout=5)
    assert r.status_code == 502
    assert r.json()["error"] == "bad_gateway" and "Traceback" not in r.text


def test_a_refused_connection_is_retried_on_another_task_for_any_method(backends, marathon, start_proxy) -> None:
    dead = free_port()  # nothing listens there
    marathon.set((dead, True), (backends["a"], True))
    base = start_proxy(refresh=60)  # no refresh during the test: the proxy must route around on its own
    results = [requests.request(m, f"{base}/x", timeout=5) for m in ("GET", "POST", "GET", "POST")]
    assert [r.status_code for r in results] == [200] * 4
    assert {r.json()["backend"] for r in results} == {"a"}


def test_a_dropped_connection_is_retried_only_for_idempotent_methods(backends, marathon, start_proxy) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def accept_and_drop() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=accept_and_drop, daemon=True)
    thread.start()
    try:
        rude = listener.getsockname()[1]
        marathon.set((rude, True), (backends["a"], True))
        base = start_proxy(refresh=60)
        # Two requests: round-robin sends one of them to the rude task first; both GETs are answered by a.
        gets = [requests.get(f"{base}/x", timeout=5) for _ in range(2)]
        assert [(r.status_code, r.json()["backend"]) for r in gets] == [(200, "a")] * 2
        # A POST whose connection is dropped after it was sent is not retried (it may have been acted on).
        base2 = start_proxy(refresh=60)
        posts = [requests.post(f"{base2}/x", json={}, timeout=5) for _ in range(2)]
        assert sorted(r.status_code for r in posts) == [200, 502]
        failed = next(r for r in posts if r.status_code == 502)
        assert failed.json() == {"error": "bad_gateway", "message": "the upstream task closed the connection"}
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_the_last_known_tasks_are_kept_while_marathon_does_not_answer(backends, marathon, start_proxy) -> None:
    marathon.set((backends["a"], True))
    base = start_proxy(refresh=0.05)
    marathon.available = False
    reads = marathon.reads
    wait_for(lambda: marathon.reads >= reads + 3, what="three failed refreshes", timeout=5)
    assert requests.get(base, timeout=5).json()["backend"] == "a"


def test_the_proxy_reads_marathon_with_its_credentials_and_never_passes_them_on(
    backends, marathon, start_proxy
) -> None:
    marathon.set((backends["a"], True))
    marathon.credentials = ("ef-user", "s3cret:pass")
    refused = marathon.refused
    base = start_proxy()  # a source without credentials: Marathon says 401, so no target
    assert requests.get(base, timeout=5).status_code == 502 and marathon.refused > refused

    targets = proxy.Targets(proxy.marathon_source(marathon.url, APP_ID, credentials=marathon.credentials))
    targets.refresh_once()
    assert targets.candidates() == [("127.0.0.1", backends["a"])]
    refused = marathon.refused
    targets.refresh_once()
    assert marathon.refused == refused
    # What reaches a task: the client's own headers, never Marathon's credentials.
    marathon.credentials = None
    wait_for(lambda: requests.get(base, timeout=5).status_code == 200, what="targets after Marathon opens", timeout=5)
    echoed = requests.get(base, timeout=5).json()["headers"]
    assert "authorization" not in echoed and "s3cret" not in json.dumps(echoed)


def test_the_proxy_process_serves_and_stops_cleanly_on_sigterm(backends, marathon) -> None:
    """Also: it reads Marathon's credentials from its environment; the password is not on its command line."""
    marathon.set((backends["a"], True), (backends["b"], True))
    marathon.credentials = (f"ef-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
    port = free_port()
    argv = [sys.executable, "-m", "envfixtures.drivers.marathon.proxy", "--port", str(port), "--marathon", marathon.url,
            "--app-id", APP_ID, "--refresh", "0.2"]  # fmt: skip
    env = {**os.environ, auth.CREDENTIALS_ENV: auth.join(*marathon.credentials)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(base, timeout=1).ok, what="the proxy", timeout=15, retry_on=(OSError,),
                 failed=lambda: None if proc.poll() is None else f"exited {proc.returncode}")  # fmt: skip
        assert {requests.get(base, timeout=5).json()["backend"] for _ in range(4)} == {"a", "b"}
        assert marathon.refused == 0, "every read of the task list carried the credentials"
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"marathon.proxy" in cmdline and marathon.credentials[1].encode() not in cmdline
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 3
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        assert "proxy stopped" in stderr and "Traceback" not in stderr
        with pytest.raises(requests.ConnectionError):
            requests.get(base, timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_any_method_reaches_the_task(backends, marathon, start_proxy) -> None:
    """A load balancer has no opinion on methods: TRACE or PROPFIND are the task's to answer."""
    marathon.set((backends["a"], True))
    base = start_proxy()
    for method in ("TRACE", "PROPFIND"):
        r = requests.request(method, f"{base}/x", timeout=5)
        assert (r.status_code, r.json()["method"], r.json()["backend"]) == (200, method, "a")


def test_the_api_component_gives_the_proxy_the_scheduler_credentials_in_its_environment_not_argv(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from envfixtures.components.api import ApiConfig, LocalApi

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "gate-secret-the-proxy-must-not-get")

    spawned: dict[str, Any] = {}

    class Ready:
        pid = 4242

        def wait_ready(self, *args: Any, **kwargs: Any) -> None:
            pass

    class Ctx:
        config = ApiConfig(app="orders-api")
        settings = LocalApi.Settings()
        root = str(ROOT)

        def facts(self, name: str) -> dict[str, Any]:
            return {
                "apps": {"group": "/g", "app_ids": ["/g/orders-api"], "url": "http://127.0.0.1:1"},
                "scheduler": {"url": "http://127.0.0.1:1", "user": "ef-u", "password": "pw-not-on-argv"},
            }[name]

        def spawn(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> Ready:
            spawned.update(name=name, argv=argv, env=env)
            return Ready()

        def progress(self, message: str) -> None:
            pass

    assert "scheduler" in LocalApi.requires
    facts = LocalApi().build(Ctx())  # type: ignore[arg-type]
    assert facts["marathon_url"] == "http://127.0.0.1:1" and spawned["name"] == "proxy"
    assert spawned["env"][auth.CREDENTIALS_ENV] == "ef-u:pw-not-on-argv"
    assert not any("pw-not-on-argv" in arg for arg in spawned["argv"])
    assert "AWS_SECRET_ACCESS_KEY" not in spawned["env"], "only its credentials: spawn adds the minimal environment"
