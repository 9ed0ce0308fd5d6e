"""The one root exception of envfixtures and a subclass per kind of failure.

Every message says what was tried and how to fix it; secrets never go into a message.
"""

from __future__ import annotations


class EnvfixturesError(Exception):
    """Root of every error raised by envfixtures."""


class ConfigError(EnvfixturesError):
    """Bad input found before anything is built: a template, a definitions file, an option."""


class TemplateError(ConfigError):
    """A template or definitions file is invalid; the message names the file and the place in it."""

    def __init__(self, path: object, where: str, problem: str) -> None:
        self.path = str(path)
        self.where = where
        self.problem = problem
        super().__init__(f"{self.path}:{where}: {problem}")


class BuildError(EnvfixturesError):
    """A component could not be built."""


class ComponentFailed(BuildError):
    """A component's build failed earlier in this run; it is not retried."""

    def __init__(self, component: str, cause: str) -> None:
        self.component = component
        self.cause = cause
        super().__init__(f"component {component!r} failed to build earlier in this run (not retried): {cause}")


class WaitTimeout(BuildError):
    """A bounded wait ran out before the thing waited on was ready."""


class FailedState(BuildError):
    """The thing waited on reached a failed state (dead process, failed stack, task failure)."""


class TeardownError(EnvfixturesError):
    """Something could not be torn down; the message names what is left."""


class UnknownName(ConfigError):
    """An unknown backend or component name; the message lists the known ones."""
