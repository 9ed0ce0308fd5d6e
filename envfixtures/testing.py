"""Components for testing envfixtures itself (with pytester): real processes, no infrastructure.

``sleeper`` starts a real ``sleep`` process in its own session; ``dependent`` requires it. Settings
(``--env-set``) make them slow or failing, so the lifecycle can be exercised in seconds.
"""

from __future__ import annotations

import dataclasses
import time

from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError
from envfixtures.core.facts import Facts

SECRET = "sleeper-secret-7f3a9c"


class Sleeper(Component):
    name = "sleeper"

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Fail the build on purpose; make it slow (to interrupt it); a password to serve (a secret setting)."""

        sleeper_fail: bool = False
        sleeper_build_seconds: float = 0.0
        sleeper_password: str = ""

    def build(self, ctx):  # type: ignore[no-untyped-def]
        process = ctx.spawn("sleep", ["sleep", "600"])
        ctx.add_secret("sleeper token", SECRET)
        password = ctx.settings.sleeper_password
        # Its config file holds its secrets, as rabbitmq.conf holds the broker's admin password.
        (ctx.workdir() / "sleeper.conf").write_text(f"token = {SECRET}\npassword = {password}\n")
        if ctx.settings.sleeper_fail:
            raise BuildError(f"sleeper was told to fail (and its secret is {SECRET})")
        # A slow build, to interrupt mid-way: waits as for a server's readiness, failing at once if its process
        # exits (a teardown stopped it), as a real component's build would.
        seconds = ctx.settings.sleeper_build_seconds
        done = time.monotonic() + seconds
        process.wait_ready(
            lambda: time.monotonic() >= done, what="the sleeper's build", timeout=seconds + 60, max_delay=0.2
        )
        if password:  # first, so that a repr of the facts cut short shows the start of it
            return Facts(
                {"password": password, "pid": process.pid, "token": SECRET, "versions": {"sleep": "600"}},
                secrets=["password", "token"],
            )
        return Facts({"pid": process.pid, "token": SECRET, "versions": {"sleep": "600"}}, secrets=["token"])

    def diagnose(self, ctx, facts):  # type: ignore[no-untyped-def]
        """The sleep's pid and state, and the tail of its log. It names the token on purpose: the caller must redact."""
        from envfixtures.core import processes

        pid = facts["pid"]
        alive = "alive" if processes.start_time(pid) is not None else "gone"
        log = processes.log_tail(ctx.log_path("sleep"), 5).splitlines() or ["(empty log)"]
        return f"sleeper pid {pid} ({alive}), token {facts['token']}\nsleep log (last lines):\n  " + "\n  ".join(log)


class Dependent(Component):
    name = "dependent"
    requires = ("sleeper",)

    def build(self, ctx):  # type: ignore[no-untyped-def]
        process = ctx.spawn("sleep", ["sleep", "600"])
        return Facts({"pid": process.pid, "sleeper_pid": ctx.facts("sleeper")["pid"]})


class Templated(Component):
    """Refuses a bad ``templates/templated.json`` in ``check`` — before anything is built."""

    name = "templated"

    @classmethod
    def check(cls, ctx):  # type: ignore[no-untyped-def]
        import json

        from envfixtures.core.errors import TemplateError

        path = ctx.root / "templates" / "templated.json"
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TemplateError(path, f"line {exc.lineno}", exc.msg) from None

    def build(self, ctx):  # type: ignore[no-untyped-def]
        process = ctx.spawn("sleep", ["sleep", "600"])
        return Facts({"pid": process.pid})


class Deployer(Component):
    """Deploys every ``templates/*.json`` of the checkout, as the apps deploy their templates: those files are its
    inputs (the promotion record's digests, the files whose provenance a promotion vouches for)."""

    name = "deployer"

    @classmethod
    def inputs(cls, ctx):  # type: ignore[no-untyped-def]
        return sorted((ctx.root / "templates").glob("*.json"))

    def build(self, ctx):  # type: ignore[no-untyped-def]
        return Facts({"deployed": [path.name for path in self.inputs(ctx)]})


class Listener(Component):
    """A real process listening on TCP: on the address of setting ``listener_host`` (default 127.0.0.1),
    on a recorded port, or also on an unrecorded one with ``listener_extra_port=true`` (for the host checks)."""

    name = "listener"

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """The address to listen on; also listen on a port nobody recorded."""

        listener_host: str = "127.0.0.1"
        listener_extra_port: bool = False

    def build(self, ctx):  # type: ignore[no-untyped-def]
        import socket
        import sys

        from envfixtures.core.ports import free_port

        host = ctx.settings.listener_host
        port = free_port()
        code = (
            "import socket, sys, threading\n"
            "socks = []\n"
            "for port in map(int, sys.argv[2:]):\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "    s.bind((sys.argv[1], port)); s.listen(); socks.append(s)\n"
            "threading.Event().wait()\n"
        )
        ports = [str(port)] + ([str(free_port())] if ctx.settings.listener_extra_port else [])
        process = ctx.spawn("listen", [sys.executable, "-c", code, host, *ports])

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        process.wait_ready(listening, what=f"listener on {host}:{port}", timeout=15)
        return Facts({"pid": process.pid, "host": host, "port": port})


#: A base image for the tests of docker apps, made offline: Debian's static busybox (package busybox-static) and the
#: links of the applets the tests use, imported once per machine (``[tool.envfixtures.images] bases``).
BUSYBOX_IMAGE = "localhost/envfixtures/test-busybox:2"
BUSYBOX_APPLETS = ("sh", "echo", "httpd", "mkdir", "sleep", "cat", "ls", "true")
#: the shell command that writes that root filesystem's tarball to ``$ENVFIXTURES_BASE_TAR``
BUSYBOX_ROOT_COMMAND = (
    'set -e; r=$(mktemp -d); mkdir -p "$r/bin"; cp /bin/busybox "$r/bin/"; '
    f'for a in {" ".join(BUSYBOX_APPLETS)}; do ln -s busybox "$r/bin/$a"; done; '
    'tar -C "$r" -cf "$ENVFIXTURES_BASE_TAR" .; rm -rf "$r"'
)
