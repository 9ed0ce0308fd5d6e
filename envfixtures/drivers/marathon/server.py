"""The local scheduler's HTTP front: the part of Marathon's v2 REST API that envfixtures uses, on 127.0.0.1.

Status codes, headers (``Location``, ``Marathon-Deployment-Id``) and bodies follow Marathon's RAML
(``reference/marathon/raml``). The state and task handling live in :mod:`.engine`.
Run: ``python -m envfixtures.drivers.marathon.server --port P --workdir D``. SIGTERM / SIGINT stop every task, then
the server. Standard library ``http.server`` is enough here: a few requests per second, JSON only.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from envfixtures.drivers.marathon.engine import ApiError, Engine

log = logging.getLogger(__name__)


def _flag(query: dict[str, list[str]], name: str, default: bool = False) -> bool:
    values = query.get(name)
    return default if not values else values[-1].lower() in ("true", "1", "")


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the engine."""

    protocol_version = "HTTP/1.1"
    server_version = "envfixtures-marathon"
    engine: Engine  # set on the subclass made by make_server

    def log_message(self, fmt: str, *args: Any) -> None:  # route access logs to logging, at debug
        log.debug("%s %s", self.address_string(), fmt % args)

    # -- plumbing -------------------------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        if body is None:
            data = b""
        elif isinstance(body, str) and not content_type.startswith("application/json"):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise ApiError(
                400, {"message": "Invalid JSON", "details": [{"path": "/", "errors": ["error.expected.jsobject"]}]}
            ) from None

    def _deployed(self, result: dict[str, Any], status: int = 200, location: str | None = None) -> None:
        headers = {"Marathon-Deployment-Id": result["deploymentId"]}
        if location:
            headers["Location"] = location
        self._send(status, result, headers)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path).rstrip("/") or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            self._route(self.command, path, query)
        except ApiError as err:
            self._send(err.status, err.body)
        except Exception:  # noqa: BLE001 - a bug answers 500 with a message, like Marathon
            log.exception("%s %s failed", self.command, self.path)
            self._send(500, {"message": "internal error of the local scheduler (see its log)"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    # -- routes ---------------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        engine = self.engine
        force = _flag(query, "force")
        embed = query.get("embed", [])
        if path == "/ping" and method in ("GET", "HEAD"):
            return self._send(200, "pong", content_type="text/plain; charset=utf-8")
        if path == "/v2/info" and method == "GET":
            return self._send(200, engine.info())
        if path == "/v2/leader" and method == "GET":
            return self._send(200, {"leader": engine.address})
        if path == "/v2/apps":
            if method == "GET":
                return self._send(
                    200,
                    engine.list_apps(
                        embed=embed,
                        id_filter=(query.get("id") or [None])[-1],
                        cmd_filter=(query.get("cmd") or [None])[-1],
                        label=(query.get("label") or [None])[-1],
                    ),
                )
            if method == "POST":
                body = self._body()
                if not isinstance(body, dict):
                    raise ApiError(
                        400,
                        {"message": "Invalid JSON", "details": [{"path": "/", "errors": ["error.expected.jsobject"]}]},
                    )
                app, dep_id = engine.create_app(body)
                return self._send(201, app, {"Location": f"/v2/apps{app['id']}", "Marathon-Deployment-Id": dep_id})
        if path.startswith("/v2/apps/"):
            return self._route_app(method, path[len("/v2/apps") :], query, force, embed)
        if path == "/v2/tasks" and method == "GET":
            return self._send(200, engine.all_tasks())
        if path == "/v2/groups" or path.startswith("/v2/groups/"):
            group_id = path[len("/v2/groups") :] or "/"
            if method == "GET":
                return self._send(200, engine.get_group(group_id, embed))
            if method == "PUT":
                return self._deployed(engine.put_group(group_id, self._body(), force=force))
            if method == "POST":
                body = self._body()
                if not isinstance(body, dict):
                    raise ApiError(400, {"message": "Invalid JSON"})
                gid = body.get("id") or group_id
                if gid in engine.groups and gid != "/":
                    raise ApiError(409, {"message": f"Group {gid} is already created. Use PUT to change this group."})
                return self._deployed(engine.put_group(gid, body, force=force), 201, f"/v2/groups{gid}")
            if method == "DELETE":
                return self._deployed(engine.delete_group(group_id, force=force))
        if path == "/v2/deployments" and method == "GET":
            return self._send(200, engine.list_deployments())
        if path.startswith("/v2/deployments/") and method == "DELETE":
            result = engine.cancel_deployment(path[len("/v2/deployments/") :], force=force)
            if result is None:
                return self._send(202)
            return self._deployed(result)
        if path == "/v2/queue" and method == "GET":
            return self._send(200, engine.queue())
        raise ApiError(404, {"message": f"{method} {path} is not part of the local scheduler's API"})

    def _route_app(self, method: str, rest: str, query: dict[str, list[str]], force: bool, embed: list[str]) -> None:
        engine = self.engine
        if rest.endswith("/restart") and method == "POST":
            return self._deployed(engine.restart_app(rest[: -len("/restart")], force=force))
        if "/tasks" in rest:
            app_id, _, task_id = rest.partition("/tasks")
            task_id = task_id.strip("/")
            if method == "GET" and not task_id:
                return self._send(200, engine.app_tasks(app_id))
            if method == "DELETE" and task_id:
                return self._send(200, engine.kill_task(app_id, task_id, scale=_flag(query, "scale")))
        if method == "GET":
            return self._send(200, engine.get_app(rest, embed))
        if method in ("PUT", "PATCH"):
            created, result = engine.put_app(
                rest, self._body(), force=force, partial=method == "PATCH" or _flag(query, "partialUpdate", True)
            )
            if created:
                return self._deployed(result, 201, "/v2/apps/" + rest.strip("/"))
            return self._deployed(result)
        if method == "DELETE":
            return self._deployed(engine.delete_app(rest, force=force))
        raise ApiError(404, {"message": f"{method} /v2/apps{rest} is not part of the local scheduler's API"})


class Server:
    """The HTTP server and its engine; ``serve()`` blocks until ``stop()``."""

    def __init__(self, workdir: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        handler = type("BoundHandler", (Handler,), {})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.engine = Engine(workdir, address=f"{host}:{self.port}")
        handler.engine = self.engine
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="marathon-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.engine.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests, then stop every task."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.engine.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m envfixtures.drivers.marathon.server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--workdir", type=Path, required=True, help="directory for task sandboxes")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args.workdir.mkdir(parents=True, exist_ok=True)
    server = Server(args.workdir, args.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info("local Marathon listening on %s (workdir %s)", server.url, args.workdir)
    while not stop.wait(1.0):
        pass
    log.info("stopping: every task goes with the scheduler")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
