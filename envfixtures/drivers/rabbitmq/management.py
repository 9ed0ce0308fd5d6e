"""A small client of the RabbitMQ management HTTP API.

Hand-written because the maintained choices do not fit: pyrabbit/pyrabbit2 are unmaintained and
cover neither bulk ``columns=`` reads nor vhost-scoped definitions; we need about ten endpoints.
"""

from __future__ import annotations

import json as _json
import logging
from typing import Any
from urllib.parse import quote

import requests

from envfixtures.core.waiting import wait_for

log = logging.getLogger(__name__)


class ManagementError(Exception):
    """A management API call failed; the message names the method, path and status (never credentials)."""


class Transient(ManagementError):
    """A 500 or 503 of a broker under load (a vhost still initialising on its nodes): worth another try."""


def _q(name: str) -> str:
    """Percent-encode one path segment (a vhost ``/`` becomes ``%2F``)."""
    return quote(name, safe="")


class Management:
    """Client of one node's management API (``base_url`` like ``http://127.0.0.1:15672``)."""

    def __init__(self, base_url: str, user: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = (user, password)
        self._session.headers["content-type"] = "application/json"

    def __repr__(self) -> str:
        return f"Management({self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        timeout: float | None = None,
    ) -> Any:
        """Call ``/api`` + ``path``; return the decoded JSON body (or None). Raise ManagementError otherwise."""
        url = f"{self.base_url}/api{path}"
        try:
            resp = self._session.request(method, url, json=json, params=params, timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise ManagementError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code not in ok:
            error = Transient if resp.status_code in (500, 503) else ManagementError
            raise error(f"{method} {path}: HTTP {resp.status_code}: {error_text(resp.text)[:300]}")
        if not resp.content:
            return None
        return resp.json()

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None)

    # --- cluster -----------------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        return self.get("/overview")

    def nodes(self) -> list[dict[str, Any]]:
        """Every cluster node as the API sees it (``running``, ``partitions``, ``mem_alarm``, ...)."""
        return self.get("/nodes", columns="name,running,partitions,mem_alarm,disk_free_alarm")

    # --- users, vhosts, permissions -------------------------------------------------------------------

    def users(self) -> list[str]:
        return [u["name"] for u in self.get("/users")]

    def put_user(self, name: str, password: str, tags: str = "") -> None:
        self.request("PUT", f"/users/{_q(name)}", json={"password": password, "tags": tags})

    def delete_user(self, name: str) -> None:
        self.request("DELETE", f"/users/{_q(name)}", ok=(204, 404))

    def put_vhost(self, vhost: str, *, timeout: float = 60.0) -> None:
        """Create ``vhost`` (idempotent). Under load a node answers 500 "Timed out while waiting for the vhost to
        initialise": the PUT is retried within ``timeout``."""
        wait_for(
            lambda: self.request("PUT", f"/vhosts/{_q(vhost)}", json={}) or True,
            what=f"vhost {vhost} created",
            timeout=timeout,
            retry_on=(Transient,),
            first_delay=0.5,
            max_delay=5.0,
        )

    def delete_vhost(self, vhost: str) -> None:
        self.request("DELETE", f"/vhosts/{_q(vhost)}", ok=(204, 404))

    def put_permissions(
        self, vhost: str, user: str, configure: str = ".*", write: str = ".*", read: str = ".*"
    ) -> None:
        self.request(
            "PUT", f"/permissions/{_q(vhost)}/{_q(user)}", json={"configure": configure, "write": write, "read": read}
        )

    def user_permissions(self, user: str) -> list[dict[str, Any]]:
        return self.get(f"/users/{_q(user)}/permissions")

    # --- topology ---------------------------------------------------------------------------------------

    def import_definitions(self, vhost: str, definitions: dict[str, Any], *, timeout: float = 300.0) -> None:
        """Import vhost-scoped definitions (exchanges, queues, bindings, policies) in one call."""
        self.request("POST", f"/definitions/{_q(vhost)}", json=definitions, timeout=timeout)

    def exchanges(self, vhost: str) -> list[dict[str, Any]]:
        return self.get(
            f"/exchanges/{_q(vhost)}",
            columns="name,type,durable,auto_delete,internal,arguments,policy",
            disable_stats="true",
        )

    def queues(
        self, vhost: str, columns: str = "name,type,durable,auto_delete,arguments,policy"
    ) -> list[dict[str, Any]]:
        """All queues of ``vhost`` in one read; ``disable_stats`` keeps it cheap for many queues."""
        return self.get(f"/queues/{_q(vhost)}", columns=columns, disable_stats="true")

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        return self.get(f"/queues/{_q(vhost)}/{_q(name)}")

    def bindings(self, vhost: str) -> list[dict[str, Any]]:
        return self.get(f"/bindings/{_q(vhost)}")

    def policies(self, vhost: str) -> list[dict[str, Any]]:
        return self.get(f"/policies/{_q(vhost)}")


def error_text(body: str) -> str:
    """The management API's error body, readable: an Erlang charlist (``{"error":[84,105,109,...]}``, as a vhost
    still initialising gives) is decoded to its text."""
    try:
        data = _json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        decoded = {key: _charlist(value) for key, value in data.items()}
        if decoded != data:
            return "; ".join(f"{key}: {value}" for key, value in decoded.items())
    return body


def _charlist(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(c, int) and 0 < c < 0x110000 for c in value):
        return "".join(map(chr, value))
    return value
