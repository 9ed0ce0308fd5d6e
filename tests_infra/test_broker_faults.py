"""Fault test: SIGKILL one node of a 3-node cluster; its quorum queue keeps working through the survivors.

Runs on a cluster of its own (built with envfixtures.drivers.rabbitmq.cluster in a tmp dir), never on the
session's broker, and stops it afterwards, checking that none of its processes or listeners survive. Its processes
are journaled in the environment, so a run killed mid-test leaves them to the teardown or `envfixtures reap`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pika
import psutil
import pytest

from envfixtures.core.errors import WaitTimeout
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq import cluster as rmq

QUEUE = "faults.orders"
COMPONENT = "broker-faults"  # the journal key of its processes: not a component, but stopped like one


@pytest.fixture
def own_cluster(tmp_path: Path, envfixtures_env) -> Iterator[rmq.Cluster]:
    """A 3-node cluster of the test's own, its processes journaled in the environment and carrying its marker:
    if the run dies mid-test (SIGKILL), the environment's teardown or `envfixtures reap` stops them."""
    spec = rmq.plan(tmp_path / "cluster", 3, prefix="faults")
    envfixtures_env.materialize()

    def spawn(name, argv, **kwargs):  # noqa: ANN001, ANN202 - the one spawner shape (core.processes)
        return envfixtures_env.spawn(COMPONENT, name, argv, **kwargs)

    cluster = rmq.Cluster(spec, spawn)
    try:
        cluster.start(timeout=180)
        yield cluster
    finally:
        cluster.stop()
        mine = [p for p in envfixtures_env.journaled_processes(COMPONENT) if p.record.alive()]
        assert mine == [], "processes of the fault-test cluster survived its stop"
        ports = [spec.epmd_port] + [p for n in spec.nodes for p in (n.amqp_port, n.management_port, n.dist_port)]
        try:  # a listening socket closes with its last holder; bounded, not a sleep
            wait_for(lambda: not [p for p in ports if _listening(p)], what="the cluster's ports closed", timeout=5)
        except WaitTimeout:
            listening = [p for p in ports if _listening(p)]
            raise AssertionError(f"ports still listening after stop: {_holders(listening)}") from None


def _holders(ports: list[int]) -> list[str]:
    """Each port with the process that listens on it (evidence for a leak)."""
    out = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port in ports:
            try:
                proc = psutil.Process(conn.pid) if conn.pid else None
                who = f"pid {conn.pid} {' '.join(proc.cmdline())[:160]} (pgid {os.getpgid(conn.pid)})" if proc else "?"
            except (psutil.Error, OSError):
                who = f"pid {conn.pid} (gone)"
            out.append(f"{conn.laddr.port}: {who}")
    return out or [str(p) for p in ports]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((rmq.LOOPBACK, port)) == 0


def _channel(spec: rmq.ClusterSpec, node: rmq.NodeSpec):
    params = pika.ConnectionParameters(
        rmq.LOOPBACK,
        node.amqp_port,
        "/",
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


def test_broker_quorum_queue_survives_sigkill_of_its_leader(own_cluster: rmq.Cluster) -> None:
    spec = own_cluster.spec
    conn, ch = _channel(spec, spec.nodes[0])
    ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    before = [f"before-{i}".encode() for i in range(20)]
    for body in before:
        assert _publish(ch, body)
    conn.close()

    mgmt = spec.management(0)
    leader = wait_for(lambda: mgmt.queue("/", QUEUE).get("leader"), what="quorum queue leader", timeout=15)
    members = mgmt.queue("/", QUEUE)["members"]
    mgmt.close()
    assert sorted(members) == sorted(n.name for n in spec.nodes)

    own_cluster.kill_node(leader)  # SIGKILL to the node's whole process group

    survivor = next(n for n in spec.nodes if n.name != leader)
    after = [f"after-{i}".encode() for i in range(5)]

    # Right after the kill a publish is nacked until the survivors elect a new leader (about 1 s), and
    # the channel that saw the nack keeps nacking: retry, bounded, on a fresh connection each time.
    def publish_first() -> tuple | None:
        conn, ch = _channel(spec, survivor)
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
    problems = rmq.health_problems(health.nodes(), [n.name for n in spec.nodes])
    health.close()
    assert problems == [f"node {leader} is not running"], problems
