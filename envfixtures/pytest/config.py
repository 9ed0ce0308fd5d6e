"""The plugin's settings, resolved once at configure time.

Precedence: command-line option, then environment variable, then ini key, then default — compared
with ``is not None`` so that an explicit empty or false value still wins. A bad value raises
``pytest.UsageError`` naming the option.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from envfixtures.core import config as platform_config
from envfixtures.core import naming, registry
from envfixtures.core.config import PlatformConfig
from envfixtures.core.errors import ConfigError
from envfixtures.core.settings import layered, on_command_line_warning, parse_bool
from envfixtures.core.state import secret_settings
from envfixtures.lifecycle import git_head

#: (option dest, command-line flag, environment variable, ini key, help)
OPTIONS: list[tuple[str, str, str, str, str]] = [
    (
        "env_backend",
        "--env-backend",
        "ENVFIXTURES_BACKEND",
        "env_backend",
        "where the environment is built: local (processes on this machine, the default) or aws",
    ),
    (
        "env_sha",
        "--env-sha",
        "ENVFIXTURES_SHA",
        "env_sha",
        "the git SHA to build (default: git rev-parse HEAD); promotable only when it is HEAD and the tree is clean",
    ),
    (
        "env_keep",
        "--env-keep",
        "ENVFIXTURES_KEEP",
        "env_keep",
        "keep the environment after the run and print how to reuse and destroy it",
    ),
    (
        "env_reuse",
        "--env-reuse",
        "ENVFIXTURES_REUSE",
        "env_reuse",
        "run against the kept environment NAME instead of building one",
    ),
    (
        "env_home",
        "--env-home",
        "ENVFIXTURES_HOME",
        "env_home",
        "directory of environment state (default: <rootdir>/.envfixtures)",
    ),
    (
        "env_branch",
        "--env-branch",
        "ENVFIXTURES_BRANCH",
        "env_branch",
        "branch name to put in the environment name (default: $BRANCH_NAME as Jenkins sets it, else none)",
    ),
    (
        "env_eager",
        "--env-eager",
        "ENVFIXTURES_EAGER",
        "env_eager",
        "true (the default): once collection is done, build what the selected tests need in the background; "
        "false: each component when the first test that needs it starts",
    ),
]


@dataclass(frozen=True)
class Settings:
    backend: str
    #: the SHA to build; whether the checkout is that SHA is computed from git when the environment is named
    #: (:func:`envfixtures.lifecycle.differences_from_sha`), never taken from how the SHA was given
    sha: str
    keep: bool
    reuse: str | None
    home: Path
    root: Path
    branch: str | None
    components: tuple[str, ...]
    values: dict[str, str] = field(default_factory=dict)
    #: the platform's configuration, ``[tool.envfixtures]`` of the pyproject.toml at or above the rootdir
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    #: build what the selection needs as soon as collection is done (:mod:`envfixtures.pytest.eager`)
    eager: bool = True


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("envfixtures", "environment verification (envfixtures)")
    for dest, flag, envvar, ini, help_text in OPTIONS:
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": f"{help_text} [env {envvar}, ini {ini}]"}
        if dest == "env_keep":
            kwargs["action"] = "store_const"
            kwargs["const"] = "true"
        else:
            kwargs["metavar"] = dest.removeprefix("env_").upper()
        group.addoption(flag, **kwargs)
        parser.addini(ini, help_text, default=None)
    group.addoption(
        "--env-static-only",
        dest="env_static_only",
        action="store_true",
        default=False,
        help="run only the static_rules items (one per input file of the components), collecting no test and building "
        "nothing: a gate's static stage",
    )
    group.addoption(
        "--env-set",
        dest="env_set",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a component setting (e.g. broker_nodes=3); overrides ini env_settings and ENVFIXTURES_SETTING_<KEY> "
        "variables (give secrets that way: a command line shows in ps)",
    )
    parser.addini("env_settings", "component settings, one KEY=VALUE a line", type="linelist", default=[])
    parser.addini(
        "env_components",
        "the components this run's environment is made of (default: [tool.envfixtures] components, else all)",
        type="args",
        default=[],
    )


def resolve(config: pytest.Config) -> Settings:
    """Every setting from option, environment variable, ini key or default, checked."""

    def raw(dest: str) -> tuple[str | None, str]:
        _, flag, envvar, ini, _ = next(o for o in OPTIONS if o[0] == dest)
        value = config.getoption(dest)
        if value is not None:
            return str(value), flag
        if os.environ.get(envvar) is not None:
            return os.environ[envvar], f"${envvar}"
        ini_value = config.getini(ini)
        if ini_value is not None:
            return str(ini_value), f"ini {ini}"
        return None, flag

    def checked(dest: str, convert: Callable[[str], Any], default: Any) -> Any:
        value, source = raw(dest)
        if value is None:
            return default
        try:
            return convert(value)
        except ValueError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None

    root = Path(config.rootpath)
    backend = checked("env_backend", _backend, "local")
    keep = checked("env_keep", parse_bool, False)
    reuse = checked("env_reuse", _env_name, None)
    home = checked("env_home", lambda v: (root / v).resolve(), root / ".envfixtures")
    branch = checked("env_branch", str, os.environ.get("BRANCH_NAME"))
    eager = checked("env_eager", parse_bool, True)
    sha_value, sha_source = raw("env_sha")
    if sha_value is not None:
        sha = sha_value.strip().lower()
        if not naming.SHA_RE.match(sha):
            raise pytest.UsageError(f"{sha_source}: not a git SHA (7 to 40 hex digits): {sha_value!r}")
    else:
        try:
            sha = git_head(root)
        except ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    try:
        values, given = layered(
            config.getini("env_settings"),
            "ini env_settings",
            config.getoption("env_set") or [],
            "--env-set",
            os.environ,
        )
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    warning = on_command_line_warning(secret_settings(given), "--env-set")
    if warning:
        config.issue_config_time_warning(pytest.PytestConfigWarning(warning), stacklevel=2)
    try:
        platform = platform_config.find(root)
        registry.register_many(_hooked_components(config), "pytest_envfixtures_components")
        components = tuple(config.getini("env_components")) or platform.components or tuple(registry.COMPONENTS)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    for name in components:
        if name not in registry.COMPONENTS:
            raise pytest.UsageError(
                f"ini env_components: unknown component {name!r}; known: {', '.join(registry.COMPONENTS)}"
            )
    return Settings(backend, sha, keep, reuse, home, root, branch, components, values, platform, eager)


def _hooked_components(config: pytest.Config) -> dict[str, Any]:
    """What the ``pytest_envfixtures_components`` implementations (conftests, plugins) return, merged."""
    merged: dict[str, Any] = {}
    for result in config.hook.pytest_envfixtures_components(config=config):
        merged.update(result or {})
    return merged


def _backend(value: str) -> str:
    if value not in registry.BACKENDS:
        raise ValueError(f"unknown backend {value!r}; known: {', '.join(registry.BACKENDS)}")
    return value


def _env_name(value: str) -> str:
    if not naming.is_valid(value):
        raise ValueError(f"not an environment name: {value!r} (see `envfixtures ls`)")
    return value
