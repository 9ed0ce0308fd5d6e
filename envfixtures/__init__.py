"""envfixtures: build a production-class environment from a git SHA, verify it with pytest, tear it down."""

from .errors import EnvfixturesError
from .facts import Facts

__all__ = ["EnvfixturesError", "Facts"]
__version__ = "0.1.0"
