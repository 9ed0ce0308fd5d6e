"""The queue-topology suite: the live vhost equals templates/rabbitmq/definitions.json, and it routes.

Uses the session fixtures ``broker`` (cluster facts, admin credentials) and ``topology`` (the env's
vhost and application user). Messages carry a unique id; a test acks only its own messages and
requeues any other, so the tests can run at the same time on several xdist workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from envfixtures.core.errors import WaitTimeout
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq import cluster as rmq
from envfixtures.drivers.rabbitmq import definitions as defs
from envfixtures.drivers.rabbitmq import topology as topo
from envfixtures.drivers.rabbitmq.management import Management

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "rabbitmq" / "definitions.json"
DESIRED = defs.load(TEMPLATE)  # collection-time copy, for test ids; the tests use the file the env imported
DEAD_LETTERED = [n for n, q in DESIRED.queues.items() if "x-dead-letter-exchange" in (q.get("arguments") or {})]
QUORUM = [n for n, q in DESIRED.queues.items() if defs.queue_type(q) == "quorum"]


def _binding_id(b: dict) -> str:
    return f"{b['source']}->{b['destination']}:{b.get('routing_key', '')}"


@pytest.fixture(scope="module")
def desired(topology) -> defs.Definitions:
    return defs.load(Path(topology["definitions"]))


@pytest.fixture(scope="module")
def admin(broker) -> Iterator[Management]:
    client = Management(broker["management_url"], broker["admin_user"], broker["admin_password"])
    yield client
    client.close()


@pytest.fixture
def channel(amqp_parameters) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A channel of the application user on the env's vhost, with publisher confirms."""
    conn = pika.BlockingConnection(amqp_parameters)
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()


def publish(ch, exchange: str, routing_key: str) -> str:
    msg_id = uuid.uuid4().hex
    ch.basic_publish(
        exchange, routing_key, b"{}", pika.BasicProperties(message_id=msg_id, delivery_mode=2), mandatory=True
    )  # raises UnroutableError / NackError when not confirmed
    return msg_id


def take(ch, queue: str, msg_id: str, *, ack: bool = True):
    """Get ``queue``'s messages; return (method, properties) of ours (acked if ``ack``) or None; requeue others."""
    found = None
    others = []
    while True:
        method, props, _ = ch.basic_get(queue, auto_ack=False)
        if method is None:
            break
        if props.message_id == msg_id and found is None:
            found = (method, props)
            if ack:
                ch.basic_ack(method.delivery_tag)
        else:
            others.append(method.delivery_tag)
    for tag in others:  # one by one: a multiple nack would also take ours back when it is left unacked
        ch.basic_nack(tag, requeue=True)
    return found


def test_topology_live_equals_desired(admin: Management, topology, desired: defs.Definitions) -> None:
    lines = topo.diff(desired, topo.read_live(admin, topology["vhost"]))
    assert not lines, topo.describe(lines)


def arrivals(ch, desired: defs.Definitions, msg_id: str) -> set[str]:
    """The queues our message reached: found there, or found in a dead-letter queue whose x-death names the
    queue it came from (the platform's own consumer, e.g. the fulfilment worker, takes messages from its
    queue and rejects what is not an order: the trail in the DLQ proves where it was delivered)."""
    reached = set()
    for queue in desired.queues:
        got = take(ch, queue, msg_id)
        if got is None:
            continue
        deaths = (got[1].headers or {}).get("x-death") or []
        reached.add(deaths[-1]["queue"] if deaths else queue)
    return reached


@pytest.mark.parametrize("binding", DESIRED.bindings, ids=_binding_id)
def test_topology_binding_delivers_to_its_queue_and_nowhere_else(
    channel, desired: defs.Definitions, binding: dict, live_work_queues: None
) -> None:
    source_type = desired.exchanges[binding["source"]]["type"]
    key = topo.sample_routing_key(binding, source_type)
    expected = topo.route(desired, binding["source"], key)
    assert binding["destination"] in expected or binding.get("destination_type") == "exchange"
    msg_id = publish(channel, binding["source"], key)
    arrived: set[str] = set()

    def all_arrived() -> bool:
        arrived.update(arrivals(channel, desired, msg_id))
        return arrived >= expected

    try:
        wait_for(all_arrived, what=f"message {msg_id} in {sorted(expected)}", timeout=10)
    except WaitTimeout:
        pass  # the assertion below says what arrived where
    arrived.update(arrivals(channel, desired, msg_id))  # and nowhere else, after the fact
    assert arrived == expected, (
        f"published to {binding['source']!r} with key {key!r}: arrived in "
        f"{sorted(arrived)}, expected {sorted(expected)}"
    )


@pytest.mark.parametrize("queue", DEAD_LETTERED)
def test_topology_rejected_message_lands_in_dead_letter_queue(
    channel, desired: defs.Definitions, queue: str, live_work_queues: None
) -> None:
    args = desired.queues[queue]["arguments"]
    dlx, dl_key = args["x-dead-letter-exchange"], args.get("x-dead-letter-routing-key", queue)
    dlqs = topo.route(desired, dlx, dl_key)
    assert len(dlqs) == 1, f"{queue} dead-letters to {dlx}/{dl_key}, which reaches {sorted(dlqs)}"
    dlq = dlqs.pop()
    msg_id = publish(channel, "", queue)
    got = take(channel, queue, msg_id, ack=False)
    if got is not None:
        channel.basic_reject(got[0].delivery_tag, requeue=False)
    # else: the queue's own consumer (the platform's worker) took it first and rejected it: the same path.
    method, props = wait_for(lambda: take(channel, dlq, msg_id), what=f"rejected message in {dlq}", timeout=15)
    deaths = (props.headers or {}).get("x-death") or []
    assert deaths, f"message in {dlq} has no x-death header: {props.headers}"
    assert deaths[0]["queue"] == queue and deaths[0]["reason"] == "rejected", deaths[0]


@pytest.mark.parametrize("queue", QUORUM)
def test_topology_quorum_queue_has_a_member_on_every_node(admin: Management, broker, topology, queue: str) -> None:
    info = admin.queue(topology["vhost"], queue)
    assert info["type"] == "quorum"
    assert sorted(info.get("members") or []) == sorted(broker["nodes"]), info.get("members")
    assert sorted(info.get("online") or []) == sorted(broker["nodes"]), info.get("online")


def test_topology_cluster_all_nodes_running_no_partition_no_alarm(admin: Management, broker) -> None:
    problems = rmq.health_problems(admin.nodes(), broker["nodes"])
    assert not problems, "; ".join(problems)


def test_topology_app_user_is_confined_to_its_vhost(admin: Management, topology) -> None:
    perms = admin.user_permissions(topology["app_user"])
    assert [p["vhost"] for p in perms] == [topology["vhost"]]


def test_broker_has_no_guest_user(admin: Management, broker) -> None:
    users = admin.users()
    assert "guest" not in users and broker["admin_user"] in users
