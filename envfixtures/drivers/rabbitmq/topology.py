"""A vhost's live topology: import the desired definitions, read what is there, and diff the two.

The live topology is read in bulk (one management call per kind of object), so verifying thousands
of queues costs a few requests, not one AMQP round trip per queue. The diff is a list of readable
lines; an object that exists but is not declared is reported as drift. This module also predicts
where a message goes (:func:`route`), which the topology suite checks against the real broker, and waits
until the declared policies show on the objects they match (:func:`wait_policies_applied`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from envfixtures.core.errors import WaitTimeout
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq.definitions import Definitions, binding_key, effective_policy, queue_type
from envfixtures.drivers.rabbitmq.management import Management, Transient

log = logging.getLogger(__name__)

QUEUE_COLUMNS = "name,type,durable,auto_delete,arguments,policy"
#: How long :func:`wait_policies_applied` waits for the declared policies to show on their objects.
POLICY_TIMEOUT = 30.0


@dataclass(frozen=True)
class LiveTopology:
    """What a vhost holds, as read from the management API (built-in exchanges left out)."""

    exchanges: dict[str, dict[str, Any]]
    queues: dict[str, dict[str, Any]]
    bindings: list[dict[str, Any]]
    policies: dict[str, dict[str, Any]]


def import_definitions(mgmt: Management, vhost: str, definitions: Definitions) -> None:
    """Create the declared exchanges, queues, bindings and policies in ``vhost`` in one call."""
    log.info(
        "importing %d exchanges, %d queues, %d bindings, %d policies into vhost %s",
        len(definitions.raw["exchanges"]),
        len(definitions.raw["queues"]),
        len(definitions.raw["bindings"]),
        len(definitions.raw["policies"]),
        vhost,
    )
    mgmt.import_definitions(vhost, definitions.for_import())


def expected_policies(definitions: Definitions) -> dict[tuple[str, str], str]:
    """(kind, name) -> the policy RabbitMQ should apply, for each declared queue and exchange a policy matches.

    Names starting with ``amq.`` are left out: the import skips them.
    """
    policies = definitions.policies
    expected: dict[tuple[str, str], str] = {}
    for name, q in definitions.queues.items():
        if not name.startswith("amq.") and (policy := effective_policy(policies, name, "queues", queue_type(q))):
            expected[("queue", name)] = policy
    for name in definitions.exchanges:
        if name and not name.startswith("amq.") and (policy := effective_policy(policies, name, "exchanges")):
            expected[("exchange", name)] = policy
    return expected


def policies_pending(
    expected: dict[tuple[str, str], str], queues: list[dict[str, Any]], exchanges: list[dict[str, Any]]
) -> list[str]:
    """The objects of ``expected`` whose live policy is not (yet) the expected one, one readable line each.

    ``queues`` and ``exchanges`` are the management API's listings (an object without a policy has no ``policy``).
    """
    live = {"queue": {q["name"]: q for q in queues}, "exchange": {e["name"]: e for e in exchanges}}
    lines = []
    for (kind, name), want in sorted(expected.items()):
        got = live[kind].get(name)
        if got is None:
            lines.append(f"{kind} {name!r} is not there, policy {want!r} expected")
        elif (got.get("policy") or None) != want:
            lines.append(f"{kind} {name!r} has policy {got.get('policy') or None!r}, expected {want!r}")
    return lines


def wait_policies_applied(
    mgmt: Management, vhost: str, definitions: Definitions, timeout: float = POLICY_TIMEOUT
) -> None:
    """Return once every declared queue and exchange a declared policy matches shows the policy RabbitMQ should
    apply; :class:`WaitTimeout` naming those that do not after ``timeout`` seconds."""
    expected = expected_policies(definitions)
    kinds = {kind for kind, _ in expected}
    pending: list[str] = []

    def applied() -> bool:
        queues = mgmt.queues(vhost, "name,policy") if "queue" in kinds else []
        exchanges = mgmt.exchanges(vhost) if "exchange" in kinds else []
        pending[:] = policies_pending(expected, queues, exchanges)
        return not pending

    if not expected:
        return
    try:
        wait_for(
            applied,
            what=f"policies in effect in vhost {vhost}",
            timeout=timeout,
            retry_on=(Transient,),
            first_delay=0.05,
        )
    except WaitTimeout as exc:
        if not pending:
            raise
        more = f"; and {len(pending) - 10} more" if len(pending) > 10 else ""
        raise WaitTimeout(
            f"policies of vhost {vhost} not in effect after {timeout:.0f}s: " + "; ".join(pending[:10]) + more
        ) from exc


def read_live(mgmt: Management, vhost: str) -> LiveTopology:
    """Read the vhost's exchanges, queues, bindings and policies: four bulk requests."""
    exchanges = {e["name"]: e for e in mgmt.exchanges(vhost) if e["name"] and not e["name"].startswith("amq.")}
    queues = {q["name"]: q for q in mgmt.queues(vhost, QUEUE_COLUMNS)}
    bindings = [b for b in mgmt.bindings(vhost) if b["source"]]  # "" = the default exchange's implicit bindings
    policies = {p["name"]: p for p in mgmt.policies(vhost)}
    return LiveTopology(exchanges, queues, bindings, policies)


def diff(desired: Definitions, live: LiveTopology) -> list[str]:
    """Differences between the declared and the live topology, one readable line each (empty: equal)."""
    lines: list[str] = []
    want_ex = desired.exchanges
    for name, ex in want_ex.items():
        got = live.exchanges.get(name)
        if got is None:
            lines.append(f"missing exchange {name!r}")
            continue
        for field, default in (("type", None), ("durable", True), ("auto_delete", False), ("internal", False)):
            _compare(lines, f"exchange {name!r}", field, ex.get(field, default), got.get(field))
        _compare_args(lines, f"exchange {name!r}", ex.get("arguments") or {}, got.get("arguments") or {})
    lines += [f"drift: exchange {n!r} exists but is not declared" for n in sorted(set(live.exchanges) - set(want_ex))]

    want_q = desired.queues
    policies = desired.policies
    for name, q in want_q.items():
        got = live.queues.get(name)
        if got is None:
            lines.append(f"missing queue {name!r}")
            continue
        what = f"queue {name!r}"
        _compare(lines, what, "type", queue_type(q), got.get("type"))
        _compare(lines, what, "durable", q.get("durable", True), got.get("durable"))
        _compare(lines, what, "auto_delete", q.get("auto_delete", False), got.get("auto_delete"))
        _compare_args(lines, what, q.get("arguments") or {}, got.get("arguments") or {})
        _compare(lines, what, "policy in effect", effective_policy(policies, name), got.get("policy") or None)
    lines += [f"drift: queue {n!r} exists but is not declared" for n in sorted(set(live.queues) - set(want_q))]

    want_b = {binding_key(b): b for b in desired.bindings}
    got_b = {binding_key(b): b for b in live.bindings}
    lines += [f"missing binding {_binding(k)}" for k in want_b if k not in got_b]
    lines += [f"drift: binding {_binding(k)} exists but is not declared" for k in got_b if k not in want_b]

    for name, p in policies.items():
        got = live.policies.get(name)
        if got is None:
            lines.append(f"missing policy {name!r}")
            continue
        for field, default in (("pattern", None), ("apply-to", "all"), ("priority", 0), ("definition", None)):
            _compare(lines, f"policy {name!r}", field, p.get(field, default), got.get(field))
    lines += [f"drift: policy {n!r} exists but is not declared" for n in sorted(set(live.policies) - set(policies))]
    return lines


def _compare(lines: list[str], what: str, field: str, want: Any, got: Any) -> None:
    if want != got:
        lines.append(f"{what}: {field} is {got!r}, declared {want!r}")


def _compare_args(lines: list[str], what: str, want: dict[str, Any], got: dict[str, Any]) -> None:
    # A classic queue declared without x-queue-type shows no such argument; the type is compared separately.
    want = {k: v for k, v in want.items() if k != "x-queue-type"}
    got = {k: v for k, v in got.items() if k != "x-queue-type"}
    for key in sorted(set(want) | set(got)):
        if key not in got:
            lines.append(f"{what}: argument {key} missing, declared {want[key]!r}")
        elif key not in want:
            lines.append(f"{what}: argument {key}={got[key]!r} is not declared")
        elif want[key] != got[key]:
            lines.append(f"{what}: argument {key} is {got[key]!r}, declared {want[key]!r}")


def _binding(key: tuple) -> str:
    source, dtype, dest, routing_key, args = key
    extra = f" arguments {args}" if args != "{}" else ""
    return f"{source!r} -> {dtype} {dest!r} (routing key {routing_key!r}{extra})"


# --- routing: where a message should go ------------------------------------------------------------------


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split(".") if key else [])


def route(definitions: Definitions, exchange: str, routing_key: str) -> set[str]:
    """The queues a message published to ``exchange`` with ``routing_key`` reaches (headers: unsupported)."""
    exchanges = definitions.exchanges
    reached: set[str] = set()
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        etype = exchanges[name]["type"]
        if etype == "headers":
            raise ValueError(f"routing through headers exchange {name!r} is not modelled")
        for b in definitions.bindings:
            if b["source"] != name:
                continue
            key = b.get("routing_key", "")
            if (
                etype == "fanout"
                or (etype == "direct" and key == routing_key)
                or (etype == "topic" and topic_matches(key, routing_key))
            ):
                if b.get("destination_type", "queue") == "queue":
                    reached.add(b["destination"])
                else:
                    visit(b["destination"])

    visit(exchange)
    return reached


def sample_routing_key(binding: dict[str, Any], exchange_type: str) -> str:
    """A concrete routing key that travels through ``binding`` (wildcards replaced by a word)."""
    key = binding.get("routing_key", "")
    if exchange_type != "topic":
        return key
    words = ["sample" if w in ("*", "#") else w for w in key.split(".")] if key else ["sample"]
    return ".".join(words)


def describe(lines: list[str]) -> str:
    """A diff as one block of text for an assertion message."""
    return "live topology differs from the definitions:\n  " + "\n  ".join(lines) if lines else "no difference"
