"""The environment's build graph: components checked, built once (requirements first, independent ones
concurrently, under a per-component file lock across xdist workers and processes), and torn down after
what requires them.

Its state on disk (description, components' states and facts, secrets, locks) is :mod:`envfixtures.core.state`;
what a component sees of it is :class:`~envfixtures.core.context.BuildContext`. Workers share facts through
the state files; a component is built by whoever takes its lock first, and everybody else reads its facts (or
its recorded failure) afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from envfixtures.core import config as config_mod
from envfixtures.core import private, processes, registry
from envfixtures.core import settings as settings_mod
from envfixtures.core.component import Component
from envfixtures.core.context import BuildContext
from envfixtures.core.errors import (
    BuildError,
    ComponentFailed,
    ConfigError,
    EnvfixturesError,
    UnknownName,
)
from envfixtures.core.facts import Facts
from envfixtures.core.redaction import scrub_tree
from envfixtures.core.settings import EnvironmentSettings
from envfixtures.core.state import (  # noqa: F401 - the statuses are part of this module's interface
    ACTIVE,
    BUILDING,
    BUILT,
    FAILED,
    KEPT,
    TEARDOWN_FAILED,
    TEARING_DOWN,
    TORN_DOWN,
    EnvironmentState,
    owner_alive,
    read_meta,
)

log = logging.getLogger(__name__)

#: Seconds to wait for another process's teardown of the same environment before giving up.
LOCK_TIMEOUT = 600
# A component's build lock is waited for ``build_lock_timeout`` seconds (a setting, default an hour: longer than a
# build), env.json's for ``state.META_LOCK_TIMEOUT``.
#: How :func:`prune` renames a state directory before removing it (``envs/.pruning-NAME.PID.NS``).
PRUNING = ".pruning-"
#: Seconds a teardown waits, once the environment's processes are stopped, for the builds still running on other
#: threads of its own process (eager builds, requirements) to end, before it removes and scrubs the state directory.
BUILDS_STOP_TIMEOUT = 5.0
#: The cause a build gets when the teardown of its own process began while it ran.
STOPPED = "the environment is being torn down"


class Environment(EnvironmentState):
    """One environment of one run (or of several runs, when kept and reused): its state, and its build graph."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Builds on other threads of this process (eager builds, requirements) against this process's teardown:
        # once ``_stopping`` is set (under ``_guard``), no build starts a process, records a resource or a secret,
        # or writes a component's state; the teardown waits for the threads in ``_builders`` (bounded).
        self._guard = threading.Lock()
        self._stopping = False
        self._builders: set[threading.Thread] = set()

    def _refuse_to_late_builds(self, what: str) -> None:
        """A build still running on a thread of this process once the run's end began (:meth:`stop_builds`) starts
        and records nothing more (a component's own teardown, on the thread that tears down, still may)."""
        with self._guard:
            late = self._stopping and threading.current_thread() in self._builders
        if late:
            raise BuildError(f"{self.name} is being torn down: {what} refused to a build still running")

    def spawn(
        self,
        component: str,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> processes.Process:
        """Start a process of ``component`` in its own session, journaled before it starts; see
        :class:`~envfixtures.core.processes.Process`."""
        self._refuse_to_late_builds(f"{component}/{name}")
        if self.meta.get("status") in (TEARING_DOWN, TORN_DOWN):
            raise BuildError(f"{self.name} is being torn down: {component}/{name} not started")
        self.private_dir("logs")  # 0700 before the process's log is created in it
        return processes.spawn(
            self.journal,
            component=component,
            name=name,
            argv=argv,
            log_path=self.log_path(component, name),
            env=env,
            cwd=cwd,
            user=user,
        )

    def stop_processes(self, component: str | None, *, timeout: float = 10.0) -> None:
        """Stop the journaled processes of ``component`` (``None``: of every component) by group, newest
        first, all in parallel."""
        prefix = f"{component}/" if component else ""
        mine = [rec for rec in self.journal.started_processes() if rec["key"].startswith(prefix)]

        def stop(rec: dict[str, Any]) -> None:
            key, pid = rec["key"], rec["pid"]
            process = processes.Process.from_record(key, pid, rec["start_time"], marker=self.name, uid=rec["uid"])
            process.stop(timeout=timeout)  # only if still the one started (start time and marker)
            self.journal.append({"kind": "process", "key": key, "state": "stopped", "pid": pid})

        if mine:
            with ThreadPoolExecutor(max_workers=len(mine)) as pool:
                list(pool.map(stop, reversed(mine)))

    def journaled_processes(self, component: str) -> list[processes.Process]:
        """The journaled processes of ``component`` still recorded as running (started by any process)."""
        prefix = f"{component}/"
        return [
            processes.Process.from_record(
                rec["key"],
                rec["pid"],
                rec["start_time"],
                self.log_path(component, rec["key"][len(prefix) :]),
                marker=self.name,
                uid=rec["uid"],
            )
            for rec in self.journal.started_processes()
            if rec["key"].startswith(prefix)
        ]

    def record(self, component: str, kind: str, **data: Any) -> None:
        """Journal a resource that is not a process (a stack, a vhost) before creating it; refused to a build still
        running once the run's end began (it must not create the resource)."""
        self._refuse_to_late_builds(f"{component}'s {kind}")
        self.journal.append({"kind": kind, "component": component, **data})

    def add_secret(self, label: str, value: str, *, component: str | None = None) -> None:
        """See :meth:`EnvironmentState.add_secret`; refused to a build still running once the run's end began (its
        secrets would outlive the teardown's scrub)."""
        self._refuse_to_late_builds(f"the secret {label!r}")
        super().add_secret(label, value, component=component)

    def component_class(self, component: str) -> type[Component]:
        if component not in self.components:
            raise UnknownName(
                f"component {component!r} is not part of this environment; its components: {', '.join(self.components)}"
            )
        path = registry.implementation(component, self.backend)
        try:
            return registry.load(path)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"component {component!r}: cannot load {path} ({exc})") from None

    def required_closure(self, names: Iterable[str]) -> list[str]:
        """``names`` and everything they require, requirements first."""
        order: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                raise ConfigError(f"components require each other in a cycle: {' -> '.join(path + (name,))}")
            if name in order:
                return
            for req in self.requirements(name):
                visit(req, path + (name,))
            order.append(name)

        for name in names:
            visit(name, ())
        return order

    def requirements(self, component: str, cls: type[Component] | None = None) -> tuple[str, ...]:
        """What ``component`` needs built first, as its class and the platform's configuration say."""
        cls = cls or self.component_class(component)
        return tuple(cls.requirements(self.component_config(component, cls)))

    def component_config(self, component: str, cls: type[Component]) -> Any:
        """The component's ``Config``, from its section of the platform's configuration."""
        return config_mod.parse([cls.Config], self.config.section(component), self.config.where(section=component))[0]

    def context(self, component: str, cls: type[Component] | None = None) -> BuildContext:
        """What ``component`` sees of this environment: its requirements' facts, its typed settings, spawn..."""
        cls = cls or self.component_class(component)
        config = self.component_config(component, cls)
        settings = settings_mod.parse(cls.Settings, self.settings)
        return BuildContext(self, component, cls.requirements(config), settings, config)

    def inputs(self, names: Iterable[str] | None = None) -> dict[Path, str]:
        """Each file of the checkout the components deploy (``Component.inputs``: templates, definitions) -> the
        component that deploys it; for ``names`` (default: the environment's components) and their requirements,
        in build order."""
        found: dict[Path, str] = {}
        for name in self.required_closure(names if names is not None else self.components):
            cls = self.component_class(name)
            found.update(dict.fromkeys(map(Path, cls.inputs(self.context(name, cls))), name))
        return found

    def _declared(self, names: Iterable[str]) -> dict[str, list[type[Component]]]:
        """Every implementation (on any backend) of each component of ``names`` that can be loaded."""
        found: dict[str, list[type[Component]]] = {}
        for name in names:
            for backend in registry.BACKENDS:
                try:
                    found.setdefault(name, []).append(registry.load(registry.implementation(name, backend)))
                except (UnknownName, ImportError, AttributeError):
                    continue
        return found

    def check_settings(self) -> None:
        """Refuse a setting that no known component declares (on any backend), or a value of the wrong type; refuse
        a key of the platform's configuration that no component declares, or a value of the wrong type."""
        declared = self._declared(dict.fromkeys([*self.components, *registry.COMPONENTS]))
        settings_mod.check(
            self.settings,
            [EnvironmentSettings, *(c.Settings for classes in declared.values() for c in classes)],
            "--env-set / ENVFIXTURES_SETTING_<KEY> / ini env_settings",
        )
        self.config.check_keys(declared)
        for name in self.components:
            if name not in registry.COMPONENTS:
                raise UnknownName(
                    f"{self.config.where('components')}: unknown component {name!r}; known: "
                    f"{', '.join(registry.COMPONENTS)} (a component of your own: see docs/adopting.md)"
                )
        for name, classes in declared.items():
            config_mod.parse((c.Config for c in classes), self.config.section(name), self.config.where(section=name))

    def check(self, names: Iterable[str] | None = None) -> None:
        """Validate the settings, then the configured paths and the inputs of the given components (all by default)
        and of what they require; builds nothing."""
        self.check_settings()
        for name in self.required_closure(names if names is not None else self.components):
            cls = self.component_class(name)
            ctx = self.context(name, cls)
            config_mod.check_paths(ctx.config, self.root, self.config.where(section=name))
            cls.check(ctx)

    def ensure(self, component: str, *, eager: bool = False) -> Facts:
        """The facts of ``component``, building it and its requirements first if nobody has yet.

        Requirements are built concurrently, each on a daemon thread: a Ctrl-C stops the waiting, not the process's
        exit (see :meth:`teardown`). Exactly one process builds a component; a component whose build failed is not
        retried in this environment: :class:`ComponentFailed` carries the recorded cause. ``eager``: built ahead of
        the tests that need it (said so in its progress line).
        """
        with self._lock:
            if component in self._facts:
                return self._facts[component]
        with self._guard:  # the state directory is not created once the run's end began (see stop_builds)
            if self._stopping:
                raise ComponentFailed(component, STOPPED)
            self.materialize()
        cls = self.component_class(component)
        requires = self.requirements(component, cls)
        if requires:
            errors = _concurrently(
                {req: (lambda req=req: self.ensure(req, eager=eager)) for req in requires}, f"build-{component}"
            )
            if errors:
                req, exc = next(iter(errors.items()))
                cause = exc.cause if isinstance(exc, ComponentFailed) else str(exc)
                self._fail_unbuilt(component, f"requirement {req!r} failed: {cause}")
        with self._build_lock(component):
            state = self.component_state(component) or {}
            status = state.get("status")
            if status == BUILT:
                facts = Facts.from_json(state["facts"])
            elif status in (FAILED, TORN_DOWN):
                raise ComponentFailed(component, state.get("error") or status)
            elif status == BUILDING:
                # The lock is ours, so whoever was building died mid-build.
                self._build_state(component, status=FAILED, error="its build was interrupted")
                raise ComponentFailed(component, "its build was interrupted")
            else:
                facts = self._build(component, cls, eager=eager)
        with self._lock:
            self._facts[component] = facts
        return facts

    def _build_state(self, component: str, **state: Any) -> bool:
        """Write a build's state of ``component``, unless this process's teardown began (then it is the teardown's
        to write): whether it was written."""
        with self._guard:
            if self._stopping:
                return False
            self._set_state(component, **state)
            return True

    def _build_lock(self, component: str) -> private.Lock:
        """The lock of ``component``'s build: held while it builds, so waited for longer than a build takes."""
        return self.lock(
            component,
            timeout=self.options.build_lock_timeout,
            what=f"building {component}",
            hint="if its builds take longer, raise --env-set build_lock_timeout=SECONDS",
        )

    def _fail_unbuilt(self, component: str, cause: str) -> None:
        with self._build_lock(component):
            state = self.component_state(component) or {}
            if state.get("status") != FAILED:
                self._build_state(component, status=FAILED, error=cause, started=None, ended=time.time())
        raise ComponentFailed(component, cause)

    def _build(self, component: str, cls: type[Component], *, eager: bool = False) -> Facts:
        me = threading.current_thread()
        with self._guard:
            if self._stopping:
                raise ComponentFailed(component, STOPPED)
            self._builders.add(me)  # the teardown of this process waits for it (bounded)
        try:
            return self._run_build(component, cls, eager=eager)
        finally:
            with self._guard:
                self._builders.discard(me)

    def _run_build(self, component: str, cls: type[Component], *, eager: bool) -> Facts:
        started = time.time()
        impl = f"{cls.__module__}:{cls.__qualname__}"
        if not self._build_state(component, status=BUILDING, started=started, builder=os.getpid(), impl=impl):
            raise ComponentFailed(component, STOPPED)
        self.progress(f"building {component}{' (eager)' if eager else ''} ...")
        try:
            facts = cls().build(self.context(component, cls))
        except BaseException as exc:
            redactor = self.redactor()
            cause = redactor.redact(_one_line(exc))
            detail = redactor.redact(str(exc))[-4000:]  # the whole message (log tails) for the evidence
            if self._build_state(component, status=FAILED, error=cause, detail=detail, ended=time.time()):
                self.progress(f"FAILED {component} after {time.time() - started:.1f}s: {cause}")
            if isinstance(exc, Exception):
                raise ComponentFailed(component, cause) from None
            raise
        ended = time.time()
        state = {"status": BUILT, "facts": facts.to_json(), "ended": ended, "seconds": round(ended - started, 3)}
        if not self._build_state(component, **state):
            raise ComponentFailed(component, STOPPED)
        self.progress(f"built {component} in {ended - started:.1f}s")
        return facts

    def stop_builds(self) -> None:
        """From now on no build of this process starts a process, records a resource or a secret, or writes a
        component's state: the end of the run (its teardown, or its keeping) owns the environment."""
        with self._guard:
            self._stopping = True

    def _await_builds(self, timeout: float) -> list[str]:
        """Wait (at most ``timeout`` seconds) for the builds still running on other threads of this process; once
        their processes are stopped they fail fast. The names of the threads still running after that."""
        deadline = time.monotonic() + timeout
        with self._guard:
            threads = [t for t in self._builders if t is not threading.current_thread()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]

    def teardown(self) -> list[str]:
        """Tear every component down after those that require it (independent ones at once), then stop whatever of
        the env is still alive.

        Runs after a failed build and after an interrupted one as well, and again after a teardown that failed
        (status ``teardown_failed``: ``down`` and ``reap`` retry it). Processes are stopped whatever happens to
        the state files (a full disk does not keep a server running). Returns the problems met, redacted; the
        environment is ``torn_down`` only when there were none.
        """
        problems: list[str] = []
        self.stop_builds()  # a build on another thread of this process starts nothing from now on
        if not self.exists:
            return problems  # nothing was ever built
        with self.lock("_teardown", timeout=LOCK_TIMEOUT, what="teardown", hint="another teardown of it is running"):
            meta = self.meta
            if meta.get("status") == TORN_DOWN:
                return problems
            started = time.time()
            redactor = self.redactor()

            def note(what: str, exc: BaseException) -> None:
                problems.append(redactor.redact(f"{what}: {_one_line(exc)}"))
                log.warning("%s", problems[-1])

            def save(**changes: Any) -> None:
                try:
                    self.update_meta(**changes)
                except (OSError, EnvfixturesError) as exc:  # a full disk, a held lock: the teardown goes on
                    note("writing the environment's state", exc)

            save(status=TEARING_DOWN)
            states = self.states()
            failed_any = any(st.get("status") in (BUILDING, FAILED) for st in states.values())
            order = sorted(
                (s for s in states.values() if s.get("status") in (BUILDING, BUILT, FAILED, TEARDOWN_FAILED)),
                key=lambda s: s.get("started") or 0,
                reverse=True,
            )

            def tear(state: dict[str, Any]) -> None:
                name = state["name"]
                t0 = time.time()
                status = TORN_DOWN
                try:
                    cls = registry.load(state["impl"]) if state.get("impl") else None
                    facts = Facts.from_json(state["facts"]) if state.get("facts") else Facts()
                    if cls is not None:
                        cls().teardown(self.context(name, cls), facts)
                    self.stop_processes(name)
                except Exception as exc:  # noqa: BLE001 - one component's failure must not stop the rest
                    note(f"teardown of {name}", exc)
                    status = TEARDOWN_FAILED
                try:
                    self._set_state(name, status=status, teardown_seconds=round(time.time() - t0, 3))
                except OSError as exc:
                    note(f"writing the state of {name}", exc)

            self._tear_in_order(order, tear)
            # The backstop: anything journaled or carrying the env's marker that is still alive.
            self.stop_processes(None, timeout=5)
            leftovers = processes.find_marked(self.name)
            if leftovers:
                processes.kill_pids(leftovers, marker=self.name)
                leftovers = processes.find_marked(self.name)
            if leftovers:
                problems.append(f"processes of {self.name} survived teardown: {leftovers}")
            # Builds on other threads of this process, their processes gone, fail fast: wait for them before their
            # files go, so that none writes into the state directory after its scrub.
            running = self._await_builds(BUILDS_STOP_TIMEOUT)
            if running:
                log.warning("%s: builds still running after its teardown: %s", self.name, ", ".join(running))
            for path in self.journal.directories():  # scratch directories: removed whatever the builds did
                shutil.rmtree(path, ignore_errors=True)
                self.journal.append({"kind": "directory", "path": path, "state": "removed"})
            if not leftovers and not failed_any:
                # Data directories and configs (which hold generated passwords) go; logs and state stay for
                # reports. After a failed build they stay too: they are the evidence (node logs, crash dumps)...
                shutil.rmtree(self.dir / "work", ignore_errors=True)
            else:
                # ... but no file of them keeps a secret: rabbitmq.conf's admin password, the Erlang cookie, a
                # crash dump's copy of either are masked (or removed, if they cannot be rewritten).
                problems += [redactor.redact(p) for p in scrub_tree(self.dir / "work", redactor)]
            save(
                status=TEARDOWN_FAILED if problems else TORN_DOWN,
                torn_down=time.time(),
                teardown_seconds=round(time.time() - started, 3),
                teardown_problems=problems,
                journal_torn_lines=self.journal.torn,  # skipped, not fatal: the marker finds their processes
            )
        outcome = f"with {len(problems)} problem(s); `envfixtures down {self.name}` retries" if problems else ""
        self.progress(f"torn down in {time.time() - started:.1f}s {outcome}".rstrip())
        return problems

    def _tear_in_order(self, order: list[dict[str, Any]], tear: Callable[[dict[str, Any]], None]) -> None:
        """Call ``tear`` on each state of ``order`` (newest build first) once every component that requires it is
        torn down, the others at the same time: a topology's vhost goes before its broker, but the stack's delete
        does not wait for the apps. A component whose requirements cannot be read is taken to require everything
        built before it. Only a newer component is ever waited for, so no two wait for each other."""
        names = [state["name"] for state in order]
        index = {name: i for i, name in enumerate(names)}
        waits: dict[str, set[str]] = {name: set() for name in names}
        for i, state in enumerate(order):
            try:
                cls = registry.load(state["impl"]) if state.get("impl") else self.component_class(state["name"])
                required = set(self.requirements(state["name"], cls))
            except Exception:  # noqa: BLE001 - unreadable: everything built before it waits for it
                required = set(names[i + 1 :])
            for other in required:
                if index.get(other, -1) > i:
                    waits[other].add(state["name"])
        done = {name: threading.Event() for name in names}

        def run(state: dict[str, Any]) -> None:
            try:
                for before in waits[state["name"]]:
                    done[before].wait()
                tear(state)
            finally:
                done[state["name"]].set()

        with ThreadPoolExecutor(max_workers=max(1, len(order)), thread_name_prefix="teardown") as pool:
            list(pool.map(run, order))

    def left_standing(self) -> list[str]:
        """The components a teardown could not take down (``teardown_failed``), and what they require: the secrets
        a retry of their teardown needs (a vhost is deleted with the broker's admin password)."""
        standing = [name for name, state in self.states().items() if state.get("status") == TEARDOWN_FAILED]
        if not standing:
            return []
        try:
            return self.required_closure(standing)
        except EnvfixturesError:  # a component that cannot be loaded any more: keep them all
            return sorted(self.states())

    def forget_secrets(self, keep: Iterable[str] | None = None) -> list[str]:
        """After the teardown and the last report: every secret goes from disk (facts, secrets.jsonl, every file of
        the state directory scrubbed), but those of what the teardown left standing (default: :meth:`left_standing`);
        returns the problems met."""
        return super().forget_secrets(self.left_standing() if keep is None else keep)


def _concurrently(calls: Mapping[str, Callable[[], object]], prefix: str) -> dict[str, BaseException]:
    """Run each call on a daemon thread of its own and wait for all of them; the exceptions they raised, by key
    (:class:`EnvfixturesError` only: any other is raised here, the first in order).

    Daemon threads: on Ctrl-C the caller stops waiting and the teardown starts at once; a build still running on
    one of them neither keeps the process alive (as an executor's threads would, joined at exit) nor, once the
    teardown began, starts or records anything (:meth:`Environment.teardown`).
    """
    raised: dict[str, BaseException] = {}

    def run(key: str, call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            raised[key] = exc

    threads = [
        threading.Thread(target=run, args=item, name=f"{prefix}-{item[0]}", daemon=True) for item in calls.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ordered = {key: raised[key] for key in calls if key in raised}
    for exc in ordered.values():
        if not isinstance(exc, EnvfixturesError):
            raise exc
    return ordered


def list_environments(home: Path) -> list[Environment]:
    envs_dir = Path(home) / "envs"
    if not envs_dir.exists():
        return []
    return [
        Environment.open(home, p.name)
        for p in sorted(envs_dir.iterdir())
        if not p.name.startswith(PRUNING) and (p / "env.json").exists()
    ]


def prune(home: Path, older_than: float) -> list[str]:
    """Remove the state directories of environments torn down more than ``older_than`` seconds ago; their names.

    Only ``torn_down`` ones go (a ``teardown_failed`` one says what is left; a kept one is ``kept`` until ``down``),
    and only those not owned by a live process (the owner writes its reports after the teardown; an owner on
    another host counts as live). Their age is from ``torn_down`` in env.json or, without it, from the last
    change of the directory or env.json. An entry that cannot be read, or that goes meanwhile, is skipped; a
    symbolic link is neither followed nor removed. Each directory is renamed before it is removed, so nobody
    ever sees half of one.
    """
    envs_dir = Path(home) / "envs"
    try:
        entries = sorted(envs_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    removed = []
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir():
            continue
        if entry.name.startswith(PRUNING):
            shutil.rmtree(entry, ignore_errors=True)  # left by a prune that died midway
            continue
        try:
            if not _prunable(entry, now, older_than):
                continue
            trash = entry.with_name(f"{PRUNING}{entry.name}.{os.getpid()}.{time.monotonic_ns()}")
            entry.rename(trash)
        except (OSError, ValueError, TypeError, AttributeError, ConfigError):  # unreadable, or gone meanwhile
            continue
        shutil.rmtree(trash, ignore_errors=True)
        if trash.exists():
            log.warning("%s: could not remove all of %s; the next prune tries again", entry.name, trash)
        removed.append(entry.name)
    return removed


def _prunable(env_dir: Path, now: float, older_than: float) -> bool:
    meta = read_meta(env_dir)
    if meta.get("status") != TORN_DOWN or owner_alive(meta):  # a kept one too, once `down` tore it down
        return False
    when = meta.get("torn_down")
    if isinstance(when, bool) or not isinstance(when, int | float):
        when = max(env_dir.lstat().st_mtime, (env_dir / "env.json").lstat().st_mtime)
    return now - when > older_than


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if not isinstance(exc, EnvfixturesError) else first or type(exc).__name__
