"""The ``api`` component: one base URL that spreads requests over the healthy tasks of the platform's API app.

Configured in ``[tool.envfixtures.api]``: ``app``, the id of the app it fronts (relative to the environment's
group), and ``health_path``. ``local``: :mod:`envfixtures.drivers.marathon.proxy` started with ``ctx.spawn`` on a
free loopback port, in the manner of a load balancer: round-robin over the healthy tasks of that app, its task
list refreshed from the scheduler every second (with the scheduler's credentials, given in the proxy's
environment). ``aws``: the stack's load balancer, ``https://<api_host>`` (the output configured as ``api_host``:
the API's domain when the stack has one, so the certificate matches; else ``load_balancer_dns``). When the output
``api_target_group`` is configured, the app's tasks are that target group's targets (``<agent address>:<host
port>``, the ports Marathon gave them): registered once in the build, then kept in step with the tasks by
:mod:`envfixtures.drivers.aws.targets` run as a process of the environment, as the local proxy follows them.
Both builds end when ``<base_url><health_path>`` answers 200 through that URL (bounded: setting ``api_timeout``).

Facts: ``base_url``, ``app_id`` (and locally ``marathon_url``, ``pid``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from envfixtures.components.aws import refuse_on_stand_in, require_outputs, stack_output, wait_resolves
from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.processes import log_tail
from envfixtures.core.waiting import CONNECTION_ERRORS, wait_for
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.aws import targets
from envfixtures.drivers.marathon import auth
from envfixtures.drivers.marathon.client import MarathonClient, facts_auth

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

DEFAULT_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """Which app the base URL fronts, and how to tell it answers."""

    #: the app's id, relative to the environment's group (e.g. "web" or "shop/web")
    app: str = ""
    #: a path that answers 200 once a healthy task serves
    health_path: str = "/health"


def require_app(ctx: "BuildContext") -> None:
    """At configure time: the platform names the app the api fronts."""
    if not ctx.config.app:
        raise ConfigError(f"{ctx.platform.where('app', 'api')}: not set (the id of the app the api fronts)")


def api_target(ctx: "BuildContext") -> tuple[str, str]:
    """(scheduler URL, the fronted app's id): the one place that knows where the ``apps`` facts keep them."""
    require_app(ctx)
    apps = ctx.facts("apps")
    app_ids = [str(a) for a in apps.get("app_ids") or []]
    wanted = f"{apps.get('group', '')}/{ctx.config.app.strip('/')}"
    if wanted not in app_ids:
        raise BuildError(
            f"{ctx.platform.where('app', 'api')} = {ctx.config.app!r}: no such app among the deployed apps "
            f"({', '.join(app_ids) or 'none'})"
        )
    url = apps.get("url") or ctx.facts("scheduler")["url"]
    return str(url), wanted


def health_check(url: str) -> Callable[[], bool]:
    """True when ``url`` answers 200 (the path from the client to a healthy task works)."""
    return lambda: requests.get(url, timeout=5).status_code == 200


def wait_healthy(url: str, *, timeout: float) -> None:
    """Until ``url`` answers 200."""
    wait_for(
        health_check(url),
        what=f"{url} answering 200",
        timeout=timeout,
        retry_on=CONNECTION_ERRORS,
        first_delay=0.1,
    )


class LocalApi(Component):
    """A loopback reverse proxy over the healthy tasks of the app (see :mod:`envfixtures.drivers.marathon.proxy`)."""

    name = "api"
    requires = ("apps", "scheduler")
    Config = ApiConfig

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait for a healthy task behind the proxy; seconds between its task-list refreshes."""

        api_timeout: float = DEFAULT_TIMEOUT
        api_refresh: float = 1.0

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        require_app(ctx)

    def build(self, ctx: "BuildContext") -> Facts:
        marathon_url, app_id = api_target(ctx)
        port = free_port()
        argv = [sys.executable, "-m", "envfixtures.drivers.marathon.proxy", "--port", str(port),
                "--marathon", marathon_url, "--app-id", app_id,
                "--refresh", str(ctx.settings.api_refresh)]  # fmt: skip
        env: dict[str, str] = {}  # spawn's minimal environment, not the gate's (its AWS keys)
        credentials = facts_auth(ctx.facts("scheduler"))
        if credentials:  # in its environment, not argv: `ps` shows argv to every user
            env[auth.CREDENTIALS_ENV] = auth.join(*credentials)
        process = ctx.spawn("proxy", argv, env=env, cwd=Path(ctx.root))
        base_url = f"http://127.0.0.1:{port}"
        health_url = f"{base_url}/{ctx.config.health_path.lstrip('/')}"
        process.wait_ready(
            health_check(health_url),
            what=f"{health_url} answering 200",
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
    """The stack's application load balancer in front of the app's tasks."""

    name = "api"
    requires = ("aws", "apps")
    Config = ApiConfig

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait until the load balancer answers /health; seconds between the target group's refreshes."""

        api_timeout: float = 300.0
        api_refresh: float = 5.0

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """Before the stack exists: a stand-in for AWS has no load balancer that answers; the output and the app are
        configured."""
        refuse_on_stand_in(ctx, "a moto server's load balancer forwards to nothing: its DNS name does not resolve")
        require_outputs(ctx, "load_balancer_dns")
        require_app(ctx)

    def build(self, ctx: "BuildContext") -> Facts:
        aws = ctx.facts("aws")
        endpoints = aws.get("endpoints") or {}
        host = stack_output(aws, "api_host" if endpoints.get("api_host") else "load_balancer_dns")
        marathon_url, app_id = api_target(ctx)
        facts: dict[str, object] = {"app_id": app_id}
        if endpoints.get("api_target_group"):
            facts.update(self._follow_tasks(ctx, aws, marathon_url, app_id))
        wait_resolves(host, what="api (aws): the stack's load balancer")
        base_url = f"https://{host}"
        wait_healthy(f"{base_url}/{ctx.config.health_path.lstrip('/')}", timeout=ctx.settings.api_timeout)
        ctx.progress(f"api: {base_url} (load balancer) -> {app_id}")
        return Facts({"base_url": base_url, **facts})

    def _follow_tasks(self, ctx: "BuildContext", aws: Facts, marathon_url: str, app_id: str) -> dict[str, object]:
        """Register the app's tasks in the target group now, then keep them in step with a process of the
        environment (Marathon's credentials in its environment, never its command line)."""
        arn = stack_output(aws, "api_target_group")
        region = str(aws.get("region") or "")
        scheduler = ctx.facts("scheduler")
        client = MarathonClient.from_facts({**scheduler, "url": marathon_url}, timeout=5.0)
        added, _ = targets.sync_app(client, app_id, aws_clients.client(aws, "elbv2"), arn)
        ctx.progress(f"api: {len(added)} task(s) of {app_id} registered in the load balancer's target group")
        argv = [sys.executable, "-m", "envfixtures.drivers.aws.targets", "--marathon", marathon_url,
                "--app-id", app_id, "--target-group", arn, "--region", region,
                "--interval", str(ctx.settings.api_refresh)]  # fmt: skip
        env = aws_clients.chain_environ()
        credentials = facts_auth(scheduler)
        if credentials:
            env[auth.CREDENTIALS_ENV] = auth.join(*credentials)
        process = ctx.spawn("targets", argv, env=env, cwd=Path(ctx.root))
        return {"target_group": arn, "registrar_pid": process.pid}
