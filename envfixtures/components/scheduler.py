"""The ``scheduler`` component: a Marathon endpoint.

``local``: the local scheduler (:mod:`envfixtures.drivers.marathon.server`) started with ``ctx.spawn`` on a free
loopback port; it inherits ``ENVFIXTURES_ENV`` and so do its tasks. Its teardown (SIGTERM to its group)
makes it stop every task before it exits; docker apps' containers (labelled with the environment's name) are
removed by label after it. Like Marathon with ``--http_credentials``, its API demands a user and
password generated for the environment (given to the server in its environment, never on its command line).
``aws``: Marathon of the stack, its URL the stack's output configured as ``marathon_url``; its credentials, if it
demands some, from the settings ``marathon_user`` / ``marathon_password`` or ``ENVFIXTURES_MARATHON_USER`` /
``ENVFIXTURES_MARATHON_PASSWORD`` (prefer the variables: they keep the password off command lines).
Facts: ``url``, ``user`` and ``password`` (secret; absent on aws without credentials), ``bind_host`` (the address
the apps' tasks listen on, for their ``HOST``: ``127.0.0.1`` locally, where every task shares this machine and
nothing is to be reached from outside; ``0.0.0.0`` on aws, where the masters' health checks and the load balancer
reach the tasks on their agents), and ``pid``, ``workdir`` locally. A client: ``MarathonClient.from_facts(facts)``;
a plain request: ``auth=facts_auth(facts)``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from envfixtures.components.aws import check_way_in, reach, refuse_on_stand_in, require_outputs, stack_output
from envfixtures.core.component import Component
from envfixtures.core.errors import ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.processes import log_tail
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.containers import podman
from envfixtures.drivers.marathon import auth
from envfixtures.drivers.marathon.client import MarathonClient, Unavailable

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

PING_TIMEOUT = 30.0
#: where the apps' tasks listen (the ``bind_host`` fact): loopback on this machine, every interface on an agent
LOCAL_BIND_HOST = "127.0.0.1"
STACK_BIND_HOST = "0.0.0.0"  # noqa: S104 - an agent's tasks are reached by the masters and the load balancer


class LocalScheduler(Component):
    """The local scheduler as a child process of the environment."""

    name = "scheduler"
    requires = ()

    def build(self, ctx: "BuildContext") -> Facts:
        port = free_port()
        workdir = ctx.workdir()
        argv = [
            sys.executable,
            "-m",
            "envfixtures.drivers.marathon.server",
            "--port",
            str(port),
            "--workdir",
            str(workdir),
            "--fetch-root",  # file:// fetches only from the environment's own directory
            str(ctx.state_dir),
        ]
        user = f"envfixtures-{secrets.token_hex(4)}"
        password = ctx.new_secret("local Marathon password")
        env = {**podman.environ(), auth.CREDENTIALS_ENV: auth.join(user, password)}  # not the gate's whole env
        process = ctx.spawn("marathon", argv, env=env, cwd=workdir)
        url = f"http://127.0.0.1:{port}"
        client = MarathonClient(url, timeout=2.0, auth=(user, password))
        process.wait_ready(client.ping, what=f"local Marathon on {url}", timeout=PING_TIMEOUT, retry_on=(Unavailable,))
        ctx.progress(f"scheduler: local Marathon on {url}")
        versions = {"marathon": f"{client.info().version} (envfixtures local scheduler)"}
        return Facts(
            {
                "url": url,
                "user": user,
                "password": password,
                "pid": process.pid,
                "workdir": str(workdir),
                "backend": "local",
                "bind_host": LOCAL_BIND_HOST,
                "versions": versions,
            },
            secrets=["password"],
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Stop the scheduler (it stops its tasks), then remove by label whatever container a task left: a killed
        scheduler's ``podman run`` dies with it, its container does not."""
        ctx.stop_processes()
        podman.remove_containers(ctx.name)

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        log_path = ctx.log_path("marathon")
        return "\n".join(filter(None, [_task_failures(facts), f"local Marathon log ({log_path}):", log_tail(log_path)]))


def _task_failures(facts: Facts) -> str:
    """Each app's last task failure (its message carries the task's stderr tail locally)."""
    try:
        apps = MarathonClient.from_facts(facts, timeout=5.0).list_apps(embed=("apps.lastTaskFailure",))
    except Exception as exc:  # noqa: BLE001 - diagnosis must not fail the report
        return f"could not list the apps: {exc}"
    return "\n".join(
        f"{app.id}: lastTaskFailure {f.state} at {f.timestamp}: {f.message}"
        for app in apps
        if (f := app.last_task_failure) is not None
    )


class StackScheduler(Component):
    """Marathon of the stack: its URL is the stack's output configured as ``marathon_url``."""

    name = "scheduler"
    requires = ("aws",)

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait until the stack's Marathon answers; its credentials if it demands some (prefer
        $ENVFIXTURES_MARATHON_USER / $ENVFIXTURES_MARATHON_PASSWORD: off command lines)."""

        marathon_timeout: float = 300.0
        marathon_user: str = ""
        marathon_password: str = ""
        #: how the runner reaches Marathon inside the stack's VPC: "" (directly) or "ssm" (a port-forwarding session)
        aws_way_in: str = ""

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """Before the stack exists: a stand-in for AWS boots no Marathon; its output is configured, and its
        credentials are both given or neither."""
        refuse_on_stand_in(ctx, "a moto server boots no instance: no Marathon answers at the stack's Marathon URL")
        require_outputs(ctx, "marathon_url")
        _credentials(ctx)
        check_way_in(ctx)

    def build(self, ctx: "BuildContext") -> Facts:
        url = stack_output(ctx.facts("aws"), "marathon_url")
        user, password = _credentials(ctx)
        parts = urlsplit(url)
        host, port = parts.hostname or url, parts.port or (443 if parts.scheme == "https" else 80)
        roles = tuple(ctx.platform.section("hosts").get("scheduler") or ())
        reached = reach(ctx, host, port, what="scheduler (aws): the stack's Marathon URL", roles=roles)
        if reached != (host, port):  # the runner's way in: the tasks never see this URL
            url = f"{parts.scheme}://{reached[0]}:{reached[1]}{parts.path}".rstrip("/")
        facts: dict[str, object] = {"url": url, "backend": "aws", "bind_host": STACK_BIND_HOST}
        if password:
            ctx.add_secret("Marathon password", password)
            facts.update(user=user, password=password)
        client = MarathonClient.from_facts(facts, timeout=5.0)
        wait_for(client.ping, what=f"Marathon at {url}", timeout=ctx.settings.marathon_timeout, retry_on=(Unavailable,))
        ctx.progress(f"scheduler: Marathon at {url} (leader {client.leader()})")
        facts["versions"] = {"marathon": client.info().version}
        return Facts(facts, secrets=["password"] if password else [])

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Nothing to stop: Marathon belongs to the stack, which the ``aws`` component deletes."""


def _credentials(ctx: "BuildContext") -> tuple[str, str]:
    """The stack Marathon's user and password (both "" for a Marathon without credentials)."""
    user = ctx.settings.marathon_user or os.environ.get("ENVFIXTURES_MARATHON_USER", "")
    password = ctx.settings.marathon_password or os.environ.get("ENVFIXTURES_MARATHON_PASSWORD", "")
    if bool(user) != bool(password):
        raise ConfigError(
            "scheduler (aws): set both ENVFIXTURES_MARATHON_USER and ENVFIXTURES_MARATHON_PASSWORD "
            "(or the settings marathon_user / marathon_password), or neither for a Marathon without credentials"
        )
    return user, password
