"""Load and validate a vhost's RabbitMQ definitions file before anything is built.

The file has the shape of ``GET /api/definitions/VHOST`` (vhost-scoped: no ``vhost`` keys): lists of
``exchanges``, ``queues``, ``bindings`` and ``policies``. Every problem is a
:class:`~envfixtures.core.errors.TemplateError` naming the file and the JSON path of the offending entry,
like ``$.bindings[3].source``. The checks: names well-formed and declared once, every binding's source
and destination declared, every dead-letter exchange declared, every policy pattern matching at least
one object it applies to, and no two policies of equal priority competing for the same queue.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfixtures.core.errors import TemplateError

EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")
QUEUE_TYPES = ("classic", "quorum", "stream")
APPLY_TO = ("queues", "exchanges", "all")
SECTIONS = ("exchanges", "queues", "bindings", "policies")
IGNORED_KEYS = ("rabbit_version", "rabbitmq_version")


@dataclass(frozen=True)
class Definitions:
    """A validated definitions file: the raw document plus lookups by name."""

    path: Path
    raw: dict[str, Any]

    @property
    def exchanges(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.raw["exchanges"]}

    @property
    def queues(self) -> dict[str, dict[str, Any]]:
        return {q["name"]: q for q in self.raw["queues"]}

    @property
    def bindings(self) -> list[dict[str, Any]]:
        return self.raw["bindings"]

    @property
    def policies(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.raw["policies"]}

    def for_import(self) -> dict[str, Any]:
        """The document to POST to ``/api/definitions/VHOST`` (the four sections, defaults filled in)."""
        return {section: self.raw[section] for section in SECTIONS}


def queue_type(queue: dict[str, Any]) -> str:
    return str((queue.get("arguments") or {}).get("x-queue-type", "classic"))


def policy_applies(policy: dict[str, Any], kind: str) -> bool:
    """Whether ``policy`` applies to objects of ``kind`` ("queues" or "exchanges")."""
    return policy.get("apply-to", "all") in (kind, "all")


def effective_policy(policies: dict[str, dict[str, Any]], name: str, kind: str = "queues") -> str | None:
    """The policy RabbitMQ applies to the object ``name``: the matching one of highest priority."""
    matching = [p for p in policies.values() if policy_applies(p, kind) and re.search(p["pattern"], name)]
    if not matching:
        return None
    return max(matching, key=lambda p: p.get("priority", 0))["name"]


def load(path: Path) -> Definitions:
    """Read and validate ``path``; raise TemplateError(path, JSON path, problem) at the first problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TemplateError(path, "$", f"cannot read the definitions file: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(path, f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}") from None
    return validate(doc, path)


def validate(doc: Any, path: Path) -> Definitions:
    """Validate an already parsed document (see :func:`load`)."""

    def fail(where: str, problem: str) -> TemplateError:
        return TemplateError(path, where, problem)

    if not isinstance(doc, dict):
        raise fail("$", "the definitions must be a JSON object with exchanges, queues, bindings and policies")
    for key in doc:
        if key not in SECTIONS and key not in IGNORED_KEYS:
            raise fail(f"$.{key}", f"unexpected key; a vhost's definitions hold only {', '.join(SECTIONS)}")
    raw: dict[str, Any] = {}
    for section in SECTIONS:
        entries = doc.get(section, [])
        if not isinstance(entries, list):
            raise fail(f"$.{section}", "must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise fail(f"$.{section}[{i}]", "must be an object")
        raw[section] = entries

    exchanges = _names(raw, "exchanges", fail)
    queues = _names(raw, "queues", fail)
    _names(raw, "policies", fail)

    for i, ex in enumerate(raw["exchanges"]):
        where = f"$.exchanges[{i}]"
        if ex.get("type") not in EXCHANGE_TYPES:
            raise fail(
                f"{where}.type", f"exchange type must be one of {', '.join(EXCHANGE_TYPES)}, not {ex.get('type')!r}"
            )
        _check_arguments(ex, where, fail)
        _check_dlx(ex.get("arguments") or {}, "x-dead-letter-exchange", exchanges, f"{where}.arguments", fail)

    for i, q in enumerate(raw["queues"]):
        where = f"$.queues[{i}]"
        _check_arguments(q, where, fail)
        qtype = queue_type(q)
        if qtype not in QUEUE_TYPES:
            raise fail(
                f"{where}.arguments.x-queue-type", f"queue type must be one of {', '.join(QUEUE_TYPES)}, not {qtype!r}"
            )
        if qtype in ("quorum", "stream") and (q.get("durable") is False or q.get("auto_delete")):
            raise fail(where, f"a {qtype} queue must be durable and not auto-delete")
        _check_dlx(q.get("arguments") or {}, "x-dead-letter-exchange", exchanges, f"{where}.arguments", fail)

    seen_bindings: dict[tuple, int] = {}
    for i, b in enumerate(raw["bindings"]):
        where = f"$.bindings[{i}]"
        source = b.get("source")
        if not isinstance(source, str) or source == "":
            raise fail(f"{where}.source", "a binding needs a source exchange (the default exchange cannot be bound)")
        if source not in exchanges:
            raise fail(f"{where}.source", f"exchange {source!r} is not declared in $.exchanges")
        dtype = b.get("destination_type", "queue")
        if dtype not in ("queue", "exchange"):
            raise fail(f"{where}.destination_type", f"must be 'queue' or 'exchange', not {dtype!r}")
        dest = b.get("destination")
        declared = queues if dtype == "queue" else exchanges
        if dest not in declared:
            raise fail(f"{where}.destination", f"{dtype} {dest!r} is not declared in $.{dtype}s")
        if not isinstance(b.get("routing_key", ""), str):
            raise fail(f"{where}.routing_key", "must be a string")
        _check_arguments(b, where, fail)
        key = binding_key(b)
        if key in seen_bindings:
            raise fail(where, f"the same binding is declared twice (first at $.bindings[{seen_bindings[key]}])")
        seen_bindings[key] = i

    by_priority: dict[tuple[str, int], str] = {}
    for i, p in enumerate(raw["policies"]):
        where = f"$.policies[{i}]"
        pattern = p.get("pattern")
        if not isinstance(pattern, str):
            raise fail(f"{where}.pattern", "must be a regular expression string")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise fail(f"{where}.pattern", f"not a valid regular expression: {exc}") from None
        apply_to = p.get("apply-to", "all")
        if apply_to not in APPLY_TO:
            raise fail(f"{where}.apply-to", f"must be one of {', '.join(APPLY_TO)}, not {apply_to!r}")
        if not isinstance(p.get("definition"), dict) or not p["definition"]:
            raise fail(f"{where}.definition", "must be a non-empty object")
        if not isinstance(p.get("priority", 0), int):
            raise fail(f"{where}.priority", "must be an integer")
        _check_dlx(p["definition"], "dead-letter-exchange", exchanges, f"{where}.definition", fail)
        targets = [n for n in queues if policy_applies(p, "queues") and regex.search(n)]
        targets += [n for n in exchanges if apply_to == "exchanges" and regex.search(n)]
        if not targets:
            kind = "exchange" if apply_to == "exchanges" else "queue"
            raise fail(f"{where}.pattern", f"pattern {pattern!r} matches no declared {kind}")
        if policy_applies(p, "queues"):
            for name in targets:
                other = by_priority.setdefault((name, p.get("priority", 0)), p["name"])
                if other != p["name"]:
                    raise fail(
                        f"{where}.priority",
                        f"policies {other!r} and {p['name']!r} both match queue {name!r} "
                        f"with priority {p.get('priority', 0)}; RabbitMQ would pick one arbitrarily",
                    )
    return Definitions(path, raw)


def binding_key(b: dict[str, Any]) -> tuple:
    """What identifies a binding (RabbitMQ has no binding names)."""
    args = json.dumps(b.get("arguments") or {}, sort_keys=True)
    return (b["source"], b.get("destination_type", "queue"), b["destination"], b.get("routing_key", ""), args)


def _names(raw: dict[str, Any], section: str, fail: Any) -> set[str]:
    names: dict[str, int] = {}
    for i, entry in enumerate(raw[section]):
        name = entry.get("name")
        where = f"$.{section}[{i}].name"
        if not isinstance(name, str) or not name:
            raise fail(where, "a non-empty string name is required")
        if section != "policies" and name.startswith("amq."):
            raise fail(where, f"{name!r}: names starting with 'amq.' are reserved by RabbitMQ")
        if len(name.encode()) > 255:
            raise fail(where, "names are limited to 255 bytes")
        if name in names:
            raise fail(where, f"{name!r} is declared twice (first at $.{section}[{names[name]}])")
        names[name] = i
    return set(names)


def _check_arguments(entry: dict[str, Any], where: str, fail: Any) -> None:
    if not isinstance(entry.get("arguments", {}), dict):
        raise fail(f"{where}.arguments", "must be an object")


def _check_dlx(args: dict[str, Any], key: str, exchanges: set[str], where: str, fail: Any) -> None:
    if key in args and args[key] != "" and args[key] not in exchanges:
        raise fail(f"{where}.{key}", f"dead-letter exchange {args[key]!r} is not declared in $.exchanges")
