"""Components for the build graph's own tests: no process, no server; every build and teardown leaves a line in
the state directory, so the tests can count and order them."""

from __future__ import annotations

import os
import threading
import time

from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError
from envfixtures.core.facts import Facts


def _log(ctx, what: str) -> None:  # noqa: ANN001
    with open(ctx.state_dir / f"{what}.log", "a") as fh:
        fh.write(f"{ctx.component} {os.getpid()} {time.monotonic():.6f}\n")


#: Set by a test: the teardowns of ``a`` and ``b`` meet there (a teardown one after the other breaks it).
MEETING: threading.Barrier | None = None


class Part(Component):
    name = "a"

    def build(self, ctx):  # noqa: ANN001, ANN201
        _log(ctx, "builds")
        time.sleep(0.2)  # long enough for every concurrent caller to arrive while it builds
        return Facts({"by": os.getpid()})

    def teardown(self, ctx, facts):  # noqa: ANN001, ANN201
        _log(ctx, "teardowns")
        if MEETING is not None and ctx.component in ("a", "b"):
            MEETING.wait()


class A(Part):
    name = "a"


class B(Part):
    name = "b"


class Top(Part):
    name = "top"
    requires = ("a", "b")

    def build(self, ctx):  # noqa: ANN001, ANN201
        assert ctx.facts("a")["by"] and ctx.facts("b")["by"]  # requirements are built first
        return super().build(ctx)

    def teardown(self, ctx, facts):  # noqa: ANN001, ANN201
        time.sleep(0.3)  # slow: a or b torn down without waiting for it would log first
        super().teardown(ctx, facts)


class Broken(Part):
    name = "broken"

    def build(self, ctx):  # noqa: ANN001, ANN201
        _log(ctx, "builds")
        raise BuildError("broken on purpose")


class NeedsBroken(Part):
    name = "needs_broken"
    requires = ("broken",)


class Fragile(Part):
    """Its first teardown fails (a stack whose delete was refused); the next one succeeds."""

    name = "fragile"

    def teardown(self, ctx, facts):  # noqa: ANN001, ANN201
        _log(ctx, "teardowns")
        flag = ctx.state_dir / "fragile-failed-once"
        if not flag.exists():
            flag.write_text("")
            raise RuntimeError("DependencyViolation: the VPC still has dependencies")


class Secretive(Component):
    """Writes to the state what a real component does, through the context only: a generated password (secrets and
    facts), a journal record, progress lines (logs/) and its work directory."""

    name = "secretive"

    def build(self, ctx):  # noqa: ANN001, ANN201
        password = ctx.new_secret("secretive password")
        ctx.record("thing", id="thing-1")
        ctx.progress("secretive: half way")
        ctx.workdir()
        return Facts({"user": "me", "password": password}, secrets=("password",))

    def teardown(self, ctx, facts):  # noqa: ANN001, ANN201
        ctx.record("thing", id="thing-1", state="deleted")
