"""Hand-written Marathon REST client: the PyPI `marathon` client is unmaintained and breaks on Python 3.10+.

One client for both backends: the local scheduler (:mod:`envfixtures.drivers.marathon.server`) and a real Marathon
(its URL from the stack outputs). Errors keep Marathon's own message and details:
:class:`NotFound` (404), :class:`Conflict` / :class:`Locked` (409), :class:`Unprocessable` (422),
:class:`BadRequest` (400), :class:`Unauthorized` (401/403). Request bodies are never logged (apps carry secrets
in ``env``), nor are the credentials.

Credentials: the local scheduler demands HTTP basic credentials generated for the environment (a real Marathon
may too, ``--http_credentials``); the ``scheduler`` component's facts carry them as ``user`` and ``password``.
:meth:`MarathonClient.from_facts` builds a client that sends them on every request, and :func:`facts_auth`
gives them to a plain ``requests`` call (``auth=facts_auth(scheduler)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from envfixtures.core.errors import EnvfixturesError, FailedState
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon.models import (
    App,
    Deployment,
    DeploymentResult,
    Group,
    Info,
    MalformedResponse,
    QueueItem,
    Task,
)

log = logging.getLogger(__name__)


class MarathonError(EnvfixturesError):
    """Marathon answered with an error; ``message`` and ``details`` are Marathon's own."""

    def __init__(self, method: str, path: str, status: int, message: str, body: Any = None) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.body = body
        self.details: list[dict[str, Any]] = list((body or {}).get("details") or []) if isinstance(body, dict) else []
        super().__init__(f"{method} {path} -> {status}: {message}{self._detail_text()}")

    def _detail_text(self) -> str:
        parts = []
        for d in self.details:
            if isinstance(d, dict):
                parts.append(f"{d.get('path', '?')}: {'; '.join(map(str, d.get('errors') or [d.get('message', '')]))}")
        return (" [" + " | ".join(parts) + "]") if parts else ""

    @property
    def paths(self) -> list[str]:
        """The JSON paths named in ``details`` (422/400)."""
        return [str(d.get("path")) for d in self.details if isinstance(d, dict)]


class BadRequest(MarathonError):
    """400: the body is not valid JSON for the type (``details`` name the paths)."""


class NotFound(MarathonError):
    """404: no such app, group, task or deployment."""


class Conflict(MarathonError):
    """409: the object already exists, or (see :class:`Locked`) it is locked by a deployment."""


class Locked(Conflict):
    """409: locked by one or more deployments; ``deployment_ids`` lists them. Retry with ``force=True``."""

    @property
    def deployment_ids(self) -> list[str]:
        deps = self.body.get("deployments") if isinstance(self.body, dict) else None
        return [d["id"] for d in deps or [] if isinstance(d, dict) and "id" in d]


class Unprocessable(MarathonError):
    """422: the object violates Marathon's rules; ``details`` carry the paths, e.g. ``/cmd``."""


class Unavailable(MarathonError):
    """5xx or no answer at all."""


class Unauthorized(MarathonError):
    """401 (no or wrong credentials) or 403 (not allowed): see the scheduler's facts ``user`` / ``password``."""


_BY_STATUS: dict[int, type[MarathonError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    422: Unprocessable,
}


def facts_auth(facts: Mapping[str, Any]) -> tuple[str, str] | None:
    """(user, password) of the scheduler's facts for HTTP basic auth, or None when it has none (a Marathon
    without ``--http_credentials`` on aws)."""
    user, password = facts.get("user"), facts.get("password")
    return (str(user), str(password)) if user and password else None


def error_for(method: str, path: str, status: int, body: Any) -> MarathonError:
    """The exception for an error response (a 409 with ``deployments`` is :class:`Locked`)."""
    message = body.get("message") if isinstance(body, dict) else None
    if not message:
        message = (body if isinstance(body, str) else "") or f"HTTP {status}"
    if status == 409 and isinstance(body, dict) and body.get("deployments"):
        cls: type[MarathonError] = Locked
    elif status >= 500:
        cls = Unavailable
    else:
        cls = _BY_STATUS.get(status, MarathonError)
    return cls(method, path, status, str(message), body)


def _app_path(app_id: str) -> str:
    return "/v2/apps/" + quote(app_id.strip("/"), safe="/")


def _group_path(group_id: str) -> str:
    return "/v2/groups/" + quote(group_id.strip("/"), safe="/")


class MarathonClient:
    """Marathon's v2 REST API.

    ``url`` is the base URL (e.g. ``http://127.0.0.1:8080``). ``timeout`` bounds every request.
    ``auth`` is passed to requests and sent with every request: ``(user, password)`` for HTTP basic auth
    (Marathon's ``--http_credentials``, the local scheduler's generated credentials). Build it from the
    ``scheduler`` component's facts with :meth:`from_facts`.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, auth: Any = None, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if auth is not None:
            self.session.auth = auth

    @classmethod
    def from_facts(
        cls, facts: Mapping[str, Any], *, timeout: float = 10.0, session: requests.Session | None = None
    ) -> "MarathonClient":
        """A client of the ``scheduler`` component's Marathon (``url``), with its credentials (``user``,
        ``password``) when it has some."""
        return cls(str(facts["url"]), timeout=timeout, auth=facts_auth(facts), session=session)

    # -- transport -------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Send one request; raise the mapped :class:`MarathonError` for any status >= 400."""
        try:
            resp = self.session.request(method, self.url + path, params=params, json=json, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Unavailable(method, path, 0, f"no answer from {self.url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text.strip()[:500]
            raise error_for(method, path, resp.status_code, body)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError as exc:
            raise MalformedResponse(f"{method} {path}: body is not JSON: {resp.text[:200]!r}") from exc

    def _deploy(self, method: str, path: str, *, force: bool, json: Any = None) -> DeploymentResult:
        params = {"force": "true"} if force else None
        resp = self.request(method, path, params=params, json=json)
        body = resp.json()
        result = DeploymentResult.from_json(body, path)
        header = resp.headers.get("Marathon-Deployment-Id")
        if result.deployment_id is None and header:
            return DeploymentResult(header, result.version)
        if header and header != result.deployment_id:
            raise MalformedResponse(f"{method} {path}: header Marathon-Deployment-Id {header} != body {result}")
        if result.deployment_id is None:
            raise MalformedResponse(f"{method} {path}: no deployment id in the body nor in Marathon-Deployment-Id")
        return result

    # -- general -----------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        """GET /ping: True when Marathon answers ``pong``."""
        return self.request("GET", "/ping").text.strip().strip('"') == "pong"

    def info(self) -> Info:
        return Info.from_json(self._json("GET", "/v2/info"), "/v2/info")

    def leader(self) -> str:
        return str(self._json("GET", "/v2/leader")["leader"])

    # -- apps ----------------------------------------------------------------------------------------------

    def list_apps(self, *, embed: Iterable[str] = (), app_id: str | None = None, label: str | None = None) -> list[App]:
        """GET /v2/apps; ``embed`` e.g. ("apps.tasks", "apps.lastTaskFailure")."""
        params: list[tuple[str, str]] = [("embed", e) for e in embed]
        if app_id:
            params.append(("id", app_id))
        if label:
            params.append(("label", label))
        body = self._json("GET", "/v2/apps", params=params)
        apps = body.get("apps") if isinstance(body, dict) else None
        if not isinstance(apps, list):
            raise MalformedResponse("GET /v2/apps: body has no 'apps' list")
        return [App.from_json(a, f"/apps({i})") for i, a in enumerate(apps)]

    def get_app(self, app_id: str, *, embed: Iterable[str] = ()) -> App:
        """GET /v2/apps/{id}; ``embed`` e.g. ("app.tasks", "app.lastTaskFailure")."""
        path = _app_path(app_id)
        body = self._json("GET", path, params=[("embed", e) for e in embed])
        if not isinstance(body, dict) or "app" not in body:
            raise MalformedResponse(f"GET {path}: body has no 'app'")
        return App.from_json(body["app"], "/app")

    def create_app(self, definition: Mapping[str, Any]) -> App:
        """POST /v2/apps: 201 with the app (its ``deployments`` name the deployment started)."""
        return App.from_json(self._json("POST", "/v2/apps", json=dict(definition)), "")

    def update_app(self, app_id: str, definition: Mapping[str, Any], *, force: bool = False) -> DeploymentResult:
        """PUT /v2/apps/{id} (creates the app when it does not exist)."""
        return self._deploy("PUT", _app_path(app_id), force=force, json=dict(definition))

    def delete_app(self, app_id: str, *, force: bool = False) -> DeploymentResult:
        return self._deploy("DELETE", _app_path(app_id), force=force)

    def restart_app(self, app_id: str, *, force: bool = False) -> DeploymentResult:
        """POST /v2/apps/{id}/restart: a rolling restart honouring the app's upgradeStrategy."""
        return self._deploy("POST", _app_path(app_id) + "/restart", force=force)

    def app_tasks(self, app_id: str) -> list[Task]:
        body = self._json("GET", _app_path(app_id) + "/tasks")
        return [Task.from_json(t, f"/tasks({i})") for i, t in enumerate(body.get("tasks", []))]

    def kill_task(self, app_id: str, task_id: str, *, scale: bool = False) -> None:
        """DELETE /v2/apps/{id}/tasks/{taskId}: the scheduler relaunches it unless ``scale``."""
        params = {"scale": "true"} if scale else None
        self.request("DELETE", f"{_app_path(app_id)}/tasks/{quote(task_id, safe='')}", params=params)

    # -- groups --------------------------------------------------------------------------------------------

    def get_group(self, group_id: str, *, embed: Iterable[str] = ()) -> Group:
        path = _group_path(group_id)
        return Group.from_json(self._json("GET", path, params=[("embed", e) for e in embed]), "")

    def put_group(self, group_id: str, group: Mapping[str, Any], *, force: bool = False) -> DeploymentResult:
        """PUT /v2/groups/{id}: create or replace the group; apps missing from ``group`` are stopped."""
        return self._deploy("PUT", _group_path(group_id), force=force, json=dict(group))

    update_group = put_group

    def delete_group(self, group_id: str, *, force: bool = False) -> DeploymentResult:
        return self._deploy("DELETE", _group_path(group_id), force=force)

    # -- deployments -----------------------------------------------------------------------------------------

    def deployments(self) -> list[Deployment]:
        body = self._json("GET", "/v2/deployments")
        if not isinstance(body, list):
            raise MalformedResponse("GET /v2/deployments: body is not a list")
        return [Deployment.from_json(d, f"({i})") for i, d in enumerate(body)]

    def cancel_deployment(self, deployment_id: str, *, force: bool = False) -> DeploymentResult | None:
        """DELETE /v2/deployments/{id}: without ``force`` a rollback deployment starts (its result is
        returned); with ``force`` the deployment is just stopped (202, None)."""
        path = f"/v2/deployments/{quote(deployment_id, safe='')}"
        if force:
            self.request("DELETE", path, params={"force": "true"})
            return None
        resp = self.request("DELETE", path)
        return DeploymentResult.from_json(resp.json(), path)

    def wait_for_deployment(
        self,
        deployment_id: str,
        *,
        timeout: float,
        app_ids: Iterable[str] = (),
        since: float | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Wait until ``deployment_id`` is gone from /v2/deployments.

        Fails fast with :class:`~envfixtures.core.errors.FailedState` carrying the task's failure message when
        one of ``app_ids`` reports a ``lastTaskFailure`` of its current version newer than ``since``
        (epoch seconds; default: now).
        """
        since = time.time() if since is None else since
        watched = list(app_ids)

        def gone() -> bool:
            running = [d for d in self.deployments() if d.id == deployment_id]
            if running and progress:
                d = running[0]
                progress(f"deployment {deployment_id}: step {d.current_step}/{d.total_steps}")
            return not running

        def failed() -> str | None:
            return self.failure_since(watched, since)

        wait_for(
            gone,
            what=f"Marathon deployment {deployment_id}",
            timeout=timeout,
            retry_on=(Unavailable,),
            failed=failed if watched else None,
            first_delay=0.1,
            max_delay=1.0,
        )

    def failure_since(self, app_ids: Iterable[str], since: float) -> str | None:
        """The first ``lastTaskFailure`` message of the apps' current versions newer than ``since``, or None."""
        wanted = set(app_ids)
        if not wanted:
            return None
        for app in self.list_apps(embed=("apps.lastTaskFailure",)):
            failure = app.last_task_failure
            if app.id not in wanted or failure is None or failure.version != app.version:
                continue
            if parse_time(failure.timestamp) >= since:
                return f"app {app.id} task {failure.task_id} {failure.state}: {failure.message}"
        return None

    # -- tasks and queue -------------------------------------------------------------------------------------

    def tasks(self) -> list[Task]:
        body = self._json("GET", "/v2/tasks")
        return [Task.from_json(t, f"/tasks({i})") for i, t in enumerate(body.get("tasks", []))]

    def queue(self) -> list[QueueItem]:
        body = self._json("GET", "/v2/queue")
        return [QueueItem.from_json(q, f"/queue({i})") for i, q in enumerate(body.get("queue", []))]


def parse_time(stamp: str) -> float:
    """Marathon's ISO-8601 timestamps (``2015-09-29T15:59:51.164Z``) as epoch seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def format_time(epoch: float) -> str:
    """Epoch seconds in Marathon's timestamp format, millisecond precision, UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


__all__ = [
    "BadRequest",
    "Conflict",
    "FailedState",
    "Locked",
    "MarathonClient",
    "MarathonError",
    "NotFound",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "error_for",
    "facts_auth",
    "format_time",
    "parse_time",
]
