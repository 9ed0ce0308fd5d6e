"""The environment: its name, SHA, backend and state directory, building components once and tearing down.

State layout (under ``HOME/envs/NAME/``; HOME defaults to ``<rootdir>/.envfixtures``)::

    env.json                 name, sha, backend, owner, kept, status
    components/NAME.json     status (building|built|failed|torn_down), facts, error, timeline
    resources.jsonl          the journal: each resource recorded before it is created
    locks/NAME.lock          one build of NAME at a time, across xdist workers and processes
    logs/                    the output of every process of the environment
    work/NAME/               a component's own files (data directories, configs); removed by a teardown
                             after a run whose builds all succeeded

Workers share facts through these files; a component is built by whoever takes its lock first, and
everybody else reads its facts (or its recorded failure) afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from filelock import FileLock

from envfixtures.core import processes, registry
from envfixtures.core import settings as settings_mod
from envfixtures.core.component import Component
from envfixtures.core.context import BuildContext
from envfixtures.core.errors import (
    BuildError,
    ComponentFailed,
    ConfigError,
    EnvfixturesError,
    TeardownError,
    UnknownName,
)
from envfixtures.core.facts import Facts
from envfixtures.core.journal import Journal
from envfixtures.core.redaction import Redactor
from envfixtures.core.settings import EnvironmentSettings

log = logging.getLogger(__name__)

BUILDING, BUILT, FAILED, TORN_DOWN = "building", "built", "failed", "torn_down"
TEARING_DOWN = "tearing_down"
ACTIVE, KEPT = "active", "kept"


class Environment:
    """One environment of one run (or of several runs, when kept and reused)."""

    def __init__(
        self,
        *,
        name: str,
        sha: str,
        backend: str,
        root: Path,
        home: Path,
        settings: Mapping[str, str] | None = None,
        components: Sequence[str] | None = None,
    ) -> None:
        self.name = name
        self.sha = sha
        self.backend = registry.check_backend(backend)
        self.root = Path(root)
        self.home = Path(home)
        self.dir = self.home / "envs" / name
        self.settings: Mapping[str, str] = dict(settings or {})  # raw KEY=VALUE strings, as given
        #: the environment's own settings, typed (each component's are parsed into its ``Settings``)
        self.options = settings_mod.parse(EnvironmentSettings, self.settings)
        self.components = tuple(components) if components else tuple(registry.COMPONENTS)
        self.journal = Journal(self.dir / "resources.jsonl", name)
        #: What the state file is written from (name, SHA, owner, dirty, kept); set by whoever names the env.
        self.description: dict[str, Any] | None = None
        self._facts: dict[str, Facts] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ creation and loading
    #
    # An Environment object is only a description until something is built: its state directory is
    # written by the first ``ensure`` (whichever process gets there first), so a run that builds
    # nothing leaves nothing behind.

    def describe(self, *, dirty: bool = False, kept: bool = False) -> dict[str, Any]:
        """What a worker (or the state file) needs to know of this environment."""
        return {
            "name": self.name,
            "sha": self.sha,
            "backend": self.backend,
            "root": str(self.root),
            "home": str(self.home),
            "settings": dict(self.settings),
            "components": list(self.components),
            "dirty": dirty,
            "kept": kept,
            "owner": _owner(),
        }

    @classmethod
    def from_description(cls, desc: dict[str, Any]) -> "Environment":
        env = cls(
            name=desc["name"],
            sha=desc["sha"],
            backend=desc["backend"],
            root=Path(desc["root"]),
            home=Path(desc["home"]),
            settings=desc.get("settings", {}),
            components=desc.get("components"),
        )
        env.description = desc
        return env

    @property
    def exists(self) -> bool:
        return (self.dir / "env.json").exists()

    def materialize(self) -> None:
        """Write the state directory from the description, once, whoever comes first."""
        if self.exists:
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "locks").mkdir(exist_ok=True)
        with FileLock(str(self.dir / "locks" / "_meta.lock")):
            if self.exists:
                return
            desc = dict(self.description or self.describe())
            desc.update(created=time.time(), status=ACTIVE)
            self._write_meta(desc)

    @classmethod
    def open(cls, home: Path, name: str) -> "Environment":
        """The environment ``name`` from its state directory (for reuse and the CLI)."""
        meta = read_meta(Path(home) / "envs" / name)
        return cls(
            name=meta["name"],
            sha=meta["sha"],
            backend=meta["backend"],
            root=Path(meta["root"]),
            home=Path(home),
            settings=meta.get("settings", {}),
            components=meta.get("components"),
        )

    @property
    def meta(self) -> dict[str, Any]:
        return read_meta(self.dir)

    def update_meta(self, **changes: Any) -> None:
        with FileLock(str(self.dir / "locks" / "_meta.lock")):
            meta = self.meta
            meta.update(changes)
            self._write_meta(meta)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        (self.dir / "locks").mkdir(parents=True, exist_ok=True)
        _write_json(self.dir / "env.json", meta)

    def claim(self) -> None:
        """Make the current process the owner (a run reusing a kept environment)."""
        self.update_meta(owner=_owner())

    # ------------------------------------------------------------------ what components use

    def workdir(self, component: str) -> Path:
        path = self.dir / "work" / component
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def scratch_dir(self, component: str) -> Path:
        """A private directory (0700) outside the state directory, in the system's temporary directory, for a
        server that runs as another user who cannot reach the state directory. Journaled; teardown removes it."""
        path = Path(tempfile.mkdtemp(prefix=f"envfixtures-{self.name}-{component}-"))
        self.journal.append({"kind": "directory", "component": component, "path": str(path), "state": "created"})
        return path

    def log_path(self, component: str, name: str) -> Path:
        return self.dir / "logs" / f"{component}-{name}.log"

    def facts(self, component: str) -> Facts:
        """Facts of a component that is already built (a requirement of the caller)."""
        if component not in self._facts:
            state = self.component_state(component)
            if not state or state.get("status") != BUILT:
                raise BuildError(f"{component!r} is not built in {self.name}; declare it in `requires`")
            self._facts[component] = Facts.from_json(state["facts"])
        return self._facts[component]

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
        if self.meta.get("status") in (TEARING_DOWN, TORN_DOWN):
            raise BuildError(f"{self.name} is being torn down: {component}/{name} not started")
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
        mine = [(key, pid, st) for key, pid, st in self.journal.processes() if key.startswith(prefix)]

        def stop(item: tuple[str, int, int]) -> None:
            key, pid, st = item
            processes.Process.from_record(key, pid, st).stop(timeout=timeout)  # only if still the one started
            self.journal.append({"kind": "process", "key": key, "state": "stopped", "pid": pid})

        if mine:
            with ThreadPoolExecutor(max_workers=len(mine)) as pool:
                list(pool.map(stop, reversed(mine)))

    def journaled_processes(self, component: str) -> list[processes.Process]:
        """The journaled processes of ``component`` still recorded as running (started by any process)."""
        prefix = f"{component}/"
        return [
            processes.Process.from_record(key, pid, st, self.log_path(component, key[len(prefix) :]))
            for key, pid, st in self.journal.processes()
            if key.startswith(prefix)
        ]

    def record(self, component: str, kind: str, **data: Any) -> None:
        """Journal a resource that is not a process (a stack, a vhost) before creating it."""
        self.journal.append({"kind": kind, "component": component, **data})

    def progress(self, message: str) -> None:
        """One progress line on the terminal, past pytest's capture, and in the env's progress log."""
        line = f"envfixtures [{self.name}] {message}"
        log.debug(line)  # the terminal gets it below; logging it at INFO as well would print it twice
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.dir / "logs" / "progress.log", "a") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {message}\n")
        if not self.options.quiet:
            try:
                os.write(2, (line + "\n").encode())
            except OSError:
                pass

    # ------------------------------------------------------------------ component state

    def component_state(self, component: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "components" / f"{component}.json").read_text())
        except FileNotFoundError:
            return None

    def _set_state(self, component: str, **state: Any) -> None:
        path = self.dir / "components" / f"{component}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        current = self.component_state(component) or {"name": component}
        current.update(state)
        _write_json(path, current)

    def states(self) -> dict[str, dict[str, Any]]:
        folder = self.dir / "components"
        if not folder.exists():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def new_secret(self, label: str, nbytes: int = 24) -> str:
        """A generated secret (a password), recorded for redaction before anybody can print it."""
        value = secrets.token_urlsafe(nbytes)
        self.add_secret(label, value)
        return value

    def add_secret(self, label: str, value: str) -> None:
        """Redact ``value`` from everything this environment reports from now on."""
        self.materialize()
        path = self.dir / "secrets.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps({"label": label, "value": value}) + "\n").encode())
        finally:
            os.close(fd)

    def secret_values(self) -> list[str]:
        """Every secret value any component of this environment generated or reported."""
        values: list[str] = []
        try:
            with open(self.dir / "secrets.jsonl") as fh:
                values += [json.loads(line)["value"] for line in fh if line.strip()]
        except FileNotFoundError:
            pass
        for state in self.states().values():
            if state.get("facts"):
                values += Facts.from_json(state["facts"]).secret_values()
        return values

    def forget_secrets(self) -> None:
        """After teardown and the last report: no generated password stays on disk (facts keep a mask)."""
        for name, state in self.states().items():
            if state.get("facts", {}).get("secrets"):
                facts = Facts.from_json(state["facts"])
                self._set_state(name, facts=Facts(facts.masked(), secrets=facts.secret_keys).to_json())
        (self.dir / "secrets.jsonl").unlink(missing_ok=True)

    def redactor(self) -> Redactor:
        return Redactor(self.secret_values())

    # ------------------------------------------------------------------ checks and builds

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
            for req in self.component_class(name).requires:
                visit(req, path + (name,))
            order.append(name)

        for name in names:
            visit(name, ())
        return order

    def context(self, component: str, cls: type[Component] | None = None) -> BuildContext:
        """What ``component`` sees of this environment: its requirements' facts, its typed settings, spawn..."""
        cls = cls or self.component_class(component)
        return BuildContext(self, component, cls.requires, settings_mod.parse(cls.Settings, self.settings))

    def check_settings(self) -> None:
        """Refuse a setting that no known component declares (on any backend), or a value of the wrong type."""
        declared: list[type] = [EnvironmentSettings]
        for name in dict.fromkeys([*self.components, *registry.COMPONENTS]):
            for backend in registry.BACKENDS:
                try:
                    declared.append(registry.load(registry.implementation(name, backend)).Settings)
                except (UnknownName, ImportError, AttributeError):
                    continue
        settings_mod.check(self.settings, declared, "--env-set / ini env_settings")

    def check(self, names: Iterable[str] | None = None) -> None:
        """Validate the settings and the inputs of the given components (all by default); builds nothing."""
        self.check_settings()
        for name in self.required_closure(names if names is not None else self.components):
            cls = self.component_class(name)
            cls.check(self.context(name, cls))

    def ensure(self, component: str) -> Facts:
        """The facts of ``component``, building it and its requirements first if nobody has yet.

        Requirements are built concurrently. Exactly one process builds a component; a component
        whose build failed is not retried in this environment: :class:`ComponentFailed` carries the
        recorded cause.
        """
        with self._lock:
            if component in self._facts:
                return self._facts[component]
        self.materialize()
        cls = self.component_class(component)
        if cls.requires:
            pool = ThreadPoolExecutor(max_workers=len(cls.requires), thread_name_prefix=f"build-{component}")
            errors = {}
            try:
                futures = {req: pool.submit(self.ensure, req) for req in cls.requires}
                for req, fut in futures.items():
                    try:
                        fut.result()
                    except EnvfixturesError as exc:
                        errors[req] = exc
            finally:
                # On Ctrl-C, do not wait for the other builds: the teardown starts now, and ``spawn``
                # refuses to start anything once it has.
                pool.shutdown(wait=False, cancel_futures=True)
            if errors:
                req, exc = next(iter(errors.items()))
                cause = exc.cause if isinstance(exc, ComponentFailed) else str(exc)
                self._fail_unbuilt(component, f"requirement {req!r} failed: {cause}")
        with FileLock(str(self.dir / "locks" / f"{component}.lock")):
            state = self.component_state(component) or {}
            status = state.get("status")
            if status == BUILT:
                facts = Facts.from_json(state["facts"])
            elif status in (FAILED, TORN_DOWN):
                raise ComponentFailed(component, state.get("error") or status)
            elif status == BUILDING:
                # The lock is ours, so whoever was building died mid-build.
                self._set_state(component, status=FAILED, error="its build was interrupted")
                raise ComponentFailed(component, "its build was interrupted")
            else:
                facts = self._build(component, cls)
        with self._lock:
            self._facts[component] = facts
        return facts

    def _fail_unbuilt(self, component: str, cause: str) -> None:
        with FileLock(str(self.dir / "locks" / f"{component}.lock")):
            state = self.component_state(component) or {}
            if state.get("status") != FAILED:
                self._set_state(component, status=FAILED, error=cause, started=None, ended=time.time())
        raise ComponentFailed(component, cause)

    def _build(self, component: str, cls: type[Component]) -> Facts:
        started = time.time()
        self._set_state(
            component,
            status=BUILDING,
            started=started,
            builder=os.getpid(),
            impl=f"{cls.__module__}:{cls.__qualname__}",
        )
        self.progress(f"building {component} ...")
        try:
            facts = cls().build(self.context(component, cls))
        except BaseException as exc:
            redactor = self.redactor()
            cause = redactor.redact(_one_line(exc))
            detail = redactor.redact(str(exc))[-4000:]  # the whole message (log tails) for the evidence
            self._set_state(component, status=FAILED, error=cause, detail=detail, ended=time.time())
            self.progress(f"FAILED {component} after {time.time() - started:.1f}s: {cause}")
            if isinstance(exc, Exception):
                raise ComponentFailed(component, cause) from None
            raise
        ended = time.time()
        self._set_state(component, status=BUILT, facts=facts.to_json(), ended=ended, seconds=round(ended - started, 3))
        self.progress(f"built {component} in {ended - started:.1f}s")
        return facts

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> list[str]:
        """Tear every component down in reverse build order, then stop whatever of the env is still alive.

        Runs after a failed build and after an interrupted one as well. Returns the problems met
        (already redacted); raises :class:`TeardownError` when a process of the environment survives.
        """
        problems: list[str] = []
        if not self.exists:
            return problems  # nothing was ever built
        with FileLock(str(self.dir / "locks" / "_teardown.lock")):
            meta = self.meta
            if meta.get("status") == TORN_DOWN:
                return problems
            self.update_meta(status=TEARING_DOWN)
            started = time.time()
            redactor = self.redactor()
            states = self.states()
            failed_any = any(st.get("status") in (BUILDING, FAILED) for st in states.values())
            order = sorted(
                (s for s in states.values() if s.get("status") in (BUILDING, BUILT, FAILED)),
                key=lambda s: s.get("started") or 0,
                reverse=True,
            )
            for state in order:
                name = state["name"]
                t0 = time.time()
                try:
                    cls = registry.load(state["impl"]) if state.get("impl") else None
                    facts = Facts.from_json(state["facts"]) if state.get("facts") else Facts()
                    if cls is not None:
                        cls().teardown(self.context(name, cls), facts)
                    self.stop_processes(name)
                except Exception as exc:  # noqa: BLE001 - one component's failure must not stop the rest
                    problems.append(redactor.redact(f"teardown of {name}: {_one_line(exc)}"))
                    log.warning("%s", problems[-1])
                self._set_state(name, status=TORN_DOWN, teardown_seconds=round(time.time() - t0, 3))
            # The backstop: anything journaled or carrying the env's marker that is still alive.
            self.stop_processes(None, timeout=5)
            leftovers = processes.find_marked(self.name)
            if leftovers:
                processes.kill_pids(leftovers)
                leftovers = processes.find_marked(self.name)
            for path in self.journal.directories():  # scratch directories: removed whatever the builds did
                shutil.rmtree(path, ignore_errors=True)
                self.journal.append({"kind": "directory", "path": path, "state": "removed"})
            if not leftovers and not failed_any:
                # Data directories and configs (which hold generated passwords) go; logs and state stay for
                # reports. After a failed build they stay too: they are the evidence (node logs, crash dumps).
                shutil.rmtree(self.dir / "work", ignore_errors=True)
            self.update_meta(status=TORN_DOWN, torn_down=time.time(), teardown_seconds=round(time.time() - started, 3))
        self.progress(f"torn down in {time.time() - started:.1f}s")
        if leftovers:
            raise TeardownError(f"processes of {self.name} survived teardown: {leftovers}")
        return problems

    def owner_alive(self) -> bool:
        owner = self.meta.get("owner") or {}
        if owner.get("host") != socket.gethostname():
            return True  # not ours to judge
        return processes.start_time(int(owner.get("pid", 0))) == owner.get("start_time")


def read_meta(env_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((env_dir / "env.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"no environment at {env_dir} (see `envfixtures ls`)") from None


def list_environments(home: Path) -> list[Environment]:
    envs_dir = Path(home) / "envs"
    if not envs_dir.exists():
        return []
    return [Environment.open(home, p.name) for p in sorted(envs_dir.iterdir()) if (p / "env.json").exists()]


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "start_time": processes.start_time(os.getpid()), "host": socket.gethostname()}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if not isinstance(exc, EnvfixturesError) else first or type(exc).__name__
