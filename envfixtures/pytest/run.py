"""One pytest run's hold on its environment: naming or reusing it, signals, and the final teardown.

The controller (or the single process without xdist) owns the run: it names the environment in
``pytest_configure``, hands the name to the workers, and tears down in ``pytest_sessionfinish``,
after the last worker is done. SIGTERM (what a Jenkins abort sends) becomes a KeyboardInterrupt, so
the same teardown path runs as for Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any

from envfixtures.core import naming
from envfixtures.core.environment import KEPT, TORN_DOWN, Environment
from envfixtures.core.errors import EnvfixturesError
from envfixtures.pytest.config import Settings

log = logging.getLogger(__name__)

WORKER_KEY = "envfixtures_env"


class Run:
    """The environment of this run, and whether this process is the one that must tear it down."""

    def __init__(self, env: Environment, settings: Settings, *, owner: bool) -> None:
        self.env = env
        self.settings = settings
        self.owner = owner
        self.finished = False
        self.teardown_problems: list[str] = []
        self._previous_handlers: dict[int, Any] = {}

    @classmethod
    def for_controller(cls, settings: Settings) -> "Run":
        """Name the environment (or open the kept one to reuse), after its inputs passed the checks.

        Nothing is written yet: the state directory appears with the first build.
        """
        if settings.reuse:
            env = Environment.open(settings.home, settings.reuse)
            if env.meta.get("status") == TORN_DOWN:
                raise EnvfixturesError(f"--env-reuse: environment {env.name} was torn down; nothing to reuse")
            env.check()
            env.claim()
            env.description = env.meta
            return cls(env, settings, owner=False)
        env = Environment(
            name=naming.env_name(settings.sha, naming.new_run_id(), settings.branch),
            sha=settings.sha,
            backend=settings.backend,
            root=settings.root,
            home=settings.home,
            settings=settings.values,
            components=settings.components,
        )
        env.check()
        env.description = env.describe(dirty=settings.dirty, kept=settings.keep)
        return cls(env, settings, owner=True)

    @classmethod
    def for_worker(cls, workerinput: dict[str, Any], settings: Settings) -> "Run":
        return cls(Environment.from_description(workerinput[WORKER_KEY]), settings, owner=False)

    # ------------------------------------------------------------------ signals

    def install_signal_handlers(self) -> None:
        """SIGTERM raises KeyboardInterrupt in the main thread, so teardown runs as for Ctrl-C."""
        self._previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)

    def shield_signals(self) -> None:
        """During teardown a second Ctrl-C or SIGTERM must not leave the environment half torn down."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, _ignored)

    def restore_signals(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    # ------------------------------------------------------------------ the end of the run

    def finish(self) -> str | None:
        """Tear down (or keep) the environment; returns a message for the terminal, if any."""
        if self.finished:
            return None
        self.finished = True
        if not self.env.exists:
            return None  # nothing was built, nothing to keep or tear down
        if self.settings.keep or self.settings.reuse:
            self.env.update_meta(kept=True, status=KEPT)
            return (
                f"envfixtures: environment {self.env.name} kept.\n"
                f"  rerun against it:  pytest --env-reuse {self.env.name}  (add --lf for the last failures)\n"
                f"  destroy it:        envfixtures down {self.env.name}"
            )
        if not self.owner:
            return None
        self.shield_signals()
        try:
            self.teardown_problems = self.env.teardown()
        finally:
            self.restore_signals()
        if self.teardown_problems:
            return "envfixtures: teardown problems:\n  " + "\n  ".join(self.teardown_problems)
        return None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _ignored(signum: int, frame: FrameType | None) -> None:
    try:
        os.write(2, f"envfixtures: {signal.Signals(signum).name} ignored while tearing down\n".encode())
    except OSError:
        pass


def is_worker(config: Any) -> bool:
    return hasattr(config, "workerinput")
