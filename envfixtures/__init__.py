"""envfixtures: build a production-class environment from a git SHA, verify it with pytest, tear it down."""

from envfixtures.core.errors import EnvfixturesError
from envfixtures.core.facts import Facts

__all__ = ["EnvfixturesError", "Facts"]
__version__ = "0.1.0"
