"""The component contract: a named part of an environment with requirements, typed settings and four operations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from envfixtures.core.config import NoConfig
from envfixtures.core.facts import Facts
from envfixtures.core.settings import NoSettings

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext


class Component:
    """A part of an environment.

    Subclasses set ``name`` and ``requires``, declare the settings they read per run as a frozen dataclass
    ``Settings`` (keys of the flat ``--env-set`` namespace, typed; checked at configure time) and what a platform
    configures once as a frozen dataclass ``Config`` (its section ``[tool.envfixtures.<name>]``, see
    :mod:`envfixtures.core.config`), and implement ``build``.
    Every operation receives a :class:`~envfixtures.core.context.BuildContext` — all a component sees of its
    environment. ``check`` validates the component's inputs (templates, definitions) without building
    anything; it runs for every component before the first build, so bad input fails the run before any
    process starts. ``teardown`` must tolerate partial facts: it also runs after a failed or interrupted build.
    Whatever a component starts with ``ctx.spawn`` is stopped by the environment afterwards even if
    ``teardown`` forgets it.
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    Settings: ClassVar[type] = NoSettings
    Config: ClassVar[type] = NoConfig

    @classmethod
    def requirements(cls, config: Any) -> tuple[str, ...]:
        """The components this one needs built first, given its ``Config`` (default: ``requires``)."""
        return cls.requires

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """Refuse bad input with :class:`~envfixtures.core.errors.TemplateError` (file and place)."""

    @classmethod
    def inputs(cls, ctx: "BuildContext") -> list[Path]:
        """The files of the checkout this component deploys (templates, definitions): the static stage's items."""
        return []

    @classmethod
    def lint(cls, ctx: "BuildContext", *, thorough: bool = False) -> list[Any]:
        """Every finding of the static rules on :meth:`inputs` (:class:`envfixtures.rules.Finding`), the policy
        rules the platform turned off left out; ``thorough`` adds the slow linters (cfn-lint)."""
        return []

    def build(self, ctx: "BuildContext") -> Facts:
        raise NotImplementedError

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Release what ``build`` made. The default stops the component's journaled processes."""
        ctx.stop_processes()

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        """Evidence for a failing test that used this component (redacted by the caller)."""
        return ""
