"""One pytest run's hold on its environment: naming or reusing it, signals, and the final teardown.

The controller (or the single process without xdist) owns the run: it names the environment in
``pytest_configure``, hands the name to the workers, and tears down in ``pytest_sessionfinish``,
after the last worker is done. SIGTERM (what a Jenkins abort sends) becomes a KeyboardInterrupt, so
the same teardown path runs as for Ctrl-C.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from envfixtures import lifecycle
from envfixtures.core.environment import KEPT, Environment
from envfixtures.core.errors import EnvfixturesError
from envfixtures.pytest import promotion
from envfixtures.pytest.config import Settings

log = logging.getLogger(__name__)

WORKER_KEY = "envfixtures_env"


class Run:
    """The environment of this run, and whether this process is the one that must tear it down."""

    def __init__(self, env: Environment, settings: Settings, *, owner: bool, provenance: Sequence[str] = ()) -> None:
        self.env = env
        self.settings = settings
        self.owner = owner
        #: why the SHA does not describe what this run deploys, as found when the environment was named or opened
        self.provenance_at_start = list(provenance)
        self.finished = False
        self.teardown_problems: list[str] = []
        self._previous_sigterm: Any = None

    @classmethod
    def for_controller(cls, settings: Settings) -> "Run":
        """Name the environment (or open the kept one to reuse), after its inputs passed the checks."""
        if settings.reuse:
            env = lifecycle.open_for_reuse(settings.home, settings.reuse)
            head = lifecycle.commit_of(settings.root, "HEAD")
            built = lifecycle.commit_of(settings.root, env.sha)
            return cls(env, settings, owner=False, provenance=promotion.reuse_refusals(env.name, env.sha, head, built))
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
            kept=settings.keep,
        )
        return cls(env, settings, owner=True, provenance=(env.description or {}).get("provenance", ()))

    @classmethod
    def for_worker(cls, workerinput: dict[str, Any], settings: Settings) -> "Run":
        return cls(Environment.from_description(workerinput[WORKER_KEY]), settings, owner=False)

    def provenance(self) -> list[str]:
        """Why the SHA does not describe what this run deployed and verified (empty: it does), for the promotion
        verdict. For an environment this run named: how the checkout differed from the SHA then, and how it differs
        now (a file changed or added while the run read its inputs counts too). For a reused environment: why a
        reuse run never promotes (:func:`envfixtures.pytest.promotion.reuse_refusals`)."""
        why = list(self.provenance_at_start)
        if self.settings.reuse or not self.owner:
            return why
        try:
            now = lifecycle.differences_from_sha(self.env.root, self.env.sha, lifecycle.read_paths(self.env))
        except EnvfixturesError as exc:
            now = [f"the inputs could not be listed again: {exc}"]
        return why + [f"at the end of the run, {w}" for w in now if w not in why]

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
        # First: a build still running on a thread of this process (an eager one, after an interrupt) starts nothing
        # more, and so cannot create the state directory after the check below.
        self.env.stop_builds()
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
