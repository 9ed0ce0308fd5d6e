"""Hand-written: a tiny component (one directory served by the standard library's http.server); no library does this.

Acme's own component, registered by the entry point ``webroot`` (group ``envfixtures.components``) of this
package. Its section ``[tool.envfixtures.webroot]`` is its :class:`Webroot.Config`: ``directory``, relative to the
checkout root (default ``static``), which must hold an ``index.html``. The build serves that directory with
the standard library's ``http.server`` on a free loopback port, as a process of the environment (journaled,
stopped by the teardown), and waits until ``/index.html`` answers 200.

Facts: ``url`` (``http://127.0.0.1:<port>``), ``directory`` (absolute path of the served directory), ``pid``.
The storefront app template serves the same directory (``{{ facts.webroot.directory }}``).
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from envfixtures.core.component import Component
from envfixtures.core.config import path_field
from envfixtures.core.errors import TemplateError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.processes import log_tail
from envfixtures.core.waiting import CONNECTION_ERRORS

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

HOST = "127.0.0.1"
INDEX = "index.html"
READY_TIMEOUT = 15.0


class Webroot(Component):
    """The storefront's static files, served on loopback."""

    name = "webroot"

    @dataclasses.dataclass(frozen=True)
    class Config:
        """``[tool.envfixtures.webroot]``: the directory to serve, relative to the checkout root."""

        directory: str = path_field("static", kind="dir")

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        directory = served_directory(ctx)
        if not (directory / INDEX).is_file():
            raise TemplateError(directory, INDEX, f"the webroot directory has no {INDEX}")

    def build(self, ctx: "BuildContext") -> Facts:
        directory = served_directory(ctx)
        port = free_port(HOST)
        url = f"http://{HOST}:{port}"
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", HOST, "--directory", str(directory)]
        process = ctx.spawn("http", argv, cwd=directory)
        process.wait_ready(
            lambda: _answers(f"{url}/{INDEX}"),
            what=f"webroot on {url}",
            timeout=READY_TIMEOUT,
            retry_on=CONNECTION_ERRORS,
        )
        ctx.progress(f"webroot: {directory} on {url}")
        return Facts(
            {
                "url": url,
                "directory": str(directory),
                "pid": process.pid,
                "versions": {"python http.server": platform.python_version()},
            }
        )

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        path = ctx.log_path("http")
        return f"webroot {facts.get('url')} serving {facts.get('directory')}; last lines of {path}:\n{log_tail(path)}"


def served_directory(ctx: "BuildContext") -> Path:
    """The configured directory, absolute (resolved against the checkout root)."""
    return (Path(ctx.root) / ctx.config.directory).resolve()


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - a loopback http URL of our own
        return answer.status == 200
