"""Fault test: SIGKILL the leader of a quorum queue on the environment's own broker; the queue keeps working through
the survivors and loses no message; the node is then started again and the cluster is whole.

It runs on the environment's broker, not on a cluster of its own (which cost a second 3-node start, competing for the
same two cores, during the build): at the end of the broker's use, alone. Its fixture holds the lock
``broker-in-use`` exclusively, every other test that needs the broker holds it shared (``conftest.py``), and it is
collected last, so it starts once every other test has been handed out. The queue is a vhost of its own, deleted
afterwards; the node it kills is not node 1, the one the platform's apps connect to (the queue is declared on the
last node with the ``client-local`` leader locator). The restarted node is journaled as the broker's, so the
environment's teardown (or ``envfixtures reap``) stops it like the others; a kept environment stays whole.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from envfixtures.core.facts import Facts
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq import cluster as rmq

QUEUE = "faults.orders"
BROKER_LOCK = "broker-in-use"  # conftest.BROKER_LOCK (conftest.py orders and locks by this fixture's name)

pytestmark = pytest.mark.fault


@pytest.fixture
def broker_fault_window(envfixtures_env, broker: Facts) -> Iterator[rmq.Cluster]:
    """The environment's broker as a :class:`~envfixtures.drivers.rabbitmq.cluster.Cluster`, held alone (no other
    test that needs the broker runs meanwhile), with a vhost of the test's own; afterwards every node runs again and
    the cluster is healthy, or the test errors."""
    if len(broker["nodes"]) < 3 or not broker.get("cluster_dir"):
        pytest.skip("needs a local broker of 3 nodes or more (a quorum survives one node's loss)")
    spec = rmq.load(Path(broker["cluster_dir"]), broker["admin_password"])

    def spawn(name, argv, **kwargs):  # noqa: ANN001, ANN202 - the one spawner shape (core.processes)
        return envfixtures_env.spawn("broker", name, argv, **kwargs)

    cluster = rmq.Cluster(spec, spawn)
    running = {p.name: p for p in envfixtures_env.journaled_processes("broker")}
    cluster.nodes = {n.name: running[n.name.split("@")[0]] for n in spec.nodes}
    vhost = f"faults-{secrets.token_hex(4)}"
    with envfixtures_env.lock(BROKER_LOCK, timeout=900, what="the broker's fault test (alone)"):
        mgmt = spec.management(0)
        try:
            mgmt.put_vhost(vhost)
            mgmt.put_permissions(vhost, spec.admin_user)
            cluster.fault_vhost = vhost  # type: ignore[attr-defined]
            yield cluster
        finally:
            for node in spec.nodes:  # restore: start whichever node the test left dead
                if not cluster.nodes[node.name].record.alive():
                    cluster.restart_node(node.name, timeout=120)
            problems = rmq.health_problems(mgmt.nodes(), [n.name for n in spec.nodes])
            mgmt.delete_vhost(vhost)
            mgmt.close()
            assert problems == [], f"the broker is not whole again after the fault test: {problems}"


def _channel(spec: rmq.ClusterSpec, node: rmq.NodeSpec, vhost: str):
    params = pika.ConnectionParameters(
        rmq.LOOPBACK,
        node.amqp_port,
        vhost,
        pika.PlainCredentials(spec.admin_user, spec.admin_password),
        connection_attempts=3,
        retry_delay=0.5,
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def _publish(ch, body: bytes) -> bool:
    """A confirmed publish; False when the broker nacked it (a quorum queue electing a new leader)."""
    try:
        ch.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        return True
    except (pika.exceptions.NackError, pika.exceptions.UnroutableError):
        return False


def test_broker_quorum_queue_survives_sigkill_of_its_leader(broker_fault_window: rmq.Cluster) -> None:
    cluster = broker_fault_window
    spec, vhost = cluster.spec, cluster.fault_vhost  # type: ignore[attr-defined]
    last = spec.nodes[-1]
    conn, ch = _channel(spec, last, vhost)
    arguments = {"x-queue-type": "quorum", "x-queue-leader-locator": "client-local"}
    ch.queue_declare(QUEUE, durable=True, arguments=arguments)
    before = [f"before-{i}".encode() for i in range(20)]
    for body in before:
        assert _publish(ch, body)
    conn.close()

    mgmt = spec.management(0)
    leader = wait_for(lambda: mgmt.queue(vhost, QUEUE).get("leader"), what="quorum queue leader", timeout=15)
    members = mgmt.queue(vhost, QUEUE)["members"]
    mgmt.close()
    assert sorted(members) == sorted(n.name for n in spec.nodes)
    assert leader != spec.nodes[0].name, f"the leader is on {leader}, the node the platform's apps use"

    cluster.kill_node(leader)  # SIGKILL to the node's whole process group
    assert not cluster.nodes[leader].record.alive()

    survivor = spec.nodes[0]
    after = [f"after-{i}".encode() for i in range(5)]

    # Right after the kill a publish is nacked until the survivors elect a new leader (about 1 s), and
    # the channel that saw the nack keeps nacking: retry, bounded, on a fresh connection each time.
    def publish_first() -> tuple | None:
        conn, ch = _channel(spec, survivor, vhost)
        if _publish(ch, after[0]):
            return conn, ch
        conn.close()
        return None

    conn, ch = wait_for(
        publish_first,
        what="a confirmed publish through the survivors",
        timeout=30,
        retry_on=(pika.exceptions.AMQPError,),
    )
    for body in after[1:]:
        assert _publish(ch, body)

    received = []

    def drain() -> bool:
        method, _, body = ch.basic_get(QUEUE, auto_ack=True)
        if method is not None:
            received.append(body)
        return len(received) >= len(before) + len(after)

    wait_for(drain, what="all messages back from the quorum queue", timeout=30, first_delay=0.01, max_delay=0.1)
    conn.close()
    assert received == before + after

    health = spec.management(survivor.index - 1)
    problems = wait_for(
        lambda: rmq.health_problems(health.nodes(), [n.name for n in spec.nodes]) or None,
        what=f"node 1 seeing {leader} down",
        timeout=30,
    )
    health.close()
    assert problems == [f"node {leader} is not running"], problems
