"""One pytest run's hold on its environment: naming or reusing it, signals, and the final teardown.

The controller (or the single process without xdist) owns the run: it names the environment in
``pytest_configure``, hands the name to the workers, and tears down in ``pytest_sessionfinish``,
after the last worker is done. SIGTERM (what a Jenkins abort sends) becomes a KeyboardInterrupt, so
the same teardown path runs as for Ctrl-C.
"""

from __future__ import annotations

import logging
from typing import Any

from envfixtures import lifecycle
from envfixtures.core.environment import KEPT, Environment
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
        self._previous_sigterm: Any = None

    @classmethod
    def for_controller(cls, settings: Settings) -> "Run":
        """Name the environment (or open the kept one to reuse), after its inputs passed the checks."""
        if settings.reuse:
            return cls(lifecycle.open_for_reuse(settings.home, settings.reuse), settings, owner=False)
        pruned = lifecycle.prune(settings.home, settings.platform)
        if pruned:
            log.info("pruned the state of %d environment(s) torn down long ago", len(pruned))
        env = lifecycle.new_environment(
            sha=settings.sha,
            backend=settings.backend,
            root=settings.root,
            home=settings.home,
            branch=settings.branch,
            settings=settings.values,
            components=settings.components,
            config=settings.platform,
            dirty=settings.dirty,
            kept=settings.keep,
        )
        return cls(env, settings, owner=True)

    @classmethod
    def for_worker(cls, workerinput: dict[str, Any], settings: Settings) -> "Run":
        return cls(Environment.from_description(workerinput[WORKER_KEY]), settings, owner=False)

    # ------------------------------------------------------------------ signals

    def install_signal_handlers(self) -> None:
        """SIGTERM raises KeyboardInterrupt in the main thread, so teardown runs as for Ctrl-C."""
        self._previous_sigterm = lifecycle.sigterm_as_interrupt()

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
        self.teardown_problems = lifecycle.teardown(self.env)
        if self.teardown_problems:
            return "envfixtures: teardown problems:\n  " + "\n  ".join(self.teardown_problems)
        return None


def is_worker(config: Any) -> bool:
    return hasattr(config, "workerinput")
