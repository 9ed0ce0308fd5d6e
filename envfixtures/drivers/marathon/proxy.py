"""Hand-written: round-robin over http.client in a few lines; no maintained pure-Python load balancer fits in-process.

A loopback HTTP reverse proxy in front of the healthy tasks of one Marathon app, in the manner of a
load balancer (what the ``api`` component gives the tests on ``local``; on ``aws`` the stack's ALB):

* the task list comes from ``GET <marathon>/v2/apps/<app id>?embed=app.tasks`` every ``--refresh``
  seconds: a task is a target when it is ``TASK_RUNNING`` and, if the app has health checks, has a
  result for each of them and all are alive (like Marathon's own ``tasksHealthy``). When Marathon
  does not answer, the last known list is kept. Marathon's credentials (HTTP basic) go with each read when
  ``ENVFIXTURES_MARATHON_CREDENTIALS=user:password`` is in the proxy's environment (never on its command
  line, which ``ps`` shows to every user); they are never passed on to a task;
* requests go round-robin over the targets; method, path, query, headers (minus hop-by-hop ones,
  plus ``X-Forwarded-For``/``-Proto``/``-Host``) and body are passed on, the answer comes back the same way;
* a target whose connection fails is left out until the next refresh, and the request is retried on
  another target when that is safe: always when the connection could not be opened (nothing was sent),
  otherwise only for idempotent methods (as a load balancer does);
* no target: ``502 {"error": "bad_gateway", ...}``; a target that does not answer in time: ``504``;
* SIGTERM or SIGINT: stop accepting, exit 0.

Run as ``python -m envfixtures.drivers.marathon.proxy --port P --marathon URL --app-id /group/web``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import logging
import signal
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from envfixtures.drivers.marathon import auth

log = logging.getLogger(__name__)

Target = tuple[str, int]

#: RFC 9110 7.6.1: connection-specific headers a proxy must not forward.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
     "trailer", "trailers", "transfer-encoding", "upgrade"}
)  # fmt: skip
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
MAX_BODY = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------- targets


def healthy_targets(app: dict[str, Any]) -> list[Target]:
    """The (host, first port) of each running task of a Marathon app (JSON of ``/v2/apps/<id>``) that is healthy."""
    checks = app.get("healthChecks") or []
    targets = []
    for task in app.get("tasks") or []:
        if task.get("state", "TASK_RUNNING") != "TASK_RUNNING" or not task.get("ports"):
            continue
        results = task.get("healthCheckResults") or []
        if checks and (len(results) < len(checks) or not all(r.get("alive") for r in results)):
            continue
        targets.append((str(task["host"]), int(task["ports"][0])))
    return sorted(targets)


def marathon_source(
    marathon_url: str, app_id: str, *, timeout: float = 2.0, credentials: auth.Credentials | None = None
) -> Callable[[], list[Target]]:
    """A callable that reads the healthy targets of ``app_id`` from Marathon (raises when it cannot), sending
    ``credentials`` (user, password) with HTTP basic auth when given."""
    url = f"{marathon_url.rstrip('/')}/v2/apps/{app_id.strip('/')}?embed=app.tasks"
    headers = {"Accept": "application/json"}
    if credentials:
        headers["Authorization"] = auth.header(*credentials)

    def read() -> list[Target]:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - the scheduler's own URL
            return healthy_targets(json.load(resp)["app"])

    return read


class Targets:
    """The current targets, refreshed from ``source`` by a thread; round-robin picks; failed ones left out."""

    def __init__(self, source: Callable[[], list[Target]], *, refresh: float = 1.0) -> None:
        self._source = source
        self._refresh = refresh
        self._lock = threading.Lock()
        self._targets: list[Target] = []
        self._down: set[Target] = set()
        self._counter = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="targets", daemon=True)

    def start(self) -> None:
        self.refresh_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh_once(self) -> None:
        try:
            targets = self._source()
        except Exception as exc:  # noqa: BLE001 - keep the last known targets while the source is away
            log.warning("could not refresh the targets (keeping %d): %s", len(self._targets), exc)
            return
        with self._lock:
            if targets != self._targets:
                log.info("targets: %s", ", ".join(f"{h}:{p}" for h, p in targets) or "none")
            self._targets = targets
            self._down.clear()

    def _run(self) -> None:
        while not self._stop.wait(self._refresh):
            self.refresh_once()

    def candidates(self) -> list[Target]:
        """Every usable target, starting with the next one in round-robin order."""
        with self._lock:
            usable = [t for t in self._targets if t not in self._down]
            if not usable:
                return []
            start = next(self._counter) % len(usable)
        return usable[start:] + usable[:start]

    def mark_down(self, target: Target) -> None:
        with self._lock:
            self._down.add(target)
        log.warning("target %s:%d failed; left out until the next refresh", *target)


# ---------------------------------------------------------------------------------------------- proxying


class _NotSent(Exception):
    """The connection to a target could not be opened: the request never left, any method may be retried."""


class ProxyHandler(BaseHTTPRequestHandler):
    """Passes each request to a target; the server carries ``targets`` and ``upstream_timeout``."""

    protocol_version = "HTTP/1.1"
    # One write per response, and no Nagle: otherwise headers and body go out as two small segments and
    # the client's delayed ACK adds ~40 ms to every keep-alive request.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server: "ProxyServer"

    def do_any(self) -> None:
        body = self._read_body()
        if body is None:
            return
        headers = self._forward_headers()
        for target in self.server.targets.candidates():
            try:
                status, reason, resp_headers, resp_body = self._send(target, headers, body)
            except _NotSent:
                self.server.targets.mark_down(target)
                continue
            except TimeoutError:
                return self._reply_error(504, "gateway_timeout", "the upstream task did not answer in time")
            except (OSError, http.client.HTTPException):
                self.server.targets.mark_down(target)
                if self.command in IDEMPOTENT:
                    continue
                return self._reply_error(502, "bad_gateway", "the upstream task closed the connection")
            return self._reply(status, reason, resp_headers, resp_body)
        self._reply_error(502, "bad_gateway", "no healthy task to serve the request")

    def __getattr__(self, name: str) -> Any:
        """Every method (TRACE, PROPFIND, ...) is the task's to answer, as behind a load balancer."""
        if name.startswith("do_"):
            return self.do_any
        raise AttributeError(name)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._reply_error(400, "bad_request", "invalid Content-Length")
            return None
        if length > MAX_BODY:
            self.close_connection = True
            self._reply_error(413, "payload_too_large", "the request body is too large for the proxy")
            return None
        return self.rfile.read(length) if length else b""

    def _forward_headers(self) -> list[tuple[str, str]]:
        named = {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
        drop = HOP_BY_HOP | named | {"content-length", "expect"}  # the body is already read
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in drop]
        client = self.client_address[0]
        previous = self.headers.get("X-Forwarded-For")
        headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
        headers.append(("X-Forwarded-For", f"{previous}, {client}" if previous else client))
        headers.append(("X-Forwarded-Proto", "http"))
        if "Host" in self.headers and "X-Forwarded-Host" not in self.headers:
            headers.append(("X-Forwarded-Host", self.headers["Host"]))
        return headers

    def _send(
        self, target: Target, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*target, timeout=self.server.upstream_timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise _NotSent(str(exc)) from exc
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def _reply(self, status: int, reason: str, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        named = {n.strip().lower() for k, v in headers if k.lower() == "connection" for n in v.split(",")}
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP | named | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reply_error(self, status: int, error: str, message: str) -> None:
        body = json.dumps({"error": error, "message": message}).encode()
        self._reply(status, http.client.responses.get(status, ""), [("Content-Type", "application/json")], body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s " + format, self.client_address[0], *args)


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], targets: Targets, *, upstream_timeout: float = 30.0) -> None:
        self.targets = targets
        self.upstream_timeout = upstream_timeout
        super().__init__(address, ProxyHandler)


def serve(server: ProxyServer, stop: threading.Event) -> None:
    """Serve until ``stop`` is set, then close the listening socket."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve", daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        server.targets.stop()
        thread.join(timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envfixtures.drivers.marathon.proxy", description=__doc__.splitlines()[2]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--marathon", required=True, help="the Marathon URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--app-id", required=True, help="the app whose tasks serve, e.g. /group/web")
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between task list refreshes")
    parser.add_argument("--upstream-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    try:
        credentials = auth.from_environ()
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    targets = Targets(marathon_source(args.marathon, args.app_id, credentials=credentials), refresh=args.refresh)
    targets.start()
    server = ProxyServer((args.host, args.port), targets, upstream_timeout=args.upstream_timeout)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("proxy on http://%s:%d for %s (tasks from %s)", args.host, args.port, args.app_id,
             urllib.parse.urlsplit(args.marathon).netloc)  # fmt: skip
    serve(server, stop)
    log.info("proxy stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
