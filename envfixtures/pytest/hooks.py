"""The hooks envfixtures adds to pytest (registered by the plugin with ``pytest_addhooks``)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_envfixtures_components(config: pytest.Config) -> dict[str, Any] | None:
    """Components of one's own, for this run: ``{name: "module:Class"}`` (every backend) or
    ``{name: {"local": "module:Class", "aws": "module:Other"}}``.

    Implement it in a ``conftest.py`` or a plugin, the way pytest-xdist lets a plugin supply a scheduler; every
    implementation is called and the results are merged. An installed package declares its components with the
    entry-point group ``envfixtures.components`` instead, which the ``envfixtures`` command sees as well.
    The class is a subclass of :class:`envfixtures.core.component.Component`; its methods receive a
    :class:`envfixtures.core.context.BuildContext`, the whole contract (docs/adopting.md).
    """
