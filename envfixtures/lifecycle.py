"""The life of an environment outside any test runner: from the checkout to a named, checked environment, and
from a finished run to a teardown that signals cannot cut short.

Both front ends use it: the pytest plugin (:mod:`envfixtures.pytest.run`) and the ``envfixtures`` command
(:mod:`envfixtures.cli`). It knows nothing of pytest; reports are the plugin's business, between
:func:`teardown` and :func:`forget`.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import iniconfig

from envfixtures.core import environment, naming
from envfixtures.core.config import PlatformConfig
from envfixtures.core.environment import TEARDOWN_FAILED, TEARING_DOWN, TORN_DOWN, Environment
from envfixtures.core.errors import ConfigError, EnvfixturesError


def new_environment(
    *,
    sha: str,
    backend: str,
    root: Path,
    home: Path,
    branch: str | None,
    settings: Mapping[str, str],
    components: Sequence[str] | None,
    config: PlatformConfig | None = None,
    dirty: bool = False,
    kept: bool = False,
    check: Sequence[str] | None = None,
) -> Environment:
    """A new environment of ``sha``, named, with its settings and its components' inputs checked (those of
    ``check`` and their requirements; default every component of the environment).

    Nothing is written yet: the state directory appears with the first build.
    """
    env = Environment(
        name=naming.env_name(sha, naming.new_run_id(), branch),
        sha=sha,
        backend=backend,
        root=root,
        home=home,
        settings=settings,
        components=components,
        config=config,
    )
    env.check(check)
    env.description = env.describe(dirty=dirty, kept=kept)
    return env


def static_findings(env: Environment, *, thorough: bool = True) -> dict[Path, list[Any]]:
    """Every input file of the environment's components (and of their requirements), with the findings of the
    static rules on it (none: the file passes); ``thorough`` runs the slow linters too (cfn-lint)."""
    out: dict[Path, list[Any]] = {}
    for name in env.required_closure(env.components):
        cls = env.component_class(name)
        ctx = env.context(name, cls)
        files = [Path(p) for p in cls.inputs(ctx)]
        findings = cls.lint(ctx, thorough=thorough) if files else []
        for path in files:
            out[path] = [f for f in findings if Path(f.file) == path]
    return out


def prune(home: Path, platform: PlatformConfig) -> list[str]:
    """Remove the state of environments torn down longer ago than the platform's ``prune_after_days``."""
    return environment.prune(home, platform.prune_after_days * 86400)


def open_for_reuse(home: Path, name: str) -> Environment:
    """The kept environment ``name``, checked again and claimed by this process."""
    env = Environment.open(home, name)
    if env.meta.get("status") in (TORN_DOWN, TEARING_DOWN, TEARDOWN_FAILED):
        raise EnvfixturesError(f"--env-reuse: environment {env.name} was torn down; nothing to reuse")
    env.check()
    env.claim()
    # What the workers get: env.json, with the secret settings it masks (their values are in secrets.jsonl).
    env.description = {**env.meta, "settings": dict(env.settings)}
    return env


def teardown(env: Environment) -> list[str]:
    """Tear ``env`` down with Ctrl-C and SIGTERM shielded (a second signal must not leave it half torn down)."""
    with shielded_signals():
        return env.teardown()


def forget(env: Environment) -> list[str]:
    """After the teardown and the last report: no secret stays on disk, but those of what the teardown left standing
    (``teardown_failed`` components and what they require: a retry of their teardown needs them). Returns the
    problems met (a file of the state directory that could be neither scrubbed nor removed)."""
    return env.forget_secrets()


# ---------------------------------------------------------------------- signals


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _ignored(signum: int, frame: FrameType | None) -> None:
    try:
        os.write(2, f"envfixtures: {signal.Signals(signum).name} ignored while tearing down\n".encode())
    except OSError:
        pass


def sigterm_as_interrupt() -> Any:
    """SIGTERM (what a Jenkins abort sends) raises KeyboardInterrupt, so the Ctrl-C path tears down; returns the
    previous handler."""
    return signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def shielded_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored (with a line on stderr) inside; the previous handlers come back after."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _ignored)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------- the checkout and its configuration


#: pytest's configuration files, in the order pytest looks for them, with the section that makes them count.
INI_FILES = (("pytest.ini", "pytest"), (".pytest.ini", "pytest"), ("pyproject.toml", None), ("tox.ini", "pytest"),
             ("setup.cfg", "tool:pytest"))  # fmt: skip


def ini_values(start: Path) -> tuple[Path | None, list[str], list[str]]:
    """``env_components`` and ``env_settings`` from the pytest configuration that pytest would use from ``start``.

    For the ``envfixtures`` command, which runs outside pytest but must build the same environment: the first
    file found in ``start`` or a parent directory, in pytest's order. Returns (the file, components, settings).
    """
    for directory in [start, *start.parents]:
        for name, section in INI_FILES:
            path = directory / name
            if not path.is_file():
                continue
            values = _ini_section(path, section)
            if values is None:
                continue
            components = values.get("env_components", "")
            settings = values.get("env_settings", "")
            if isinstance(components, str):
                components = shlex.split(components)
            if isinstance(settings, str):
                settings = [line.strip() for line in settings.splitlines() if line.strip()]
            return path, [str(c) for c in components], [str(s) for s in settings]
    return None, [], []


def _ini_section(path: Path, section: str | None) -> dict[str, Any] | None:
    try:
        if section is None:
            with path.open("rb") as fh:
                return tomllib.load(fh).get("tool", {}).get("pytest", {}).get("ini_options")
        ini = iniconfig.IniConfig(str(path))
        return dict(ini[section].items()) if section in ini else None
    except (OSError, tomllib.TOMLDecodeError, iniconfig.ParseError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None


def git_head(root: Path) -> tuple[str, bool]:
    """The checked-out SHA and whether the working tree has uncommitted changes."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise ConfigError(f"--env-sha: {root} is not a git checkout with a commit; pass --env-sha") from None
    return sha, bool(status.strip())
