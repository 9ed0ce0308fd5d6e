"""Eager builds: once collection is done, the components the selected tests need start building at once, in the
background, while the first tests run. A test still waits only for what it needs: its fixture calls
:meth:`Environment.ensure <envfixtures.core.environment.Environment.ensure>`, which waits for the component's build
lock, then reads the facts (or the recorded failure) of whoever built it.

- **What**: the components among the fixtures of the selected items' closures (``item.fixturenames`` is
  transitive: a suite fixture that requests ``api`` counts), after deselection (``-k``, ``-m``, ``--lf``), and
  their requirements. A selection that needs none builds nothing, and writes no state directory.
- **Where**: in one process only — the single one without xdist, or the worker ``gw0`` (the controller collects
  nothing, and every worker collects the same items). Builds are once per environment whoever starts them.
- **How**: one daemon thread per needed component that no other needed component requires, the longest
  requirement chain first; ``ensure`` builds each one's requirements concurrently, exactly once, under the file
  locks. A failed build is recorded as any other and surfaces through the fixture of each test that needs it; the
  thread itself says nothing.
- **The end**: a run that ends normally waits for its eager builds before its teardown (a worker, before it exits:
  another worker may be waiting for the lock); an interrupted one does not. Its teardown stops them: nothing
  starts or is recorded once it began, and it waits (bounded) for them before it scrubs the state directory; the
  threads, daemons, do not keep the process alive (see :meth:`Environment.teardown
  <envfixtures.core.environment.Environment.teardown>`).
- **Not** on ``--collect-only``, ``--setup-plan`` or ``--fixtures-per-test``, after collection errors that stop the
  run, nor with ``--env-eager false`` (``ENVFIXTURES_EAGER``, ini ``env_eager``): then each component is built by
  the first test that needs it. A ``--env-reuse`` run builds eagerly what the kept environment lacks (what it has
  is read, not rebuilt); nothing is torn down at its end, so nothing races a teardown there.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence

import pytest

from envfixtures.core.environment import Environment
from envfixtures.pytest.run import Run, is_worker

log = logging.getLogger(__name__)

#: the xdist worker that starts the eager builds
WORKER = "gw0"


class EagerBuilds:
    """The threads building, in the background, the components a run's selection needs."""

    def __init__(self, env: Environment, components: Sequence[str]) -> None:
        self.env = env
        self.components = list(components)
        self.threads = [
            threading.Thread(target=_build, args=(env, name), name=f"envfixtures-eager-{name}", daemon=True)
            for name in chains(env, self.components)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def wait(self) -> None:
        """Until every eager build ended (built or failed); a Ctrl-C stops the waiting."""
        try:
            for thread in self.threads:
                while thread.is_alive():
                    thread.join(0.5)
        except KeyboardInterrupt:
            pass

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)


def _build(env: Environment, name: str) -> None:
    try:
        env.ensure(name, eager=True)
    except BaseException as exc:  # noqa: BLE001 - recorded in the component's state; its fixture raises it
        log.debug("eager build of %s ended without its facts (%s)", name, type(exc).__name__)


def needed(items: Iterable[pytest.Item], components: Sequence[str]) -> list[str]:
    """The components the items' fixture closures use, in the environment's order."""
    used: set[str] = set()
    for item in items:
        used.update(getattr(item, "fixturenames", ()))
    return [name for name in components if name in used]


def chains(env: Environment, names: Sequence[str]) -> list[str]:
    """The components of ``names`` that no other of them requires (building one builds its requirements), the one
    with the longest requirement chain first (ties: in the order given)."""
    closure = env.required_closure(names)
    required = {req for name in closure for req in env.requirements(name)}
    depth: dict[str, int] = {}
    for name in closure:  # requirements first
        depth[name] = 1 + max((depth[req] for req in env.requirements(name)), default=0)
    tops = [name for name in closure if name not in required]
    return sorted(tops, key=lambda name: -depth[name])


def wanted(session: pytest.Session, run: Run) -> bool:
    """Whether this process starts the eager builds of this run."""
    config = session.config
    option = config.option
    if not run.settings.eager or option.collectonly or getattr(option, "setupplan", False):
        return False
    if getattr(option, "show_fixtures_per_test", False):
        return False
    if session.shouldstop or session.shouldfail:
        return False
    if session.testsfailed and not option.continue_on_collection_errors:
        return False  # collection errors: the run stops before its first test
    if is_worker(config):
        return config.workerinput.get("workerid") == WORKER  # type: ignore[attr-defined]
    return not config.pluginmanager.has_plugin("dsession")  # xdist's controller runs no test


def start(session: pytest.Session, run: Run) -> EagerBuilds | None:
    """Start building what the selection needs; ``None`` when this process does not, or nothing is needed."""
    if not wanted(session, run):
        return None
    names = needed(session.items, run.env.components)
    if not names:
        return None
    builds = EagerBuilds(run.env, names)
    # The builds' progress lines reach the terminal, not the output of whichever test a capture holds: stderr as it
    # is now, between collection and the first test, when pytest captures nothing.
    try:
        run.env.progress_fd = os.dup(2)
    except OSError:  # no stderr to copy: the lines go where stderr goes
        pass
    builds.start()
    return builds


def finish(builds: EagerBuilds | None, *, interrupted: bool) -> None:
    """At the end of the session: wait for the eager builds, unless the run was interrupted: then they start
    nothing more (the threads end with the process; the teardown stops what they started)."""
    if builds is None:
        return
    if interrupted:
        builds.env.stop_builds()
    else:
        builds.wait()


def release(builds: EagerBuilds | None) -> None:
    """Close the copy of stderr, once no eager build can write to it any more."""
    if builds is None or builds.running() or builds.env.progress_fd == 2:
        return
    fd, builds.env.progress_fd = builds.env.progress_fd, 2
    os.close(fd)
