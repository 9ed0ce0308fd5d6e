"""Load and validate RabbitMQ definitions the way RabbitMQ's definitions import reads them.

Hand-written because no maintained library validates definitions: RabbitMQ publishes no schema, the import is
Erlang code (``rabbit_definitions.erl``), and this follows it. Two shapes, as RabbitMQ has:

- *whole-broker* (``GET /api/definitions``, boot-time import): ``users``, ``vhosts``, ``permissions``,
  ``topic_permissions``, ``global_parameters``, and queues, exchanges, bindings, policies and parameters each
  carrying its ``vhost``. RabbitMQ refuses such a file when a queue, exchange or binding has no ``vhost``.
- *per-vhost* (``GET /api/definitions/<vhost>``, imported with ``POST /api/definitions/<vhost>``, as the
  topology component does): ``exchanges``, ``queues``, ``bindings``, ``policies``, ``parameters``, no vhost.

Both may carry ``rabbit_version``, ``rabbitmq_version``, ``product_name``, ``product_version``. Other keys are
ignored by the import (a warning). As the import does: names starting with ``amq.`` and the default exchange
are skipped (a warning; a binding from a skipped, non-built-in exchange then fails), built-in ``amq.*``
exchanges are always there, plugin exchange types need their plugin.

Every problem is a :class:`Problem` with the JSON path of the entry (``$.bindings[3].source``) and a rule id:
``rabbitmq-definitions`` when RabbitMQ would refuse the file, a policy rule of :mod:`envfixtures.rules.policy`
(dead-letter exchanges declared, policies matching something, no ties, names declared once) when it would
accept it but this project does not. :func:`load` raises the first refusing problem, saying how many more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfixtures.core.errors import TemplateError

RULE = "rabbitmq-definitions"
ERROR, WARNING = "error", "warning"

CORE_EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers", "x-local-random", "x-modulus-hash")
#: Exchange type -> the plugin that registers it.
PLUGIN_EXCHANGE_TYPES = {
    "x-consistent-hash": "rabbitmq_consistent_hash_exchange",
    "x-delayed-message": "rabbitmq_delayed_message_exchange",
    "x-random": "rabbitmq_random_exchange",
    "x-recent-history": "rabbitmq_recent_history_exchange",
    "x-jms-topic": "rabbitmq_jms_topic_exchange",
    "x-federation-upstream": "rabbitmq_federation",
    "x-lvc": "rabbitmq_lvc_exchange",
    "x-message-deduplication": "rabbitmq_message_deduplication",
}
EXCHANGE_TYPES = CORE_EXCHANGE_TYPES  # kept for callers of the old name
#: Exchanges every vhost has; exports never list them.
BUILTIN_EXCHANGES = frozenset(
    {"amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic", "amq.rabbitmq.trace", "amq.rabbitmq.log"}
)
QUEUE_TYPES = ("classic", "quorum", "stream")
APPLY_TO = ("queues", "exchanges", "all", "classic_queues", "quorum_queues", "streams")
#: Sections of a per-vhost file (the ones ``POST /api/definitions/<vhost>`` imports).
SECTIONS = ("exchanges", "queues", "bindings", "policies")
VHOST_SECTIONS = (*SECTIONS, "parameters")
#: Sections only a whole-broker import reads.
BROKER_SECTIONS = ("users", "vhosts", "permissions", "topic_permissions", "global_parameters")
META_KEYS = ("rabbit_version", "rabbitmq_version", "product_name", "product_version")
IGNORED_KEYS = META_KEYS
#: Sections whose entries a whole-broker import places by their ``vhost`` (refused without one).
PLACED = ("exchanges", "queues", "bindings")


@dataclass(frozen=True)
class Problem:
    where: str
    message: str
    rule: str = RULE
    severity: str = ERROR


@dataclass(frozen=True)
class Definitions:
    """A validated definitions file: the raw document plus lookups by name (of a per-vhost file)."""

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
        """The document to POST to ``/api/definitions/VHOST`` (the four sections, ``parameters`` if any)."""
        body = {section: self.raw[section] for section in SECTIONS}
        if self.raw.get("parameters"):
            body["parameters"] = self.raw["parameters"]
        return body


def queue_type(queue: dict[str, Any]) -> str:
    return str((queue.get("arguments") or {}).get("x-queue-type", "classic"))


def policy_applies(policy: dict[str, Any], kind: str, qtype: str | None = None) -> bool:
    """Whether ``policy`` applies to objects of ``kind`` ("queues" or "exchanges"; a queue of ``qtype``)."""
    apply_to = policy.get("apply-to", "all")
    if apply_to in (kind, "all"):
        return True
    typed = {"classic_queues": "classic", "quorum_queues": "quorum", "streams": "stream"}
    return kind == "queues" and apply_to in typed and (qtype is None or typed[apply_to] == qtype)


def effective_policy(
    policies: dict[str, dict[str, Any]], name: str, kind: str = "queues", qtype: str | None = None
) -> str | None:
    """The policy RabbitMQ applies to the object ``name``: the matching one of highest priority.

    ``qtype``: the queue's type, so that a policy applying to one type of queue only is left out for the others.
    """
    matching = [p for p in policies.values() if policy_applies(p, kind, qtype) and re.search(p["pattern"], name)]
    if not matching:
        return None
    return max(matching, key=lambda p: p.get("priority", 0))["name"]


# ---------------------------------------------------------------------------- entry points


def read(path: Path) -> Any:
    """The parsed JSON of ``path``; :class:`TemplateError` when it cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TemplateError(path, "$", f"cannot read the definitions file: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(path, f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}") from None


def load(
    path: Path,
    *,
    plugins: Iterable[str] | None = None,
    disabled: Iterable[str] = (),
    import_as: str = "auto",
) -> Definitions:
    """Read and validate ``path``; raise TemplateError(path, JSON path, problem) at the first refusing problem.

    ``plugins``: the plugins the broker enables (default: the environment's, see
    :data:`envfixtures.drivers.rabbitmq.ENABLED_PLUGINS`); ``disabled``: policy rules turned off.
    """
    return validate(read(path), path, plugins=plugins, disabled=disabled, import_as=import_as)


def validate(
    doc: Any,
    path: Path,
    *,
    plugins: Iterable[str] | None = None,
    disabled: Iterable[str] = (),
    import_as: str = "auto",
) -> Definitions:
    """Validate an already parsed document (see :func:`load`)."""
    from envfixtures.drivers.rabbitmq import ENABLED_PLUGINS

    found = problems(doc, plugins=ENABLED_PLUGINS if plugins is None else plugins, import_as=import_as)
    off = set(disabled)
    refusing = [p for p in found if p.severity == ERROR and p.rule not in off]
    if refusing:
        first = refusing[0]
        more = f" (and {len(refusing) - 1} more)" if len(refusing) > 1 else ""
        rule = "" if first.rule == RULE else f" [{first.rule}]"
        raise TemplateError(path, first.where, f"{first.message}{rule}{more}")
    raw = {s: list(doc.get(s) or []) for s in VHOST_SECTIONS}
    return Definitions(Path(path), {**doc, **raw})


def problems(doc: Any, *, plugins: Iterable[str] | None = None, import_as: str = "auto") -> list[Problem]:
    """Every problem of a parsed definitions document.

    ``plugins``: the enabled plugins, or ``None`` when unknown (a plugin exchange type is then a warning saying
    which plugin it needs). ``import_as``: ``vhost`` (``POST /api/definitions/<vhost>``), ``broker``
    (whole-broker import), or ``auto``: whole-broker when the file has a whole-broker section or any entry
    carries a ``vhost``.
    """
    return _Checker(doc, None if plugins is None else frozenset(plugins), import_as).run()


# ---------------------------------------------------------------------------- the checks


class _Checker:
    def __init__(self, doc: Any, plugins: frozenset[str] | None, import_as: str) -> None:
        self.doc = doc
        self.plugins = plugins
        self.import_as = import_as
        self.out: list[Problem] = []

    def add(self, where: str, message: str, rule: str = RULE, severity: str = ERROR) -> None:
        self.out.append(Problem(where, message, rule, severity))

    def run(self) -> list[Problem]:
        doc = self.doc
        if not isinstance(doc, dict):
            self.add("$", "the definitions must be a JSON object (of exchanges, queues, bindings, policies ...)")
            return self.out
        sections: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for key, value in doc.items():
            if key in META_KEYS:
                continue
            if key not in VHOST_SECTIONS and key not in BROKER_SECTIONS:
                self.add(f"$.{key}", "not a definitions key: RabbitMQ's import ignores it", severity=WARNING)
                continue
            if not isinstance(value, list):
                self.add(f"$.{key}", "must be a list")
                continue
            entries = []
            for i, entry in enumerate(value):
                if isinstance(entry, dict):
                    entries.append((i, entry))
                else:
                    self.add(f"$.{key}[{i}]", "must be an object")
            sections[key] = entries
        whole = self._whole_broker(doc, sections)
        if whole:
            self._broker_sections(sections)
        else:
            for key in BROKER_SECTIONS:
                if key in doc:
                    self.add(f"$.{key}", "a per-vhost import ignores this whole-broker section", severity=WARNING)
        by_vhost: dict[str, dict[str, list[tuple[int, dict[str, Any]]]]] = {}
        for section in VHOST_SECTIONS:
            for i, entry in sections.get(section, []):
                vhost = str(entry.get("vhost", "")) if whole else ""
                by_vhost.setdefault(vhost, {s: [] for s in VHOST_SECTIONS})[section].append((i, entry))
        for vhost_sections in by_vhost.values():
            self._vhost(vhost_sections)
        keys = list(doc)
        return sorted(self.out, key=lambda p: _order(p.where, keys))

    def _whole_broker(self, doc: dict[str, Any], sections: dict[str, list[tuple[int, dict[str, Any]]]]) -> bool:
        if self.import_as == "vhost":
            return False
        has_broker_keys = any(k in doc for k in BROKER_SECTIONS)
        # A per-vhost export (GET /api/definitions/<vhost>) still names the vhost in its policies and parameters
        # (RabbitMQ 3.10 does): only a placed entry (exchange, queue, binding) with a vhost makes it whole-broker.
        has_vhosts = any("vhost" in e for s in PLACED for _, e in sections.get(s, []))
        if self.import_as == "auto" and not (has_broker_keys or has_vhosts):
            return False
        orphans = [f"$.{s}[{i}]" for s in PLACED for i, e in sections.get(s, []) if "vhost" not in e]
        if orphans:
            key = next((k for k in BROKER_SECTIONS if k in doc), None)
            listed = ", ".join(orphans[:3]) + (" ..." if len(orphans) > 3 else "")
            if key:
                self.add(
                    f"$.{key}",
                    f"whole-broker section {key!r} in a file whose entries carry no vhost ({listed}): a whole-broker "
                    f"import refuses the file, a per-vhost import ignores {key!r}",
                )
            else:
                self.add(
                    orphans[0],
                    f"as a whole-broker import RabbitMQ refuses the file: {listed} carry no vhost (a per-vhost "
                    "export: import it with POST /api/definitions/<vhost>)",
                )
        return True

    # ------------------------------------------------------------ whole-broker sections

    def _broker_sections(self, sections: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        for section in ("users", "vhosts", "global_parameters"):
            for i, entry in sections.get(section, []):
                if not isinstance(entry.get("name"), str) or not entry["name"]:
                    self.add(f"$.{section}[{i}].name", "a non-empty string name is required")
        for i, user in sections.get("users", []):
            limits = user.get("limits")
            for key, value in (limits or {}).items() if isinstance(limits, dict) else ():
                if isinstance(value, bool) or not isinstance(value, int):
                    self.add(f"$.users[{i}].limits.{key}", f"a user limit must be an integer, not {value!r}")
        for section in ("permissions", "topic_permissions"):
            for i, perm in sections.get(section, []):
                for key in ("user", "vhost"):
                    if not isinstance(perm.get(key), str):
                        self.add(f"$.{section}[{i}].{key}", "a string is required")
                for key in ("configure", "write", "read"):
                    if isinstance(perm.get(key), str):
                        self._regex(perm[key], f"$.{section}[{i}].{key}")

    # ------------------------------------------------------------ one vhost

    def _vhost(self, s: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        exchanges = self._names(s["exchanges"], "exchanges")
        queues = self._names(s["queues"], "queues")
        self._names(s["policies"], "policies")
        # What exists after the import: declared names the import does not skip, and the built-in exchanges.
        live_exchanges = {n for n in exchanges if not n.startswith("amq.") and n} | BUILTIN_EXCHANGES
        live_queues = {n for n in queues if not n.startswith("amq.")}
        queue_types = {e["name"]: queue_type(e) for _, e in s["queues"] if isinstance(e.get("name"), str)}

        for i, ex in s["exchanges"]:
            self._exchange(i, ex, live_exchanges)
        for i, q in s["queues"]:
            self._queue(i, q, live_exchanges)
        self._bindings(s["bindings"], live_exchanges, live_queues)
        self._policies(s["policies"], live_exchanges, live_queues, queue_types)
        for i, param in s["parameters"]:
            for key in ("component", "name"):
                if not isinstance(param.get(key), str) or not param[key]:
                    self.add(f"$.parameters[{i}].{key}", "a non-empty string is required")
            if "value" not in param:
                self.add(f"$.parameters[{i}].value", "a value is required")

    def _names(self, entries: list[tuple[int, dict[str, Any]]], section: str) -> set[str]:
        names: dict[str, int] = {}
        for i, entry in entries:
            name = entry.get("name")
            where = f"$.{section}[{i}].name"
            if not isinstance(name, str) or (not name and section != "exchanges"):
                self.add(where, "a non-empty string name is required")
                continue
            if section == "exchanges" and name == "":
                self.add(where, "the default exchange is not imported (RabbitMQ skips it)", severity=WARNING)
                continue
            if section != "policies" and name.startswith("amq."):
                self.add(
                    where,
                    f"{name!r}: RabbitMQ's import skips names starting with 'amq.' (reserved); it will not exist",
                    severity=WARNING,
                )
            if len(name.encode()) > 255:
                self.add(where, "names are limited to 255 bytes")
            if name in names:
                self.add(
                    where,
                    f"{name!r} is declared twice (first at $.{section}[{names[name]}]); the import keeps the first",
                    rule="rabbitmq-unique-names",
                )
                continue
            names[name] = i
        return set(names)

    def _exchange(self, i: int, ex: dict[str, Any], live_exchanges: set[str]) -> None:
        where = f"$.exchanges[{i}]"
        etype = ex.get("type")
        if etype in PLUGIN_EXCHANGE_TYPES:
            plugin = PLUGIN_EXCHANGE_TYPES[etype]
            if self.plugins is None:
                self.add(f"{where}.type", f"exchange type {etype!r} needs plugin {plugin} enabled", severity=WARNING)
            elif plugin not in self.plugins:
                enabled = ", ".join(sorted(self.plugins)) or "none"
                self.add(
                    f"{where}.type",
                    f"exchange type {etype!r} needs plugin {plugin}, which the environment does not enable "
                    f"(enabled: {enabled})",
                )
        elif etype not in CORE_EXCHANGE_TYPES:
            known = ", ".join(CORE_EXCHANGE_TYPES + tuple(PLUGIN_EXCHANGE_TYPES))
            self.add(f"{where}.type", f"unknown exchange type {etype!r}; RabbitMQ knows {known}")
        self._arguments(ex, where)
        self._dlx(ex.get("arguments"), "x-dead-letter-exchange", live_exchanges, f"{where}.arguments")

    def _queue(self, i: int, q: dict[str, Any], live_exchanges: set[str]) -> None:
        where = f"$.queues[{i}]"
        self._arguments(q, where)
        qtype = queue_type(q)
        if qtype not in QUEUE_TYPES:
            self.add(
                f"{where}.arguments.x-queue-type", f"queue type must be one of {', '.join(QUEUE_TYPES)}, not {qtype!r}"
            )
        if qtype in ("quorum", "stream") and (q.get("durable") is False or q.get("auto_delete")):
            self.add(where, f"a {qtype} queue must be durable and not auto-delete")
        self._dlx(q.get("arguments"), "x-dead-letter-exchange", live_exchanges, f"{where}.arguments")

    def _bindings(
        self, entries: list[tuple[int, dict[str, Any]]], live_exchanges: set[str], live_queues: set[str]
    ) -> None:
        seen: dict[tuple, int] = {}
        for i, b in entries:
            where = f"$.bindings[{i}]"
            source = b.get("source")
            if not isinstance(source, str) or source == "":
                self.add(f"{where}.source", "a binding needs a source exchange (the default exchange cannot be bound)")
            elif source not in live_exchanges:
                skipped = " (the import skips 'amq.' names)" if source.startswith("amq.") else ""
                self.add(f"{where}.source", f"exchange {source!r} is not declared in $.exchanges{skipped}")
            dtype = b.get("destination_type")
            if dtype not in ("queue", "exchange"):
                self.add(f"{where}.destination_type", f"must be 'queue' or 'exchange', not {dtype!r}")
            else:
                dest = b.get("destination")
                declared = live_queues if dtype == "queue" else live_exchanges
                if dest not in declared:
                    self.add(f"{where}.destination", f"{dtype} {dest!r} is not declared in $.{dtype}s")
            if not isinstance(b.get("routing_key", ""), str):
                self.add(f"{where}.routing_key", "must be a string")
            self._arguments(b, where)
            key = binding_key(b)
            if key in seen:
                self.add(
                    where,
                    f"the same binding is declared twice (first at $.bindings[{seen[key]}])",
                    rule="rabbitmq-duplicate-binding",
                )
            seen.setdefault(key, i)

    def _policies(
        self,
        entries: list[tuple[int, dict[str, Any]]],
        live_exchanges: set[str],
        live_queues: set[str],
        queue_types: dict[str, str],
    ) -> None:
        by_priority: dict[tuple[str, int], str] = {}
        for i, p in entries:
            where = f"$.policies[{i}]"
            pattern = p.get("pattern")
            regex = self._regex(pattern, f"{where}.pattern") if isinstance(pattern, str) else None
            if not isinstance(pattern, str):
                self.add(f"{where}.pattern", "must be a regular expression string")
            apply_to = p.get("apply-to", "all")
            if apply_to not in APPLY_TO:
                self.add(f"{where}.apply-to", f"must be one of {', '.join(APPLY_TO)}, not {apply_to!r}")
            definition = p.get("definition")
            if not isinstance(definition, dict) or not definition:
                self.add(f"{where}.definition", "must be a non-empty object")
                definition = {}
            priority = p.get("priority", 0)
            if isinstance(priority, bool) or not isinstance(priority, int):
                self.add(f"{where}.priority", "must be an integer")
                priority = 0
            self._dlx(definition, "dead-letter-exchange", live_exchanges, f"{where}.definition")
            if regex is None or apply_to not in APPLY_TO:
                continue
            targets = [n for n in live_queues if policy_applies(p, "queues", queue_types.get(n)) and regex.search(n)]
            exchanges = [n for n in live_exchanges - BUILTIN_EXCHANGES if regex.search(n)]
            if not targets and not (apply_to in ("exchanges", "all") and exchanges):
                kind = "exchange" if apply_to == "exchanges" else "queue"
                message = f"pattern {pattern!r} matches no declared {kind}"
                self.add(f"{where}.pattern", message, "rabbitmq-policy-unused")
            name = p.get("name")
            for queue in sorted(targets):
                other = by_priority.setdefault((queue, priority), str(name))
                if other != str(name):
                    self.add(
                        f"{where}.priority",
                        f"policies {other!r} and {name!r} both match queue {queue!r} "
                        f"with priority {priority}; RabbitMQ would pick one arbitrarily",
                        "rabbitmq-policy-tie",
                    )
                    break

    # ------------------------------------------------------------ helpers

    def _regex(self, pattern: str, where: str) -> re.Pattern[str] | None:
        try:
            return re.compile(pattern)
        except re.error as exc:
            self.add(where, f"not a valid regular expression: {exc}")
            return None

    def _arguments(self, entry: dict[str, Any], where: str) -> None:
        if not isinstance(entry.get("arguments") or {}, dict):
            self.add(f"{where}.arguments", "must be an object")

    def _dlx(self, args: Any, key: str, live_exchanges: set[str], where: str) -> None:
        if isinstance(args, dict) and key in args and args[key] != "" and args[key] not in live_exchanges:
            self.add(
                f"{where}.{key}",
                f"dead-letter exchange {args[key]!r} is not declared in $.exchanges",
                "rabbitmq-dlx-declared",
            )


def binding_key(b: dict[str, Any]) -> tuple:
    """What identifies a binding (RabbitMQ has no binding names)."""
    args = json.dumps(b.get("arguments") or {}, sort_keys=True)
    return (b.get("source"), b.get("destination_type", "queue"), b.get("destination"), b.get("routing_key", ""), args)


def _order(where: str, keys: list[str]) -> tuple:
    """Problems in document order: by the section's place in the file, then the entry's index."""
    m = re.match(r"\$\.([A-Za-z_-]+)(?:\[(\d+)\])?", where)
    if not m:
        return (-1, -1)
    section = keys.index(m.group(1)) if m.group(1) in keys else len(keys)
    return (section, int(m.group(2) or -1))
