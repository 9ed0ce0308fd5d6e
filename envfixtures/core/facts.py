"""Facts: what a component's build tells the tests (endpoints, ports, ids, credentials).

A fact is JSON-serialisable. Secret facts are marked by key; their values are redacted from every
log line, report and exception message that envfixtures writes (see :mod:`envfixtures.core.redaction`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"


class Facts(dict):
    """A component's facts: a plain dict plus the set of keys whose values are secret."""

    def __init__(self, values: Mapping[str, Any] | None = None, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(values or {})
        self.secret_keys = frozenset(secrets)
        missing = self.secret_keys - set(self)
        if missing:
            raise ValueError(f"secret keys without a value: {sorted(missing)}")

    def secret_values(self) -> list[str]:
        """The secret values (none once forgotten: a forgotten secret is stored as the mask)."""
        return [str(self[k]) for k in self.secret_keys if self.get(k) and self[k] != MASK]

    def masked(self) -> dict[str, Any]:
        """The facts with every secret value replaced by a mask, for printing."""
        return {k: (MASK if k in self.secret_keys else v) for k, v in self.items()}

    def to_json(self) -> dict[str, Any]:
        return {"values": dict(self), "secrets": sorted(self.secret_keys)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Facts":
        return cls(data.get("values", {}), secrets=data.get("secrets", ()))
