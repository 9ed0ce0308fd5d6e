"""The component contract: a named part of an environment with requirements and three operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from envfixtures.core.facts import Facts

if TYPE_CHECKING:
    from envfixtures.core.environment import Environment


class Component:
    """A part of an environment.

    Subclasses set ``name`` and ``requires`` and implement ``build``. ``check`` validates the
    component's inputs (templates, definitions) without building anything; it runs for every
    component before the first build, so bad input fails the run before any process starts.
    ``teardown`` must tolerate partial facts: it also runs after a failed or interrupted build.
    Whatever a component starts with ``env.spawn`` is stopped by the environment afterwards even
    if ``teardown`` forgets it.
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check(cls, env: "Environment") -> None:
        """Refuse bad input with :class:`~envfixtures.core.errors.TemplateError` (file and place)."""

    def build(self, env: "Environment") -> Facts:
        raise NotImplementedError

    def teardown(self, env: "Environment", facts: Facts) -> None:
        """Release what ``build`` made. The default stops the component's journaled processes."""
        env.stop_processes(self.name)

    def diagnose(self, env: "Environment", facts: Facts) -> str:
        """Evidence for a failing test that used this component (redacted by the caller)."""
        return ""
