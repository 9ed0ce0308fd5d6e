"""The state of an environment on disk: its description, its components' states and facts, its secrets, locks,
directories and progress log — what every xdist worker and every later ``envfixtures`` command reads and writes.

State layout (under ``HOME/envs/NAME/``; HOME defaults to ``<rootdir>/.envfixtures``)::

    env.json                 name, sha, backend, owner, kept, status
    components/NAME.json     status (building|built|failed|torn_down), facts, error, timeline
    resources.jsonl          the journal: each resource recorded before it is created
    secrets.jsonl            generated secrets and the values of secret settings (0600), forgotten once the
                             reports are written (but those of what a failed teardown left standing)
    locks/NAME.lock          one build of NAME at a time, across xdist workers and processes
    logs/                    the output of every process of the environment, and progress.log
    work/NAME/               a component's own files (data directories, configs); removed by a teardown
                             after a run whose builds all succeeded

Every directory of it (and the home's ``envs/``) is ``0700`` and every file ``0600`` from the call that creates it,
before anything is written to it (:mod:`envfixtures.core.private`); a wider one left by an older version is
tightened when next written. Locks are waited for a bounded time: a held one is an error naming it, not a hang.

An object is only a description until something is built: the state directory is written by the first build
(whichever process gets there first), so a run that builds nothing leaves nothing behind. A torn-down
environment's directory stays (its logs are the evidence) until :func:`.environment.prune` removes it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from envfixtures.core import private, processes, registry
from envfixtures.core import settings as settings_mod
from envfixtures.core.config import PlatformConfig
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import MASK, Facts
from envfixtures.core.journal import Journal
from envfixtures.core.redaction import Redactor, scrub_tree, secret_like
from envfixtures.core.settings import EnvironmentSettings

BUILDING, BUILT, FAILED, TORN_DOWN = "building", "built", "failed", "torn_down"
TEARING_DOWN, TEARDOWN_FAILED = "tearing_down", "teardown_failed"
ACTIVE, KEPT = "active", "kept"
#: Seconds to wait for the lock of ``env.json`` (held only while it is read and written).
META_LOCK_TIMEOUT = 60.0

log = logging.getLogger(__name__)


class EnvironmentState:
    """An environment's identity and its state directory (the build graph is :class:`.environment.Environment`)."""

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
        config: PlatformConfig | None = None,
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
        #: the platform's configuration (``[tool.envfixtures]``), as read when the environment was named
        self.config = config or PlatformConfig()
        self.components = tuple(components or self.config.components or registry.COMPONENTS)
        self.journal = Journal(self.dir / "resources.jsonl", name)
        #: What the state file is written from (name, SHA, owner, dirty, kept); set by whoever names the env.
        self.description: dict[str, Any] | None = None
        self._facts: dict[str, Facts] = {}
        #: where progress lines reach the terminal: stderr, or (set by the plugin) a copy of it that a test's
        #: output capture does not redirect, for builds on background threads
        self.progress_fd = 2
        self._lock = threading.Lock()
        self._redactor: tuple[Any, Redactor] | None = None

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
            "config": self.config.to_json(),
            "dirty": dirty,
            "kept": kept,
            "owner": _owner(),
        }

    @classmethod
    def from_description(cls, desc: dict[str, Any]) -> "Self":
        env = cls(
            name=desc["name"],
            sha=desc["sha"],
            backend=desc["backend"],
            root=Path(desc["root"]),
            home=Path(desc["home"]),
            settings=desc.get("settings", {}),
            components=desc.get("components"),
            config=PlatformConfig.from_json(desc.get("config")),
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
        with self.meta_lock():
            if self.exists:
                return
            desc = dict(self.description or self.describe())
            desc.update(created=time.time(), status=ACTIVE)
            for key, value in secret_settings(desc.get("settings") or {}).items():
                self._record_secret({"label": f"setting {key}", "value": value, "setting": key})
            self._write_meta(desc)

    @classmethod
    def open(cls, home: Path, name: str) -> "Self":
        """The environment ``name`` from its state directory (for reuse and the CLI)."""
        meta = read_meta(Path(home) / "envs" / name)
        settings = dict(meta.get("settings", {}))
        for entry in _secret_entries(Path(home) / "envs" / name):  # env.json holds a mask for a secret setting
            if entry.get("setting") in settings:
                settings[entry["setting"]] = entry["value"]
        return cls(
            name=meta["name"],
            sha=meta["sha"],
            backend=meta["backend"],
            root=Path(meta["root"]),
            home=Path(home),
            settings=settings,
            components=meta.get("components"),
            config=PlatformConfig.from_json(meta.get("config")),
        )

    @property
    def meta(self) -> dict[str, Any]:
        return read_meta(self.dir)

    def update_meta(self, **changes: Any) -> None:
        with self.meta_lock():
            meta = self.meta
            meta.update(changes)
            self._write_meta(meta)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        hidden = secret_settings(meta.get("settings") or {})
        if hidden:  # a secret setting's value is in secrets.jsonl only (see materialize and open)
            meta = {**meta, "settings": {**meta["settings"], **dict.fromkeys(hidden, MASK)}}
        _write_json(self.private_dir() / "env.json", meta)

    def private_dir(self, *parts: str) -> Path:
        """The state directory (or ``parts`` below it), every directory from the home's ``envs/`` down ``0700``:
        created so, or tightened."""
        return private.private_dirs(self.home, "envs", self.name, *parts)

    def lock(self, name: str, *, timeout: float, what: str, hint: str = "", shared: bool = False) -> private.Lock:
        """The file lock ``locks/NAME.lock`` of this environment, waited for at most ``timeout`` seconds (then a
        :class:`~envfixtures.core.errors.WaitTimeout` naming the lock file and who may hold it); exclusive, or
        ``shared``."""
        path = self.private_dir("locks") / f"{name}.lock"
        return private.Lock(path, timeout=timeout, what=f"{self.name}: {what}", hint=hint, shared=shared)

    def meta_lock(self) -> private.Lock:
        return self.lock("_meta", timeout=META_LOCK_TIMEOUT, what="writing env.json")

    def claim(self) -> None:
        """Make the current process the owner (a run reusing a kept environment)."""
        self.update_meta(owner=_owner())

    def workdir(self, component: str) -> Path:
        return self.private_dir("work", component)

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

    def progress(self, message: str) -> None:
        """One progress line on the terminal, past pytest's capture, and in the env's progress log."""
        message = self.redactor().redact(message)  # a component's own message may carry a secret
        line = f"envfixtures [{self.name}] {message}"
        log.debug(line)  # the terminal gets it below; logging it at INFO as well would print it twice
        private.append_private(self.private_dir("logs") / "progress.log", f"{time.strftime('%H:%M:%S')} {message}\n")
        if not self.options.quiet:
            try:
                os.write(self.progress_fd, (line + "\n").encode())
            except OSError:
                pass

    def component_state(self, component: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "components" / f"{component}.json").read_text())
        except FileNotFoundError:
            return None

    def _set_state(self, component: str, **state: Any) -> None:
        path = self.private_dir("components") / f"{component}.json"
        current = self.component_state(component) or {"name": component}
        current.update(state)
        _write_json(path, current)

    def states(self) -> dict[str, dict[str, Any]]:
        folder = self.dir / "components"
        if not folder.exists():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def new_secret(self, label: str, nbytes: int = 24, *, component: str | None = None) -> str:
        """A generated secret (a password), recorded for redaction before anybody can print it."""
        value = secrets.token_urlsafe(nbytes)
        self.add_secret(label, value, component=component)
        return value

    def add_secret(self, label: str, value: str, *, component: str | None = None) -> None:
        """Redact ``value`` from everything this environment reports from now on (``component``: whose it is; it is
        forgotten with that component's teardown)."""
        self.materialize()
        self._record_secret({"label": label, "value": value, **({"component": component} if component else {})})

    def _record_secret(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry) + "\n"
        private.append_private(self.private_dir() / "secrets.jsonl", line)  # 0600 before the secret is written

    def secret_values(self) -> list[str]:
        """Every secret value of this environment: generated or reported by a component, or a secret setting."""
        values = [entry["value"] for entry in _secret_entries(self.dir)]
        for state in self.states().values():
            if state.get("facts"):
                values += Facts.from_json(state["facts"]).secret_values()
        values += [v for v in secret_settings(self.settings).values() if v != MASK]
        return values

    def forget_secrets(self, keep: Iterable[str] = ()) -> list[str]:
        """After teardown and the last report: no secret stays on disk, but those of the components in ``keep``
        (what a failed teardown left standing, whose retry needs them) and, while any is kept, secret settings.

        Facts keep a mask; every other file of the state directory (logs, work/, the journal) is scrubbed of every
        form of the secrets forgotten. Returns the problems met (a file that could be neither scrubbed nor removed).
        """
        keep = set(keep)
        states = self.states()
        entries = _secret_entries(self.dir)
        kept = [e for e in entries if e.get("component") in keep or (keep and not e.get("component"))]
        forgotten = [e["value"] for e in entries if e not in kept]
        for name, state in states.items():
            facts = Facts.from_json(state.get("facts") or {})
            if name not in keep and facts.secret_values():
                forgotten += facts.secret_values()
                self._set_state(name, facts=Facts(facts.masked(), secrets=facts.secret_keys).to_json())
        if not keep:
            forgotten += [v for v in secret_settings(self.settings).values() if v != MASK]
        path = self.dir / "secrets.jsonl"
        if kept:
            private.write_private(path, "".join(json.dumps(e) + "\n" for e in kept))
        else:
            path.unlink(missing_ok=True)
        remaining = {e["value"] for e in kept}
        for name in keep:
            remaining.update(Facts.from_json(states.get(name, {}).get("facts") or {}).secret_values())
        return scrub_tree(self.dir, Redactor(v for v in forgotten if v not in remaining), skip=[path])

    def redactor(self) -> Redactor:
        """A redactor of every secret of this environment known now (one per state of the secrets' files)."""
        key = (_file_key(self.dir / "secrets.jsonl"), _dir_key(self.dir / "components"), tuple(self.settings.items()))
        cached = self._redactor
        if cached is not None and cached[0] == key:
            return cached[1]
        redactor = Redactor(self.secret_values())
        self._redactor = (key, redactor)
        return redactor

    def owner_alive(self) -> bool:
        return owner_alive(self.meta)


def owner_alive(meta: Mapping[str, Any]) -> bool:
    """Whether the process that owns the environment of ``meta`` (its ``env.json``) still runs."""
    owner = meta.get("owner") or {}
    if owner.get("host") != socket.gethostname():
        return True  # not ours to judge
    # A zombie is dead: a controller killed by SIGKILL stays one until its parent reaps it, and `reap` run at
    # once (a Jenkins `post { always }` step) must not wait for that.
    return processes.ProcessRecord(int(owner.get("pid", 0)), owner.get("start_time") or 0).alive()


def secret_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """The settings whose key names a secret (``broker_admin_password``), with a value."""
    return {k: str(v) for k, v in settings.items() if v and secret_like(k)}


def _secret_entries(env_dir: Path) -> list[dict[str, Any]]:
    try:
        fd = os.open(env_dir / "secrets.jsonl", os.O_RDONLY | os.O_NOFOLLOW)  # a link there is refused (ELOOP)
    except FileNotFoundError:
        return []
    with os.fdopen(fd) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def _dir_key(path: Path) -> tuple[Any, ...]:
    """What changes whenever a file of ``path`` is written (each write replaces the file: a new inode)."""
    found = []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    info = entry.stat()
                except FileNotFoundError:  # a temporary file, renamed meanwhile
                    continue
                found.append((entry.name, info.st_ino, info.st_size, info.st_mtime_ns))
    except FileNotFoundError:
        pass
    return tuple(sorted(found))


def read_meta(env_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((env_dir / "env.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"no environment at {env_dir} (see `envfixtures ls`)") from None


def _owner() -> dict[str, Any]:
    return {"pid": os.getpid(), "start_time": processes.start_time(os.getpid()), "host": socket.gethostname()}


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data``, through a new file that is ``0600`` from its creation (facts hold passwords)."""
    private.write_private(path, json.dumps(data, indent=2, sort_keys=True))
