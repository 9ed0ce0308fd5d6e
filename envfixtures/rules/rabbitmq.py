"""Rules on the broker's definitions (``templates/rabbitmq/definitions.json``).

The consistency rules are the broker's own validator, :func:`envfixtures.drivers.rabbitmq.definitions.load`
(bindings to declared exchanges and queues, declared dead-letter exchanges, policies matching something,
names declared once ...), which the topology component also runs before building: one source of truth.
It stops at the first problem, so this gives at most one finding, with the JSON path (``$.bindings[3].source``).
"""

from __future__ import annotations

from pathlib import Path

from envfixtures.core.errors import TemplateError
from envfixtures.drivers.rabbitmq import definitions
from envfixtures.rules import Finding, from_error

RULE = "rabbitmq-definitions"


def check_file(path: Path | str) -> list[Finding]:
    """The broker validator's verdict on ``path`` as findings (empty when valid)."""
    try:
        definitions.load(Path(path))
    except TemplateError as exc:
        return [from_error(exc, RULE)]
    return []
