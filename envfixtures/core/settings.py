"""Typed settings, checked once at configure time.

Values arrive as ``KEY=VALUE`` strings (ini ``env_settings``, then ``ENVFIXTURES_SETTING_<KEY>`` variables, then
``--env-set`` / ``envfixtures up --set``, each overriding the one before) into one flat namespace. A secret goes in
a variable (a Jenkins ``withCredentials`` binding): a command line shows in ``ps`` to every local user, a process's
environment only to its owner. Each component declares the keys it reads as a frozen dataclass
(``Component.Settings``); the environment's own keys are :class:`EnvironmentSettings`. A key no class declares is
refused with the list of known keys, and a value of the wrong type is refused naming the key — both before anything
is built.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from envfixtures.core.errors import ConfigError

S = TypeVar("S")

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class EnvironmentSettings:
    """Keys of the environment itself, whatever its components."""

    #: no progress lines on the terminal (they still go to ``logs/progress.log``)
    quiet: bool = False
    #: policy rule ids to turn off (see ``envfixtures.rules.policy``), separated by commas or spaces
    rules_off: str = ""
    #: aws host checks: the bastion to reach the stack's hosts through, the user and key to log in with
    ssh_bastion: str = ""
    ssh_user: str = "ec2-user"
    ssh_identity_file: str = ""
    #: seconds a worker waits for another's build of a component (its lock is held while it builds): longer than
    #: the longest build; then the wait fails naming the lock and its holder
    build_lock_timeout: float = 3600.0


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """A component that reads no setting."""


def parse_lines(lines: Iterable[str], source: str) -> dict[str, str]:
    """``KEY=VALUE`` lines into a dict; a line without ``=`` or a key is a :class:`ConfigError` naming ``source``."""
    values = {}
    for line in lines:
        key, sep, value = str(line).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = value.strip()
    return values


#: ``ENVFIXTURES_SETTING_BROKER_ADMIN_PASSWORD=...`` is the setting ``broker_admin_password``
ENVIRON_PREFIX = "ENVFIXTURES_SETTING_"


def from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings given as ``ENVFIXTURES_SETTING_<KEY>`` variables (the key lowercased)."""
    return {
        name[len(ENVIRON_PREFIX) :].lower(): value.strip()
        for name, value in environ.items()
        if name.startswith(ENVIRON_PREFIX) and len(name) > len(ENVIRON_PREFIX)
    }


def layered(
    ini: Iterable[str],
    ini_source: str,
    command_line: Iterable[str],
    command_line_source: str,
    environ: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """(every setting, those of the command line): the ini's lines, then ``ENVFIXTURES_SETTING_<KEY>`` variables,
    then the command line's, each overriding the one before."""
    values = parse_lines(ini, ini_source)
    values.update(from_environ(environ))
    given = parse_lines(command_line, command_line_source)
    values.update(given)
    return values, given


def on_command_line_warning(secret_keys: Iterable[str], flag: str) -> str | None:
    """The warning for secrets given on a command line, which every local user reads in ``ps``; None if none."""
    keys = sorted(secret_keys)
    if not keys:
        return None
    return (
        f"{flag} {', '.join(keys)}: a command line shows in `ps` to every user of this machine; give a secret as "
        f"{ENVIRON_PREFIX}{keys[0].upper()}=... in the environment instead"
    )


def parse_bool(text: str) -> bool:
    """``true``/``yes``/``on``/``1`` or ``false``/``no``/``off``/``0``/empty; :class:`ValueError` otherwise."""
    lowered = str(text).strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def known_keys(classes: Iterable[type]) -> list[str]:
    return sorted({f.name for cls in classes for f in dataclasses.fields(cls)})


def check(values: Mapping[str, str], classes: Iterable[type], source: str = "--env-set") -> None:
    """Refuse a key no class declares (listing the known ones) and a value of the wrong type."""
    classes = list(classes)
    known = known_keys(classes)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown setting {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    for cls in classes:
        parse(cls, values, source)


def parse(cls: type[S], values: Mapping[str, str], source: str = "--env-set") -> S:
    """An instance of ``cls`` from the string ``values`` it declares (others are ignored); defaults for the rest."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in values:
            kwargs[field.name] = _convert(hints[field.name], values[field.name], f"{source} {field.name}")
    return cls(**kwargs)


def _convert(kind: Any, raw: str, where: str) -> Any:
    text = str(raw).strip()
    if kind is bool:
        try:
            return parse_bool(text)
        except ValueError:
            raise ConfigError(f"{where}={raw!r}: expected true or false") from None
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{where}={raw!r}: expected {'a whole number' if kind is int else 'a number'}") from None
    return text
