"""Names to implementations: which class provides a component on which backend, imported lazily.

A backend decides how infrastructure components are provided (``local`` starts processes on this
machine, ``aws`` reads the stack's outputs); deploy steps (topology, apps) are the same class on both.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from envfixtures.core.errors import UnknownName

if TYPE_CHECKING:
    from envfixtures.core.component import Component

BACKENDS = ("local", "aws")

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
    "apps": {ANY: "envfixtures.components.apps:Apps"},
    "api": {
        "local": "envfixtures.components.api:LocalApi",
        "aws": "envfixtures.components.api:StackApi",
    },
}


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
