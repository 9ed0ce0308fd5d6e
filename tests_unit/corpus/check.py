"""The static gate's verdict on one input of the real-world corpus (``manifest.yaml``).

``verdict(item)`` returns ``("accepted" | "refused", flags)``: *refused* when a validation rule (what the real
system checks: ``rabbitmq-definitions``, ``marathon-schema``, ``cfn-parse``) finds an error, and ``flags``, the
sorted ids of the project's policy rules that fire. Warnings (fields Marathon ignores, names RabbitMQ skips,
plugins an exchange type needs) are neither.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envfixtures.drivers.marathon.validation import group_unknown_fields, unknown_fields, validate_app, validate_group
from envfixtures.rules import Finding, errors
from envfixtures.rules import cloudformation as cfn_rules
from envfixtures.rules import rabbitmq as rabbitmq_rules
from envfixtures.rules.policy import POLICY_RULES

HERE = Path(__file__).resolve().parent
VALIDATION_RULES = frozenset({"rabbitmq-definitions", "marathon-schema", "marathon-parse", "cfn-parse"})


def findings(item: dict[str, Any]) -> list[Finding]:
    """Every finding (warnings included) of the gate on the item's file."""
    path = HERE / item["file"]
    kind = item["kind"]
    if kind == "rabbitmq":
        # The corpus says nothing about the brokers' plugins: a plugin exchange type is a warning naming it.
        return rabbitmq_rules.check_file(path, plugins=None, import_as=item.get("import_as", "auto"))
    if kind == "cloudformation":
        return cfn_rules.check_file(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return [Finding(str(path), f"line {exc.lineno}", "marathon-parse", exc.msg)]
    if kind == "marathon-group":
        details, unknown = validate_group(doc, group_id=doc.get("id") or "/"), group_unknown_fields(doc)
    elif kind == "marathon-apps":
        apps = doc if isinstance(doc, list) else doc.get("apps")
        details = [d for i, a in enumerate(apps) for d in validate_app(a, prefix=f"/apps({i})")]
        unknown = [u for i, a in enumerate(apps) for u in unknown_fields(a, prefix=f"/apps({i})")]
    else:
        details, unknown = validate_app(doc), unknown_fields(doc)
    out = [Finding(str(path), d["path"], "marathon-schema", "; ".join(d["errors"])) for d in details]
    out += [Finding(str(path), u, "marathon-unknown-field", "Marathon ignores it", "warning") for u in unknown]
    return out


def verdict(item: dict[str, Any]) -> tuple[str, list[str]]:
    found = errors(findings(item))
    refused = any(f.rule in VALIDATION_RULES for f in found)
    flags = sorted({f.rule for f in found if f.rule in POLICY_RULES})
    unexplained = {f.rule for f in found} - VALIDATION_RULES - POLICY_RULES.keys()
    assert not unexplained, f"{item['file']}: findings of no known rule: {unexplained}"
    return ("refused" if refused else "accepted"), flags
