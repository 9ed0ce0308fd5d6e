"""A platform's configuration: the ``[tool.envfixtures]`` table of its ``pyproject.toml``.

What a platform *is* lives there, once (its components, the paths of its templates, its names, its stack's
parameters and outputs, its policy rules); what changes per run stays in pytest's ini keys and ``--env-set``
(:mod:`.settings`). The table is found from the checkout root upwards, the first ``pyproject.toml`` that has
one. Each component reads its own sub-table ``[tool.envfixtures.<component>]`` through the frozen dataclass
``Config`` it declares; the environment's own keys are :data:`ENVIRONMENT_KEYS`. Everything is checked before
anything is built: an unknown key is refused with the list of known ones, a value of the wrong type names
its key, and a configured path that does not exist is named in one line.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from envfixtures.core.errors import ConfigError

C = TypeVar("C")

FILE = "pyproject.toml"

#: Keys of ``[tool.envfixtures]`` itself (every other key is a component's section).
ENVIRONMENT_KEYS: dict[str, str] = {
    "components": "the components the environment is made of (built-in names and entry points)",
    "prune_after_days": "torn-down state older than this many days is removed (at each run's start and by reap)",
    "rules": "policy rules: `off = [ids]` and a table of settings per rule id",
    "hosts": "on aws, the Role tags of the instances each component runs on: {component = [roles]}",
}
DEFAULT_PRUNE_AFTER_DAYS = 7.0


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """A component with no section of its own."""


@dataclasses.dataclass(frozen=True)
class PlatformConfig:
    """``[tool.envfixtures]`` as read (``source`` is ``""`` when the platform has none)."""

    source: str = ""
    table: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def where(self, key: str = "", section: str = "") -> str:
        """How a message names a place: ``FILE [tool.envfixtures.SECTION] KEY`` (without what is not given)."""
        table = f"tool.envfixtures.{section}" if section else "tool.envfixtures"
        return f"{self.source or FILE} [{table}]" + (f" {key}" if key else "")

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.table.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.where(name)}: expected a table")
        return value

    @property
    def components(self) -> tuple[str, ...]:
        value = self.table.get("components", [])
        return parse_value(tuple[str, ...], value, self.where("components"))

    @property
    def prune_after_days(self) -> float:
        value = self.table.get("prune_after_days", DEFAULT_PRUNE_AFTER_DAYS)
        days = parse_value(float, value, self.where("prune_after_days"))
        if days < 0:
            raise ConfigError(f"{self.where('prune_after_days')}: {value!r} must be 0 or more")
        return days

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "table": dict(self.table)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> "PlatformConfig":
        return cls(str((data or {}).get("source", "")), dict((data or {}).get("table", {})))

    def check_keys(self, component_names: Iterable[str]) -> None:
        """Refuse a top-level key that is neither the environment's nor a known component's section."""
        known = sorted({*ENVIRONMENT_KEYS, *component_names})
        unknown = sorted(set(self.table) - set(known))
        if unknown:
            raise ConfigError(f"{self.where()}: unknown key {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        self.components  # noqa: B018 - type-checked here, before anything is built
        self.prune_after_days  # noqa: B018
        for component, roles in self.section("hosts").items():
            parse_value(tuple[str, ...], roles, self.where(component, "hosts"))


def find(start: Path) -> PlatformConfig:
    """The configuration of the checkout at ``start``: the first ``pyproject.toml`` from there upwards with a
    ``[tool.envfixtures]`` table (an empty configuration if there is none)."""
    for directory in [start, *start.parents]:
        path = directory / FILE
        if path.is_file():
            table = read(path)
            if table is not None:
                return PlatformConfig(str(path), table)
    return PlatformConfig()


def read(path: Path) -> dict[str, Any] | None:
    """``[tool.envfixtures]`` of ``path`` (``None`` if it has none); a file TOML cannot read is a ConfigError."""
    try:
        with path.open("rb") as fh:
            table = tomllib.load(fh).get("tool", {}).get("envfixtures")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path} [tool] envfixtures: expected a table")
    return table


# ---------------------------------------------------------------------- a component's section


def path_field(default: str = "", *, kind: str = "file") -> Any:
    """A dataclass field holding a path relative to the checkout root, checked to exist (``kind`` ``file`` or
    ``dir``) at configure time unless empty."""
    return dataclasses.field(default=default, metadata={"path": kind})


def parse(classes: Iterable[type[C]], table: Mapping[str, Any], where: str) -> list[C]:
    """An instance of each class from ``table`` (the keys it declares; defaults for the rest), after refusing a key
    that no class declares — listing the known ones. ``where`` names the table in messages."""
    classes = list(classes)
    known = sorted({f.name for cls in classes for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(known))
    if unknown:
        listing = ", ".join(known) if known else "none (this component has no configuration)"
        raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unknown))}; known: {listing}")
    out = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        kwargs = {
            f.name: parse_value(hints[f.name], table[f.name], f"{where} {f.name}")
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.name in table
        }
        out.append(cls(**kwargs))
    return out


def path_values(config: object) -> list[tuple[str, str, str]]:
    """(field, kind, value) of each path field of ``config`` that is set (see :func:`path_field`)."""
    return [
        (f.name, f.metadata["path"], getattr(config, f.name))
        for f in dataclasses.fields(config)  # type: ignore[arg-type]
        if f.metadata.get("path") and getattr(config, f.name)
    ]


def check_paths(config: object, root: Path, where: str) -> None:
    """Every path field of ``config`` that is set names an existing file (or directory) under ``root``."""
    for name, kind, value in path_values(config):
        path = Path(root) / value
        ok = path.is_dir() if kind == "dir" else path.is_file()
        if not ok:
            what = "directory" if kind == "dir" else "file"
            raise ConfigError(f"{where} {name}: {value!r} is not a {what} under {root}")


def parse_value(kind: Any, value: Any, where: str) -> Any:
    """``value`` (as TOML gave it) checked against ``kind``: str, int, float, bool, tuple[str, ...], dict[str, str]."""
    origin = typing.get_origin(kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r}: expected true or false")
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
            raise ConfigError(f"{where} = {value!r}: expected {'a whole number' if kind is int else 'a number'}")
        return kind(value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} = {value!r}: expected a string")
    if origin is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} = {value!r}: expected a list of strings")
    if origin in (dict, Mapping):
        if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        raise ConfigError(f"{where} = {value!r}: expected a table of strings")
    raise ConfigError(f"{where}: a setting of type {kind} cannot be configured")  # a component's own mistake
