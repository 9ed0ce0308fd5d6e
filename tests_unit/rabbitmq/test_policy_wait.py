"""The topology returns only once its policies are in effect: which objects still wait (fake listings), the wait
and the build against a stub management API, and the wait against a real one-node RabbitMQ."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envfixtures.components.topology import Topology
from envfixtures.core.config import PlatformConfig
from envfixtures.core.environment import Environment
from envfixtures.core.errors import WaitTimeout
from envfixtures.core.facts import Facts
from envfixtures.core.processes import find_marked, standalone_spawner
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq import cluster as rmq
from envfixtures.drivers.rabbitmq import definitions as defs
from envfixtures.drivers.rabbitmq import topology
from envfixtures.drivers.rabbitmq.management import Management

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "rabbitmq" / "definitions.json"
#: Over the template's two queue policies: one of higher priority on one queue, one on an exchange.
EXTRA_POLICIES = [
    {"name": "urgent", "pattern": "^orders\\.created$", "apply-to": "queues", "priority": 9,
     "definition": {"max-length": 10}},
    {"name": "events", "pattern": "^platform\\.events$", "apply-to": "exchanges", "priority": 0,
     "definition": {"alternate-exchange": "platform.dlx"}},
]  # fmt: skip


def definitions(tmp_path: Path, extra: list[dict] = EXTRA_POLICIES) -> defs.Definitions:
    doc = json.loads(TEMPLATE.read_text())
    doc["policies"] += extra
    path = tmp_path / f"definitions-{len(extra)}.json"
    path.write_text(json.dumps(doc))
    return defs.load(path)


def listings(d: defs.Definitions) -> tuple[list[dict], list[dict]]:
    """Queues and exchanges as the management API lists them once every policy is in effect."""
    queues = [{"name": n} for n in d.queues]
    for q in queues:
        if policy := defs.effective_policy(d.policies, q["name"]):
            q["policy"] = policy
    exchanges = [{"name": ""}, {"name": "amq.direct"}, {"name": "platform.dlx"}, {"name": "platform.events"}]
    exchanges[-1]["policy"] = "events"
    return queues, exchanges


# --- which objects still wait, on fake listings -----------------------------------------------------------


def test_the_expected_policy_of_each_matched_object(tmp_path: Path) -> None:
    expected = topology.expected_policies(definitions(tmp_path))
    assert expected[("queue", "orders.created")] == "urgent"  # the highest priority wins
    assert expected[("queue", "orders.fulfilled")] == "work-queues"
    assert expected[("queue", "orders.created.dlq")] == "dead-letter-queues"
    assert expected[("exchange", "platform.events")] == "events"
    assert ("queue", "notifications.email") not in expected  # no policy matches it: nothing to wait for
    assert ("exchange", "platform.dlx") not in expected
    assert len(expected) == 8


def test_a_policy_for_one_queue_type_is_not_awaited_on_the_others(tmp_path: Path) -> None:
    classic_only = {"name": "classic-only", "pattern": "^orders\\.", "apply-to": "classic_queues", "priority": 5,
                    "definition": {"max-length": 1}}  # fmt: skip
    expected = topology.expected_policies(definitions(tmp_path, [classic_only]))
    assert expected[("queue", "orders.created.dlq")] == "classic-only"
    assert expected[("queue", "orders.created")] == "work-queues"  # a quorum queue: RabbitMQ skips classic-only


def test_nothing_waits_once_every_policy_shows(tmp_path: Path) -> None:
    d = definitions(tmp_path)
    assert topology.policies_pending(topology.expected_policies(d), *listings(d)) == []


def test_each_object_still_waiting_is_named_with_what_it_has(tmp_path: Path) -> None:
    d = definitions(tmp_path)
    queues, exchanges = listings(d)
    by_name = {q["name"]: q for q in queues}
    by_name["orders.created"]["policy"] = "work-queues"  # the new policy not there yet
    del by_name["payments.captured"]["policy"]
    queues.remove(by_name["orders.fulfilled.dlq"])
    del exchanges[-1]["policy"]
    assert topology.policies_pending(topology.expected_policies(d), queues, exchanges) == [
        "exchange 'platform.events' has policy None, expected 'events'",
        "queue 'orders.created' has policy 'work-queues', expected 'urgent'",
        "queue 'orders.fulfilled.dlq' is not there, policy 'dead-letter-queues' expected",
        "queue 'payments.captured' has policy None, expected 'work-queues'",
    ]


# --- the wait and the build, against a stub management API ------------------------------------------------


def late_policies(d: defs.Definitions, reads_before: int):  # noqa: ANN201
    """A management API that lists the objects without their policies ``reads_before`` times, then with them."""
    queues, exchanges = listings(d)
    reads: list[bool] = []  # per read of the queues: were the policies shown

    def answer(method: str, path: str) -> tuple[int, bytes]:
        if method != "GET":
            return 204, b""
        is_queues = path.startswith("/api/queues/")
        if is_queues:
            reads.append(len(reads) >= reads_before)
        listing = queues if is_queues else exchanges
        if not (reads and reads[-1]):
            listing = [{"name": o["name"]} for o in listing]
        return 200, json.dumps(listing).encode()

    return answer, reads


def test_the_wait_returns_only_once_the_policies_show(tmp_path: Path, stub_http) -> None:  # noqa: ANN001
    d = definitions(tmp_path)
    answer, reads = late_policies(d, reads_before=2)
    api = stub_http(answer)
    topology.wait_policies_applied(Management(api.url, "a", "p"), "ef", d, timeout=10)
    assert reads == [False, False, True]


def test_the_timeout_names_the_objects_still_waiting(tmp_path: Path, stub_http) -> None:  # noqa: ANN001
    d = definitions(tmp_path)
    answer, reads = late_policies(d, reads_before=1000)
    api = stub_http(answer)
    with pytest.raises(WaitTimeout) as info:
        topology.wait_policies_applied(Management(api.url, "a", "p"), "ef", d, timeout=0.5)
    message = str(info.value)
    assert message.startswith("policies of vhost ef not in effect after 0s: ")
    assert "queue 'orders.created' has policy None, expected 'urgent'" in message
    assert "exchange 'platform.events' has policy None, expected 'events'" in message
    assert "'notifications.email'" not in message  # no policy matches it


def test_the_build_returns_only_once_the_policies_show(tmp_path: Path, stub_http) -> None:  # noqa: ANN001
    (tmp_path / "mq").mkdir(parents=True)
    shutil.copy(TEMPLATE, tmp_path / "mq" / "definitions.json")
    answer, reads = late_policies(defs.load(TEMPLATE), reads_before=2)
    api = stub_http(answer)
    env = Environment(
        name="ef-0123456-plcy", sha="0" * 40, backend="aws", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["broker", "topology"],
        config=PlatformConfig("pyproject.toml", {"topology": {"definitions": "mq/definitions.json"}}),
    )  # fmt: skip
    env.description = env.describe()
    env.materialize()
    broker = Facts({"management_url": api.url, "admin_user": "a", "admin_password": "p",
                    "amqp": [{"host": "127.0.0.1", "port": 5672}]})  # fmt: skip
    env._set_state("broker", status="built", facts=broker.to_json())
    Topology().build(env.context("topology"))
    assert ("POST", f"/api/definitions/{env.name}") in api.requests
    assert reads == [False, False, True]  # it returned after the read that showed them, not before


# --- against a real RabbitMQ -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rmq.ClusterSpec]:
    """A one-node RabbitMQ of this module's own; none of its processes survive it."""
    directory = tmp_path_factory.mktemp("rabbitmq")
    marker = f"ef-test-{uuid.uuid4().hex[:10]}"
    spec = rmq.plan(directory / "cluster", 1, prefix="policywait")
    cluster = rmq.Cluster(spec, standalone_spawner(directory / "processes", marker, component="broker"))
    try:
        cluster.start(timeout=120)
        yield spec
    finally:
        cluster.stop()
        try:  # erl_child_setup and its helpers have process groups of their own and exit just after the node
            wait_for(lambda: not find_marked(marker), what="the test's RabbitMQ processes gone", timeout=5)
        except WaitTimeout:
            raise AssertionError(f"processes of the test's RabbitMQ survived its stop: {find_marked(marker)}") from None


@pytest.mark.integration
def test_right_after_the_wait_every_matched_object_has_its_policy(node: rmq.ClusterSpec, tmp_path: Path) -> None:
    d = definitions(tmp_path)
    mgmt = node.management()
    try:
        mgmt.put_vhost("policies")
        topology.import_definitions(mgmt, "policies", d)
        topology.wait_policies_applied(mgmt, "policies", d, timeout=30)
        queues = {q["name"]: q.get("policy") for q in mgmt.queues("policies", "name,policy")}  # a fresh read
        exchanges = {e["name"]: e.get("policy") for e in mgmt.exchanges("policies")}
    finally:
        mgmt.close()
    assert queues == {name: defs.effective_policy(d.policies, name) for name in d.queues}
    assert queues["orders.created"] == "urgent" and queues["notifications.email"] is None
    assert exchanges["platform.events"] == "events" and exchanges["platform.dlx"] is None


@pytest.mark.integration
def test_a_policy_the_broker_does_not_show_times_out_naming_its_queues(node: rmq.ClusterSpec, tmp_path: Path) -> None:
    d = definitions(tmp_path)
    without_urgent = definitions(tmp_path, EXTRA_POLICIES[1:])
    mgmt = node.management()
    try:
        mgmt.put_vhost("no-urgent")
        topology.import_definitions(mgmt, "no-urgent", without_urgent)
        with pytest.raises(WaitTimeout) as info:
            topology.wait_policies_applied(mgmt, "no-urgent", d, timeout=1)
    finally:
        mgmt.close()
    assert str(info.value) == (
        "policies of vhost no-urgent not in effect after 1s: "
        "queue 'orders.created' has policy 'work-queues', expected 'urgent'"
    )
