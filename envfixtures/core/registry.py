"""Names to implementations: which class provides a component on which backend, imported lazily.

A backend decides how infrastructure components are provided (``local`` starts processes on this
machine, ``aws`` reads the stack's outputs); deploy steps (topology, apps) are the same class on both.

A platform brings components of its own through the entry-point group ``envfixtures.components`` (the entry
point's name is the component's name for every backend, or ``NAME.BACKEND`` for one; its value
``module:Class``), or from a conftest with the pytest hook ``pytest_envfixtures_components``
(:mod:`envfixtures.pytest.hooks`). Either way, :class:`~envfixtures.core.context.BuildContext` is all the
component sees of envfixtures.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from envfixtures.core.errors import UnknownName

if TYPE_CHECKING:
    from envfixtures.core.component import Component

BACKENDS = ("local", "aws")
ENTRY_POINT_GROUP = "envfixtures.components"

ANY = "*"

#: component name -> backend (or ANY) -> "module:Class"
COMPONENTS: dict[str, dict[str, str]] = {
    "aws": {
        "local": "envfixtures.components.aws:LocalAws",
        "aws": "envfixtures.components.aws:RealAws",
    },
    "database": {
        "local": "envfixtures.components.database:LocalDatabase",
        "aws": "envfixtures.components.database:StackDatabase",
    },
    "broker": {
        "local": "envfixtures.components.broker:LocalBroker",
        "aws": "envfixtures.components.broker:StackBroker",
    },
    "topology": {ANY: "envfixtures.components.topology:Topology"},
    "scheduler": {
        "local": "envfixtures.components.scheduler:LocalScheduler",
        "aws": "envfixtures.components.scheduler:StackScheduler",
    },
    "artifact": {ANY: "envfixtures.components.artifact:Artifact"},
    "images": {
        "local": "envfixtures.components.images:LocalImages",
        "aws": "envfixtures.components.images:StackImages",
    },
    "apps": {ANY: "envfixtures.components.apps:Apps"},
    "api": {
        "local": "envfixtures.components.api:LocalApi",
        "aws": "envfixtures.components.api:StackApi",
    },
}


def _from_entry_points() -> None:
    """Add the components that installed distributions declare (``name`` or ``name.backend`` = ``module:Class``)."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        name, _, backend = point.name.partition(".")
        register(name, point.value, backend or ANY)


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise UnknownName(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return name


def implementation(component: str, backend: str) -> str:
    """The "module:Class" path of ``component`` on ``backend``."""
    try:
        by_backend = COMPONENTS[component]
    except KeyError:
        raise UnknownName(f"unknown component {component!r}; known components: {', '.join(COMPONENTS)}") from None
    path = by_backend.get(backend) or by_backend.get(ANY)
    if path is None:
        raise UnknownName(f"component {component!r} has no implementation on backend {backend!r}")
    return path


def load(path: str) -> type["Component"]:
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def register(name: str, path: str, backend: str = ANY) -> None:
    """Add or replace a component (used by suites that bring components of their own)."""
    COMPONENTS.setdefault(name, {})[backend] = path


def register_many(components: dict[str, str | dict[str, str]], source: str) -> None:
    """Register ``{name: "module:Class"}`` or ``{name: {backend: "module:Class"}}`` (what a hook returns)."""
    for name, value in components.items():
        by_backend = value if isinstance(value, dict) else {ANY: value}
        for backend, path in by_backend.items():
            if backend != ANY and backend not in BACKENDS:
                raise UnknownName(
                    f"{source}: component {name!r}: unknown backend {backend!r}; known: {', '.join(BACKENDS)}"
                )
            if not isinstance(path, str) or ":" not in path:
                raise UnknownName(f'{source}: component {name!r}: expected "module:Class", got {path!r}')
            register(name, path, backend)


_from_entry_points()
