"""The ``api`` component: one base URL that spreads requests over the healthy tasks of the orders API.

``local``: :mod:`envfixtures.drivers.marathon.proxy` started with ``ctx.spawn`` on a free loopback port, in the
manner of a load balancer: round-robin over the healthy tasks of the orders API app, its task list refreshed from
the scheduler every second. ``aws``: the stack's load balancer, ``https://<output LoadBalancerDns>``.
Both builds end when ``<base_url>/health`` answers 200 through that URL (bounded: setting ``api_timeout``).

Facts: ``base_url``, ``app_id`` (and locally ``marathon_url``, ``pid``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.processes import log_tail
from envfixtures.core.waiting import CONNECTION_ERRORS, wait_for

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

#: The app, among the ``apps`` component's ``app_ids``, whose tasks the base URL serves.
API_APP_SUFFIX = "/orders-api"
DEFAULT_TIMEOUT = 120.0


def orders_api_target(ctx: "BuildContext") -> tuple[str, str]:
    """(scheduler URL, orders API app id): the one place that knows where the ``apps`` facts keep them."""
    apps = ctx.facts("apps")
    app_ids = [str(a) for a in apps.get("app_ids") or []]
    matching = [a for a in app_ids if a.endswith(API_APP_SUFFIX)]
    if len(matching) != 1:
        raise BuildError(
            f"expected exactly one app ending in {API_APP_SUFFIX!r} among the deployed apps, "
            f"found {matching or 'none'} (app ids: {', '.join(app_ids) or 'none'})"
        )
    url = apps.get("url") or ctx.facts("scheduler")["url"]
    return str(url), matching[0]


def health_check(base_url: str) -> Callable[[], bool]:
    """True when ``<base_url>/health`` answers 200 (the path from the client to a healthy task works)."""
    return lambda: requests.get(f"{base_url}/health", timeout=5).status_code == 200


def wait_healthy(base_url: str, *, timeout: float) -> None:
    """Until ``<base_url>/health`` answers 200."""
    wait_for(
        health_check(base_url),
        what=f"{base_url}/health answering 200",
        timeout=timeout,
        retry_on=CONNECTION_ERRORS,
        first_delay=0.1,
    )


class LocalApi(Component):
    """A loopback reverse proxy over the healthy orders API tasks (see :mod:`envfixtures.drivers.marathon.proxy`)."""

    name = "api"
    requires = ("apps",)

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait for a healthy task behind the proxy; seconds between its task-list refreshes."""

        api_timeout: float = DEFAULT_TIMEOUT
        api_refresh: float = 1.0

    def build(self, ctx: "BuildContext") -> Facts:
        marathon_url, app_id = orders_api_target(ctx)
        port = free_port()
        argv = [sys.executable, "-m", "envfixtures.drivers.marathon.proxy", "--port", str(port),
                "--marathon", marathon_url, "--app-id", app_id,
                "--refresh", str(ctx.settings.api_refresh)]  # fmt: skip
        process = ctx.spawn("proxy", argv, cwd=Path(ctx.root))
        base_url = f"http://127.0.0.1:{port}"
        process.wait_ready(
            health_check(base_url),
            what=f"{base_url}/health answering 200",
            timeout=ctx.settings.api_timeout,
            retry_on=CONNECTION_ERRORS,
            first_delay=0.1,
        )
        ctx.progress(f"api: {base_url} -> healthy tasks of {app_id}")
        return Facts({"base_url": base_url, "app_id": app_id, "marathon_url": marathon_url, "pid": process.pid})

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        path = ctx.log_path("proxy")
        return f"api proxy log ({path}):\n{log_tail(path)}"


class StackApi(Component):
    """The stack's application load balancer in front of the orders API tasks."""

    name = "api"
    requires = ("aws", "apps")

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait until the load balancer answers /health."""

        api_timeout: float = 300.0

    def build(self, ctx: "BuildContext") -> Facts:
        outputs = ctx.facts("aws").get("outputs") or {}
        dns = outputs.get("LoadBalancerDns")
        if not dns:
            raise BuildError(f"the stack of {ctx.name} has no output LoadBalancerDns (outputs: {sorted(outputs)})")
        _, app_id = orders_api_target(ctx)
        base_url = f"https://{dns}"
        wait_healthy(base_url, timeout=ctx.settings.api_timeout)
        ctx.progress(f"api: {base_url} (load balancer) -> {app_id}")
        return Facts({"base_url": base_url, "app_id": app_id})

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Nothing to stop: the load balancer belongs to the stack, which the ``aws`` component deletes."""
