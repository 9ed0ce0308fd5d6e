"""The live-vs-desired diff (readable lines, drift reported) and the routing model, without a broker."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from envfixtures.drivers.rabbitmq import definitions as defs
from envfixtures.drivers.rabbitmq import topology

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "rabbitmq" / "definitions.json"


@pytest.fixture
def desired() -> defs.Definitions:
    return defs.load(TEMPLATE)


def live_from(d: defs.Definitions) -> topology.LiveTopology:
    """What the management API would return for a vhost holding exactly ``d``."""
    queues = {}
    for name, q in d.queues.items():
        queues[name] = {
            "name": name,
            "type": defs.queue_type(q),
            "durable": q.get("durable", True),
            "auto_delete": q.get("auto_delete", False),
            "arguments": dict(q.get("arguments") or {}),
            "policy": defs.effective_policy(d.policies, name) or "",
        }
    exchanges = {
        n: {"name": n, "type": e["type"], "durable": True, "auto_delete": False, "internal": False, "arguments": {}}
        for n, e in d.exchanges.items()
    }
    bindings = [dict(b, vhost="ef", properties_key="x") for b in d.bindings]
    policies = {n: dict(p, vhost="ef") for n, p in d.policies.items()}
    return topology.LiveTopology(exchanges, queues, bindings, policies)


def test_equal_topologies_have_no_diff(desired: defs.Definitions) -> None:
    assert topology.diff(desired, live_from(desired)) == []
    assert topology.describe([]) == "no difference"


def test_each_kind_of_difference_is_one_readable_line(desired: defs.Definitions) -> None:
    live = live_from(desired)
    live.queues["orders.created"]["type"] = "classic"
    live.queues["orders.fulfilled"]["arguments"]["x-dead-letter-routing-key"] = "elsewhere"
    live.queues["payments.captured"]["policy"] = ""
    del live.queues["notifications.email.dlq"]
    live.exchanges["platform.dlx"]["type"] = "fanout"
    live.bindings.pop(0)
    live.policies["dead-letter-queues"]["priority"] = 0
    lines = topology.diff(desired, live)
    assert "queue 'orders.created': type is 'classic', declared 'quorum'" in lines
    assert (
        "queue 'orders.fulfilled': argument x-dead-letter-routing-key is 'elsewhere', declared 'orders.fulfilled'"
        in lines
    )
    assert "queue 'payments.captured': policy in effect is None, declared 'work-queues'" in lines
    assert "missing queue 'notifications.email.dlq'" in lines
    assert "exchange 'platform.dlx': type is 'fanout', declared 'direct'" in lines
    assert "missing binding 'platform.events' -> queue 'orders.created' (routing key 'order.created')" in lines
    assert "policy 'dead-letter-queues': priority is 0, declared 1" in lines
    assert len(lines) == 7, lines
    assert topology.describe(lines).count("\n") == 7


def test_undeclared_objects_are_drift(desired: defs.Definitions) -> None:
    live = live_from(desired)
    live.queues["tmp.debug"] = {
        "name": "tmp.debug",
        "type": "classic",
        "durable": False,
        "auto_delete": True,
        "arguments": {},
        "policy": "",
    }
    live.exchanges["legacy"] = {"name": "legacy", "type": "fanout"}
    live.bindings.append(
        {
            "source": "platform.events",
            "destination": "tmp.debug",
            "destination_type": "queue",
            "routing_key": "#",
            "arguments": {},
        }
    )
    live.policies["manual"] = {
        "name": "manual",
        "pattern": ".*",
        "apply-to": "all",
        "priority": 0,
        "definition": {"max-length": 1},
    }
    lines = topology.diff(desired, live)
    assert sorted(lines) == sorted(
        [
            "drift: queue 'tmp.debug' exists but is not declared",
            "drift: exchange 'legacy' exists but is not declared",
            "drift: binding 'platform.events' -> queue 'tmp.debug' (routing key '#') exists but is not declared",
            "drift: policy 'manual' exists but is not declared",
        ]
    )


def test_undeclared_argument_is_reported(desired: defs.Definitions) -> None:
    live = live_from(desired)
    live.queues["orders.created.dlq"]["arguments"]["x-max-length"] = 5
    assert topology.diff(desired, live) == ["queue 'orders.created.dlq': argument x-max-length=5 is not declared"]


def test_diff_of_ten_thousand_queues_is_fast(desired: defs.Definitions) -> None:
    import time

    raw = copy.deepcopy(desired.raw)
    raw["queues"] += [
        {"name": f"bulk.{i}", "durable": True, "auto_delete": False, "arguments": {}} for i in range(10_000)
    ]
    big = defs.validate(raw, TEMPLATE)
    live = live_from(big)
    t0 = time.perf_counter()
    assert topology.diff(big, live) == []
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(
    "pattern,key,expected",
    [
        ("orders.created", "orders.created", True),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.created.eu", False),
        ("orders.#", "orders", True),
        ("orders.#", "orders.created.eu", True),
        ("#", "", True),
        ("*.failed", "payments.failed", True),
        ("payments.*.failed", "payments.card.failed", True),
        ("payments.*.failed", "payments.failed", False),
        ("#.failed", "a.b.failed", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topology.topic_matches(pattern, key) is expected


def test_route_follows_bindings_and_sample_keys(desired: defs.Definitions) -> None:
    assert topology.route(desired, "platform.events", "order.fulfilled") == {"orders.fulfilled", "notifications.email"}
    assert topology.route(desired, "platform.events", "unknown.event") == set()
    wild = next(b for b in desired.bindings if "*" in b["routing_key"])
    key = topology.sample_routing_key(wild, "topic")
    assert "*" not in key and topology.route(desired, "platform.events", key) == {wild["destination"]}
