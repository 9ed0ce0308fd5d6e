"""Acme's queue topology (broker/definitions.json) in the environment's vhost: quorum queues, the ledger's TTL
policy, and routing through the topic, fanout and dead-letter exchanges.

Every message carries a unique id; a test acks only its own messages and puts back any other, so the tests
can run at the same time on several xdist workers.
"""

from __future__ import annotations

import uuid
from typing import Any

import pika
from acme_support import eventually

QUEUES = {
    "ledger.entries", "ledger.reversals", "storefront.invalidations", "audit.log",
    "ledger.entries.dead", "ledger.reversals.dead", "storefront.invalidations.dead", "audit.log.dead",
}  # fmt: skip
LEDGER_TTL = {"message-ttl": 86400000, "delivery-limit": 10}


def publish(ch: Any, exchange: str, routing_key: str) -> str:
    """Publish a persistent message (confirmed, mandatory: an unroutable one raises); its id."""
    msg_id = uuid.uuid4().hex
    ch.basic_publish(
        exchange, routing_key, b"{}", pika.BasicProperties(message_id=msg_id, delivery_mode=2), mandatory=True
    )
    return msg_id


def take(ch: Any, queue: str, msg_id: str, *, ack: bool = True) -> Any:
    """(method, properties) of our message in ``queue`` (acked if ``ack``) or None; every other one is put back."""
    found, others = None, []
    while True:
        method, props, _ = ch.basic_get(queue, auto_ack=False)
        if method is None:
            break
        if found is None and props.message_id == msg_id:
            found = (method, props)
            if ack:
                ch.basic_ack(method.delivery_tag)
        else:
            others.append(method.delivery_tag)
    for tag in others:
        ch.basic_nack(tag, requeue=True)
    return found


def reached(ch: Any, msg_id: str) -> set[str]:
    return {q for q in sorted(QUEUES) if take(ch, q, msg_id) is not None}


def test_queues_are_quorum_and_the_ledger_ttl_policy_applies(management: Any) -> None:
    def listed() -> dict[str, Any]:
        queues = {q["name"]: q for q in management("/api/queues/{vhost}")}
        return queues if all(queues.get(n, {}).get("policy") for n in ("ledger.entries", "ledger.reversals")) else {}

    queues = eventually(listed, what="the ledger queues listed with their policy", timeout=20)
    assert set(queues) == QUEUES
    assert {n: q["type"] for n, q in queues.items()} == dict.fromkeys(QUEUES, "quorum")
    for name in ("ledger.entries", "ledger.reversals"):
        assert queues[name]["policy"] == "ledger-ttl"
        assert queues[name]["effective_policy_definition"] == LEDGER_TTL
    assert queues["ledger.entries.dead"]["policy"] == "dead-letter-cap"
    assert not queues["audit.log"].get("policy")


def test_a_ledger_entry_reaches_ledger_entries_and_nothing_else(channel: Any) -> None:
    msg_id = publish(channel, "acme.events", "ledger.entry.posted")
    arrived = eventually(lambda: reached(channel, msg_id), what="the entry in a queue", timeout=10)
    arrived |= reached(channel, msg_id)
    assert arrived == {"ledger.entries"}


def test_a_broadcast_reaches_every_queue_bound_to_acme_broadcast(channel: Any) -> None:
    msg_id = publish(channel, "acme.broadcast", "any.key.at.all")
    arrived: set[str] = set()

    def both() -> bool:
        arrived.update(reached(channel, msg_id))
        return arrived >= {"storefront.invalidations", "audit.log"}

    eventually(both, what="the broadcast in storefront.invalidations and audit.log", timeout=10)
    arrived.update(reached(channel, msg_id))
    assert arrived == {"storefront.invalidations", "audit.log"}


def test_a_rejected_reversal_is_dead_lettered_through_acme_dead(channel: Any) -> None:
    msg_id = publish(channel, "acme.events", "ledger.reversal.refund")
    got = eventually(lambda: take(channel, "ledger.reversals", msg_id, ack=False), what="the reversal", timeout=10)
    channel.basic_reject(got[0].delivery_tag, requeue=False)
    _, props = eventually(lambda: take(channel, "ledger.reversals.dead", msg_id), what="it in the DLQ", timeout=15)
    [death, *_] = (props.headers or {}).get("x-death") or [None]
    assert death is not None, f"no x-death header: {props.headers}"
    assert (death["queue"], death["reason"], death["exchange"]) == ("ledger.reversals", "rejected", "acme.events")
