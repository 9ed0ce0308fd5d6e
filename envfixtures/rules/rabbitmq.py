"""Rules on the broker's definitions (the file ``[tool.envfixtures.topology] definitions`` names).

The rules are the broker's own validator, :func:`envfixtures.drivers.rabbitmq.definitions.problems` (what RabbitMQ's
definitions import would refuse, rule ``rabbitmq-definitions``, plus the project's policy rules: declared
dead-letter exchanges, policies matching something, names declared once ...), which the topology component
also runs before building: one source of truth. Every problem is a finding with its JSON path
(``$.bindings[3].source``); a file that does not parse is the one finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from envfixtures.core.errors import TemplateError
from envfixtures.drivers.rabbitmq import ENABLED_PLUGINS, definitions
from envfixtures.rules import Finding, from_error

RULE = definitions.RULE


def check_doc(
    doc: object, path: Path | str, *, plugins: Iterable[str] | None = ENABLED_PLUGINS, import_as: str = "auto"
) -> list[Finding]:
    """Every problem of a parsed document as findings (``plugins=None``: the enabled plugins are unknown)."""
    found = definitions.problems(doc, plugins=plugins, import_as=import_as)
    return [Finding(str(path), p.where, p.rule, p.message, p.severity) for p in found]


def check_file(
    path: Path | str, *, plugins: Iterable[str] | None = ENABLED_PLUGINS, import_as: str = "auto"
) -> list[Finding]:
    """The broker validator's verdict on ``path`` as findings (empty when valid)."""
    try:
        doc = definitions.read(Path(path))
    except TemplateError as exc:
        return [from_error(exc, RULE)]
    return check_doc(doc, path, plugins=plugins, import_as=import_as)
