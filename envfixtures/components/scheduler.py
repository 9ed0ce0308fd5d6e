"""The ``scheduler`` component: a Marathon endpoint.

``local``: the local scheduler (:mod:`envfixtures.drivers.marathon.server`) started with ``ctx.spawn`` on a free
loopback port; it inherits ``ENVFIXTURES_ENV`` and so do its tasks. Its teardown (SIGTERM to its group)
makes it stop every task before it exits. ``aws``: Marathon of the stack, its URL the stack's output configured as
``marathon_url``.
Facts: ``url`` (and ``pid``, ``workdir`` locally).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

from envfixtures.components.aws import stack_output
from envfixtures.core.component import Component
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.processes import log_tail
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon.client import MarathonClient, Unavailable

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

PING_TIMEOUT = 30.0


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
        process = ctx.spawn("marathon", argv, cwd=workdir)
        url = f"http://127.0.0.1:{port}"
        client = MarathonClient(url, timeout=2.0)
        process.wait_ready(client.ping, what=f"local Marathon on {url}", timeout=PING_TIMEOUT, retry_on=(Unavailable,))
        ctx.progress(f"scheduler: local Marathon on {url}")
        versions = {"marathon": f"{client.info().version} (envfixtures local scheduler)"}
        return Facts(
            {"url": url, "pid": process.pid, "workdir": str(workdir), "backend": "local", "versions": versions}
        )

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        log_path = ctx.log_path("marathon")
        return "\n".join(
            filter(None, [_task_failures(facts["url"]), f"local Marathon log ({log_path}):", log_tail(log_path)])
        )


def _task_failures(url: str) -> str:
    """Each app's last task failure (its message carries the task's stderr tail locally)."""
    try:
        apps = MarathonClient(url, timeout=5.0).list_apps(embed=("apps.lastTaskFailure",))
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
        """Seconds to wait until the stack's Marathon answers."""

        marathon_timeout: float = 300.0

    def build(self, ctx: "BuildContext") -> Facts:
        url = stack_output(ctx.facts("aws"), "marathon_url")
        client = MarathonClient(url, timeout=5.0)
        wait_for(client.ping, what=f"Marathon at {url}", timeout=ctx.settings.marathon_timeout, retry_on=(Unavailable,))
        ctx.progress(f"scheduler: Marathon at {url} (leader {client.leader()})")
        return Facts({"url": url, "backend": "aws", "versions": {"marathon": client.info().version}})

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Nothing to stop: Marathon belongs to the stack, which the ``aws`` component deletes."""
