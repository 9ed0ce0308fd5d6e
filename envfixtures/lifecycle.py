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
from envfixtures.core.config import PlatformConfig, path_values
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
    kept: bool = False,
    check: Sequence[str] | None = None,
) -> Environment:
    """A new environment of ``sha``, named, with its settings and its components' inputs checked (those of
    ``check`` and their requirements; default every component of the environment).

    Its description says how the checkout differs from ``sha`` as committed in what the run reads
    (``provenance``: the reasons, see :func:`differences_from_sha`; ``dirty``: whether there is any), computed from
    git whatever the SHA's source: an ``--env-sha`` is not taken on trust. Nothing is written yet: the state
    directory appears with the first build.
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
    why = differences_from_sha(root, sha, read_paths(env, check))
    env.description = {**env.describe(dirty=bool(why), kept=kept), "provenance": why}
    return env


#: The name of the stand-in environment of ``envfixtures check`` and of a static-only pytest run: never built.
CHECK_NAME = "ef-check"


def check_environment(
    *,
    root: Path,
    home: Path,
    settings: Mapping[str, str],
    components: Sequence[str] | None,
    config: PlatformConfig | None = None,
    sha: str = "0" * 40,
    backend: str = "local",
) -> Environment:
    """A stand-in environment to run the static rules on the inputs of ``components`` (default: the platform's):
    its settings and the platform's configuration checked, its inputs not (that is the rules' business); it is
    never materialized, so nothing of it is built or written."""
    env = Environment(
        name=CHECK_NAME, sha=sha, backend=backend, root=root, home=home, settings=settings, components=components,
        config=config,
    )  # fmt: skip
    env.check_settings()
    return env


def static_findings(env: Environment, *, thorough: bool = True) -> dict[Path, list[Any]]:
    """Every input file of the environment's components (and of their requirements), with the findings of the
    static rules on it (none: the file passes); ``thorough`` runs the slow linters too (cfn-lint)."""
    inputs = env.inputs()
    findings: dict[str, list[Any]] = {}
    for name in dict.fromkeys(inputs.values()):
        cls = env.component_class(name)
        findings[name] = cls.lint(env.context(name, cls), thorough=thorough)
    return {path: [f for f in findings[name] if Path(f.file) == path] for path, name in inputs.items()}


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


def git_head(root: Path) -> str:
    """The checked-out SHA (what a run builds unless it is told another)."""
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if head is None:
        raise ConfigError(f"--env-sha: {root} is not a git checkout with a commit; pass --env-sha")
    return head.strip()


def commit_of(root: Path, rev: str) -> str | None:
    """The full SHA of the commit ``rev`` names in the git checkout at ``root`` (None: no such commit, or no
    git checkout)."""
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return found.strip() if found else None


def read_paths(env: Environment, names: Sequence[str] | None = None) -> list[Path]:
    """What the environment's components read of the checkout, as absolute paths: each input file
    (``Component.inputs``: templates, definitions) and its directory (unless that is the checkout's top), each
    configured path (a ``path_field`` of a component's ``Config``: the apps' templates, the migrations, the
    artifact's source), and the platform's configuration file; for the components ``names`` (default: the
    environment's) and what they require."""
    found: dict[Path, None] = {}
    if env.config.source:
        found[Path(env.config.source)] = None
    root = Path(env.root)
    for path in env.inputs(names):
        found[path] = None
        if path.parent != root:
            found[path.parent] = None
    for name in env.required_closure(names if names is not None else env.components):
        for _, _, value in path_values(env.context(name).config):
            found[root / value] = None
    return list(found)


def differences_from_sha(root: Path, sha: str, paths: Sequence[Path]) -> list[str]:
    """Why the checkout at ``root`` is not ``sha`` as committed, for a run that reads ``paths`` from the
    working tree (empty: it is). Each reason is one sentence, for the promotion verdict.

    The rule: HEAD is ``sha``; no tracked file of the repository is modified or staged; and no file under
    ``paths`` is untracked — whether git ignores it or not, an input file itself must be committed (a file
    that is merely lying in an input directory counts only when git does not ignore it). Then every file the
    run reads from the working tree is byte for byte the file of ``sha``.
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None:
        return [f"{root} is not a git checkout: nothing ties what was deployed to {sha}"]
    top_dir = Path(top.strip()).resolve()
    head = commit_of(root, "HEAD")
    wanted = commit_of(root, sha)
    if head is None:
        return [f"the git checkout at {top_dir} has no commit: nothing ties what was deployed to {sha}"]
    why = []
    if wanted is None:
        why.append(f"{sha} is not a commit of this checkout (HEAD is {head[:12]}): what was deployed is not {sha}")
    elif wanted != head:
        why.append(
            f"the checkout is at {head[:12]}, not at {sha}: what was deployed from the working tree is not {sha}"
        )
    changed = _status_paths(top_dir, "--untracked-files=no")
    if changed:
        why.append(
            f"the working tree has uncommitted changes ({_listing(changed)}): the SHA does not describe what ran"
        )
    inside, outside = [], []
    for path in paths:
        resolved = Path(path).resolve()
        (inside if resolved.is_relative_to(top_dir) else outside).append(resolved)
    for path in outside:
        why.append(f"{path} is read by this run but is outside the git checkout {top_dir}: {sha} does not hold it")
    if inside:
        spec = [p.relative_to(top_dir).as_posix() or "." for p in inside]
        untracked = _status_paths(top_dir, "--untracked-files=all", "--", *spec, untracked_only=True)
        files = [p for p in inside if p.is_file()]
        listed = [p.relative_to(top_dir).as_posix() for p in files]
        tracked = set(_git_z(top_dir, "ls-files", "-z", "--", *listed)) if listed else set()
        ignored = [p for p in listed if p not in tracked and p not in untracked]
        missing = sorted(set(untracked) | set(ignored))
        if missing:
            shown = [_shown(top_dir / p, root, top_dir) for p in missing]
            why.append(
                f"files this run reads are not committed ({_listing(shown)}): the SHA does not describe what was "
                "deployed"
            )
    return why


def _shown(path: Path, root: Path, top: Path) -> str:
    """A path as a person reads it: relative to the checkout root if it is under it, else to the repository's top."""
    base = Path(root).resolve()
    return path.relative_to(base if path.is_relative_to(base) else top).as_posix()


def _listing(items: Sequence[str], most: int = 10) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _status_paths(top: Path, *args: str, untracked_only: bool = False) -> list[str]:
    """The paths ``git status --porcelain -z`` names (relative to the repository's top); only the untracked
    ones if ``untracked_only``."""
    fields = _git_z(top, "status", "--porcelain=v1", "-z", "--ignored=no", *args)
    out, i = [], 0
    while i < len(fields):
        entry = fields[i]
        code, path = entry[:2], entry[3:]
        i += 2 if code[0] in "RC" else 1  # a rename or copy is followed by its source path
        if not untracked_only or code == "??":
            out.append(path)
    return sorted(out)


def _git_z(cwd: Path, *args: str) -> list[str]:
    out = _git(cwd, "--literal-pathspecs", *args)
    if out is None:
        raise ConfigError(f"{cwd}: git {' '.join(args[:2])} failed")
    return [f for f in out.split("\0") if f]


def _git(cwd: Path, *args: str) -> str | None:
    """The output of ``git ARGS`` in ``cwd``; None if git failed (or is not installed)."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None
