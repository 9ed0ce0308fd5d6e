"""The local scheduler's HTTP front: the part of Marathon's v2 REST API that envfixtures uses, on 127.0.0.1.

Status codes, headers (``Location``, ``Marathon-Deployment-Id``) and bodies follow Marathon's RAML
(``reference/marathon/raml``). The state and task handling live in :mod:`.engine`.
Run: ``ENVFIXTURES_MARATHON_CREDENTIALS=user:password python -m envfixtures.drivers.marathon.server --port P
--workdir D``. SIGTERM / SIGINT stop every task, then the server. Standard library ``http.server`` is enough here:
a few requests per second, JSON only. Requests are routed by werkzeug's URL map (:data:`ROUTES`): app ids hold
slashes, and its rules say which suffix wins.

Like Marathon started with ``--http_credentials``, every request (``/ping`` included) needs those credentials
(HTTP basic; :mod:`.auth`): otherwise 401 with ``WWW-Authenticate: Basic realm="Mesosphere"``. They come from
the environment, never from argv (``ps`` shows argv to every user). Writes (POST, PUT, PATCH) take
``application/json`` only: another Content-Type, or a body without one, is 415 ``Unsupported Media Type``
(Marathon's resources consume JSON only) and nothing is changed, so a page that posts ``text/plain`` (no CORS
preflight) cannot create an app.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, PathConverter, Rule

from envfixtures.drivers.marathon import auth
from envfixtures.drivers.marathon.engine import ApiError, Engine

log = logging.getLogger(__name__)


Query = dict[str, list[str]]

#: Methods whose body Marathon reads: they take ``application/json`` only.
WRITES = frozenset({"POST", "PUT", "PATCH"})
#: Marathon's 415 body (MarathonExceptionMapper: the status's reason phrase).
UNSUPPORTED_MEDIA_TYPE = {"message": "Unsupported Media Type"}
#: The largest refused body (401, 415) read and dropped to keep the connection; after a larger one it is closed.
DISCARD_LIMIT = 1024 * 1024


def _flag(query: Query, name: str, default: bool = False) -> bool:
    values = query.get(name)
    return default if not values else values[-1].lower() in ("true", "1", "")


def _last(query: Query, name: str) -> str | None:
    return (query.get(name) or [None])[-1]


class Handler(BaseHTTPRequestHandler):
    """Routes one request to the engine."""

    protocol_version = "HTTP/1.1"
    server_version = "envfixtures-marathon"
    engine: Engine  # set on the subclass made by Server
    credentials: auth.Credentials | None = None  # likewise; None only for an in-process server of a test

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

    def _refuse(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer without using the request's body: a small one is read and dropped (the connection stays usable,
        and closing a socket with unread data would reset it before the client reads the answer); after a large
        or chunked one the connection is closed."""
        headers = dict(headers or {})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked or not 0 <= length <= DISCARD_LIMIT:
            self.close_connection = True
            headers["Connection"] = "close"
        elif length:
            self.rfile.read(length)
        self._send(status, body, headers)

    def _authorized(self) -> bool:
        return self.credentials is None or auth.check(self.headers.get("Authorization"), self.credentials)

    def _json_body_or_none(self) -> bool:
        """A write's body is JSON, or there is none (``POST .../restart``): Marathon's resources consume JSON only."""
        content_type = self.headers.get("Content-Type")
        if content_type is None:
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            return not chunked and (self.headers.get("Content-Length") or "0").strip() == "0"
        return content_type.split(";", 1)[0].strip().lower() == "application/json"

    def _dispatch(self) -> None:
        if not self._authorized():
            return self._refuse(401, auth.UNAUTHORIZED_BODY, {"WWW-Authenticate": auth.CHALLENGE})
        split = urlsplit(self.path)
        path = unquote(split.path).rstrip("/") or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            endpoint, args = route(self.command, path)
            if self.command in WRITES and not self._json_body_or_none():
                return self._refuse(415, UNSUPPORTED_MEDIA_TYPE)
            getattr(self, endpoint)(query, **args)
        except ApiError as err:
            self._send(err.status, err.body)
        except Exception:  # noqa: BLE001 - a bug answers 500 with a message, like Marathon
            log.exception("%s %s failed", self.command, self.path)
            self._send(500, {"message": "internal error of the local scheduler (see its log)"})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    # -- endpoints: one per rule of ROUTES, called with the query and the rule's arguments -----------------

    def ping(self, query: Query) -> None:
        self._send(200, "pong", content_type="text/plain; charset=utf-8")

    def info(self, query: Query) -> None:
        self._send(200, self.engine.info())

    def leader(self, query: Query) -> None:
        self._send(200, {"leader": self.engine.address})

    def list_apps(self, query: Query) -> None:
        self._send(
            200,
            self.engine.list_apps(
                embed=query.get("embed", []),
                id_filter=_last(query, "id"),
                cmd_filter=_last(query, "cmd"),
                label=_last(query, "label"),
            ),
        )

    def create_app(self, query: Query) -> None:
        body = self._body()
        if not isinstance(body, dict):
            raise ApiError(
                400, {"message": "Invalid JSON", "details": [{"path": "/", "errors": ["error.expected.jsobject"]}]}
            )
        app, dep_id = self.engine.create_app(body)
        self._send(201, app, {"Location": f"/v2/apps{app['id']}", "Marathon-Deployment-Id": dep_id})

    def get_app(self, query: Query, app_id: str) -> None:
        self._send(200, self.engine.get_app("/" + app_id, query.get("embed", [])))

    def put_app(self, query: Query, app_id: str) -> None:
        partial = self.command == "PATCH" or _flag(query, "partialUpdate", True)
        created, result = self.engine.put_app("/" + app_id, self._body(), force=_flag(query, "force"), partial=partial)
        if created:
            return self._deployed(result, 201, "/v2/apps/" + app_id.strip("/"))
        return self._deployed(result)

    def delete_app(self, query: Query, app_id: str) -> None:
        self._deployed(self.engine.delete_app("/" + app_id, force=_flag(query, "force")))

    def restart_app(self, query: Query, app_id: str) -> None:
        self._deployed(self.engine.restart_app("/" + app_id, force=_flag(query, "force")))

    def app_tasks(self, query: Query, app_id: str) -> None:
        self._send(200, self.engine.app_tasks("/" + app_id))

    def kill_task(self, query: Query, app_id: str, task_id: str) -> None:
        self._send(200, self.engine.kill_task("/" + app_id, task_id.strip("/"), scale=_flag(query, "scale")))

    def all_tasks(self, query: Query) -> None:
        self._send(200, self.engine.all_tasks())

    def get_group(self, query: Query, group_id: str = "") -> None:
        self._send(200, self.engine.get_group("/" + group_id, query.get("embed", [])))

    def put_group(self, query: Query, group_id: str = "") -> None:
        self._deployed(self.engine.put_group("/" + group_id, self._body(), force=_flag(query, "force")))

    def create_group(self, query: Query, group_id: str = "") -> None:
        body = self._body()
        if not isinstance(body, dict):
            raise ApiError(400, {"message": "Invalid JSON"})
        gid = body.get("id") or "/" + group_id
        if gid in self.engine.groups and gid != "/":
            raise ApiError(409, {"message": f"Group {gid} is already created. Use PUT to change this group."})
        self._deployed(self.engine.put_group(gid, body, force=_flag(query, "force")), 201, f"/v2/groups{gid}")

    def delete_group(self, query: Query, group_id: str = "") -> None:
        self._deployed(self.engine.delete_group("/" + group_id, force=_flag(query, "force")))

    def list_deployments(self, query: Query) -> None:
        self._send(200, self.engine.list_deployments())

    def cancel_deployment(self, query: Query, deployment_id: str) -> None:
        result = self.engine.cancel_deployment(deployment_id, force=_flag(query, "force"))
        if result is None:
            return self._send(202)
        return self._deployed(result)

    def queue(self, query: Query) -> None:
        self._send(200, self.engine.queue())


class IdConverter(PathConverter):
    """An app, group, task or deployment id: the rest of the path, slashes included (like ``path``).

    Unlike ``path`` it may start with a slash (``/v2/apps//a`` is app ``/a``: Marathon's ids drop empty
    segments). Non-greedy, so in ``<id:app_id>/tasks/<id:task_id>`` the app id ends at the first ``/tasks/``.
    """

    regex = ".+?"
    part_isolating = False  # werkzeug infers True from a regex without "/"; this one spans segments


#: Marathon's v2 REST API as far as the local scheduler serves it; endpoints name the Handler's methods.
#: Where a path fits more than one rule, werkzeug prefers the rule with more static parts whatever the order
#: here, so a suffix wins over a bare app id: GET /v2/apps/group/tasks lists the tasks of app /group (as
#: Marathon's ``{appId:.+}/tasks`` resource does), not app /group/tasks. A path that fits a rule but not its
#: method falls through to the next rule that fits both (DELETE /v2/apps/a/tasks deletes app /a/tasks).
#: Trailing slashes are stripped before matching; an unknown path or method is a 404, never a 405.
ROUTES = Map(
    [
        Rule("/ping", endpoint="ping", methods=["GET", "HEAD"]),
        Rule("/v2/info", endpoint="info", methods=["GET"]),
        Rule("/v2/leader", endpoint="leader", methods=["GET"]),
        Rule("/v2/apps", endpoint="list_apps", methods=["GET"]),
        Rule("/v2/apps", endpoint="create_app", methods=["POST"]),
        Rule("/v2/apps/<id:app_id>/restart", endpoint="restart_app", methods=["POST"]),
        Rule("/v2/apps/<id:app_id>/tasks", endpoint="app_tasks", methods=["GET"]),
        Rule("/v2/apps/<id:app_id>/tasks/<id:task_id>", endpoint="kill_task", methods=["DELETE"]),
        Rule("/v2/apps/<id:app_id>", endpoint="get_app", methods=["GET"]),
        Rule("/v2/apps/<id:app_id>", endpoint="put_app", methods=["PUT", "PATCH"]),
        Rule("/v2/apps/<id:app_id>", endpoint="delete_app", methods=["DELETE"]),
        Rule("/v2/tasks", endpoint="all_tasks", methods=["GET"]),
        *(
            Rule(path, endpoint=endpoint, methods=[method])
            for path in ("/v2/groups", "/v2/groups/<id:group_id>")
            for endpoint, method in (
                ("get_group", "GET"),
                ("put_group", "PUT"),
                ("create_group", "POST"),
                ("delete_group", "DELETE"),
            )
        ),
        Rule("/v2/deployments", endpoint="list_deployments", methods=["GET"]),
        Rule("/v2/deployments/<id:deployment_id>", endpoint="cancel_deployment", methods=["DELETE"]),
        Rule("/v2/queue", endpoint="queue", methods=["GET"]),
    ],
    converters={"id": IdConverter},
    strict_slashes=False,  # trailing slashes are stripped before matching: no redirects
    merge_slashes=False,  # "//" is not redirected either; IdConverter takes it into the id
)

#: werkzeug lets HEAD into every GET rule; the API answers HEAD on /ping only.
_HEAD_ENDPOINTS = frozenset({"ping"})


def route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The endpoint and arguments for ``method path`` (path already unquoted, trailing slashes stripped).

    Raises ApiError 404 when no rule fits, the path or the method (Marathon's API has no 405 here).
    """
    try:
        rule, args = ROUTES.bind("127.0.0.1").match(path, method=method, return_rule=True)
    except HTTPException:  # NotFound, MethodNotAllowed (RequestRedirect cannot happen: see ROUTES)
        rule = None
    if rule is None or (method == "HEAD" and rule.endpoint not in _HEAD_ENDPOINTS):
        raise ApiError(404, {"message": f"{method} {path} is not part of the local scheduler's API"})
    return rule.endpoint, args


class Server:
    """The HTTP server and its engine; ``serve()`` blocks until ``stop()``."""

    def __init__(
        self,
        workdir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        credentials: auth.Credentials | None,
        fetch_roots: Sequence[Path] = (),
    ) -> None:
        handler = type("BoundHandler", (Handler,), {"credentials": credentials})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.engine = Engine(workdir, address=f"{host}:{self.port}", fetch_roots=fetch_roots)
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
    parser.add_argument(
        "--fetch-root",
        type=Path,
        action="append",
        default=[],
        help="a directory file:// fetch URIs may read from (repeatable; default: the workdir)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        credentials = auth.from_environ()
    except ValueError as exc:
        parser.error(str(exc))
    if credentials is None:
        parser.error(f"set {auth.CREDENTIALS_ENV}=user:password in the environment (the API demands them)")
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args.workdir.mkdir(parents=True, exist_ok=True)
    server = Server(args.workdir, args.port, credentials=credentials, fetch_roots=args.fetch_root)
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
