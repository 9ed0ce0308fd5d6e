"""Components for testing envfixtures itself (with pytester): real processes, no infrastructure.

``sleeper`` starts a real ``sleep`` process in its own session; ``dependent`` requires it. Settings
(``--env-set``) make them slow or failing, so the lifecycle can be exercised in seconds.
"""

from __future__ import annotations

import threading

from .components.base import Component
from .errors import BuildError
from .facts import Facts

SECRET = "sleeper-secret-7f3a9c"


class Sleeper(Component):
    name = "sleeper"

    def build(self, env):  # type: ignore[no-untyped-def]
        proc, _ = env.spawn(self.name, "sleep", ["sleep", "600"])
        env.add_secret("sleeper token", SECRET)
        if env.settings.get("sleeper_fail") == "true":
            raise BuildError(f"sleeper was told to fail (and its secret is {SECRET})")
        # A slow build, to interrupt mid-way: waits on an event nobody sets, bounded by the setting.
        threading.Event().wait(float(env.settings.get("sleeper_build_seconds", "0")))
        return Facts({"pid": proc.pid, "token": SECRET}, secrets=["token"])


class Dependent(Component):
    name = "dependent"
    requires = ("sleeper",)

    def build(self, env):  # type: ignore[no-untyped-def]
        proc, _ = env.spawn(self.name, "sleep", ["sleep", "600"])
        return Facts({"pid": proc.pid, "sleeper_pid": env.facts("sleeper")["pid"]})


class Templated(Component):
    """Refuses a bad ``templates/templated.json`` in ``check`` — before anything is built."""

    name = "templated"

    @classmethod
    def check(cls, env):  # type: ignore[no-untyped-def]
        import json

        from .errors import TemplateError

        path = env.root / "templates" / "templated.json"
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TemplateError(path, f"line {exc.lineno}", exc.msg) from None

    def build(self, env):  # type: ignore[no-untyped-def]
        proc, _ = env.spawn(self.name, "sleep", ["sleep", "600"])
        return Facts({"pid": proc.pid})
