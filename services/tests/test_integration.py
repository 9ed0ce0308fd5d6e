"""The API (two instances) and the worker against a real PostgreSQL and a real single RabbitMQ node.

PostgreSQL is started with :mod:`envfixtures.drivers.postgres.server`, RabbitMQ with
:mod:`envfixtures.drivers.rabbitmq.cluster` (one node); the services run as processes from the source tree
(``python -m ...``). Everything started here is stopped by the module's fixtures, also when a test fails.
Skipped (with the reason) when the PostgreSQL or RabbitMQ binaries are not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika
import psutil
import psycopg
import pytest
import requests

SERVICES = Path(__file__).resolve().parents[1]
ROOT = SERVICES.parent
sys.path.insert(0, str(ROOT))

from envfixtures.core.ports import free_port  # noqa: E402
from envfixtures.core.processes import Spawner, find_marked, standalone_spawner  # noqa: E402
from envfixtures.core.waiting import wait_for  # noqa: E402
from envfixtures.drivers.postgres import migrations  # noqa: E402
from envfixtures.drivers.postgres import server as postgres  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not (postgres.BIN_DIR / "postgres").exists(), reason="PostgreSQL 15 is not installed"),
    pytest.mark.skipif(not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists(), reason="RabbitMQ is not installed"),
]

SHA = "1234567890abcdef1234567890abcdef12345678"
VHOST = "it-platform"
QUEUE = "orders.created"
DEAD_QUEUE = "orders.created.dlq"
OBSERVE_QUEUE = "it.order-fulfilled"
ORDER = {"customer_id": "cust-1", "items": [{"sku": "SKU-1", "quantity": 2}], "currency": "EUR"}


def definitions() -> dict:
    """The topology the services expect (the real one is templates/rabbitmq/definitions.json)."""
    return {
        "exchanges": [
            {"name": "platform.events", "type": "topic", "durable": True, "auto_delete": False, "arguments": {}},
            {"name": "platform.dlx", "type": "direct", "durable": True, "auto_delete": False, "arguments": {}},
        ],
        "queues": [
            {
                "name": QUEUE,
                "durable": True,
                "auto_delete": False,
                "arguments": {
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": "platform.dlx",
                    "x-dead-letter-routing-key": QUEUE,
                },
            },
            {"name": DEAD_QUEUE, "durable": True, "auto_delete": False, "arguments": {}},
            {"name": OBSERVE_QUEUE, "durable": True, "auto_delete": False, "arguments": {}},
        ],  # fmt: skip
        "bindings": [
            {
                "source": "platform.events",
                "destination": QUEUE,
                "destination_type": "queue",
                "routing_key": "order.created",
                "arguments": {},
            },
            {
                "source": "platform.dlx",
                "destination": DEAD_QUEUE,
                "destination_type": "queue",
                "routing_key": QUEUE,
                "arguments": {},
            },
            {
                "source": "platform.events",
                "destination": OBSERVE_QUEUE,
                "destination_type": "queue",
                "routing_key": "order.fulfilled",
                "arguments": {},
            },
        ],  # fmt: skip
    }


@pytest.fixture(scope="module")
def scratch():
    path = Path(tempfile.mkdtemp(prefix="ef-services-it-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def spawner(scratch):
    """Every process of the module, journaled in the scratch directory and marked; none may survive the module."""
    marker = f"services-it-{os.getpid()}"
    yield standalone_spawner(scratch / "processes", marker)
    assert find_marked(marker) == [], "processes of the integration test survived it"


@pytest.fixture(scope="module")
def database(scratch, spawner):
    port = free_port()
    server = postgres.start(workdir=scratch / "pg", port=port, spawn=spawner, may_change_under=scratch)
    try:
        password = postgres.generate_password()
        postgres.create_app_database(port=port, admin_password=server.admin_password, role="platform",
                                     password=password, dbname="platform")  # fmt: skip
        conninfo = postgres.conninfo(port=port, user="platform", password=password, dbname="platform")
        migrations.apply(conninfo, migrations.from_directory(SERVICES / "migrations"))
        yield {"port": port, "password": password, "conninfo": conninfo, "server": server}
    finally:
        print(f"\npostgres timings: {server.timings}, stop {server.stop():.3f}s")


@pytest.fixture(scope="module")
def broker(scratch, spawner):
    from envfixtures.drivers.rabbitmq.cluster import Cluster, plan

    spec = plan(scratch / "rabbit", size=1)
    cluster = Cluster(spec, spawner)
    try:
        cluster.start(timeout=90)
        mgmt = spec.management()
        password = postgres.generate_password()
        mgmt.put_vhost(VHOST)
        mgmt.put_user("platform", password)
        mgmt.put_permissions(VHOST, "platform")
        mgmt.put_permissions(VHOST, spec.admin_user)
        mgmt.import_definitions(VHOST, definitions())
        url = f"amqp://platform:{password}@127.0.0.1:{spec.nodes[0].amqp_port}/{VHOST}"
        yield {"url": url, "password": password, "mgmt": mgmt}
    finally:
        cluster.stop(grace=10)


class Service:
    """One service process started from the source tree, stopped by process group."""

    def __init__(self, spawn: Spawner, module: str, environ: dict[str, str], name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **environ, "PORT0": str(self.port), "PYTHONPATH": str(SERVICES)}
        self.process = spawn(name, [sys.executable, "-m", module], env=env)
        self.log = self.process.log_path

    def wait_healthy(self, timeout: float = 30.0) -> None:
        self.process.wait_ready(lambda: requests.get(self.url + "/health", timeout=2).status_code == 200,
                                what=f"{self.url}/health", timeout=timeout, retry_on=(OSError,))  # fmt: skip

    def kill(self) -> None:
        self.process.stop(timeout=0, sig=signal.SIGKILL)

    def stop(self) -> None:
        self.process.stop(timeout=10)


@pytest.fixture(scope="module")
def platform(spawner, database, broker):
    environ = {"DATABASE_URL": database["conninfo"], "AMQP_URL": broker["url"], "GIT_SHA": SHA,
               "ORDERS_QUEUE": QUEUE}  # fmt: skip
    started: list[Service] = []
    try:
        apis = [Service(spawner, "platform_services.api", environ, f"api-{i}") for i in range(2)]
        started += apis
        worker = Service(spawner, "platform_services.worker", environ, "worker")
        started.append(worker)
        for service in started:
            service.wait_healthy()
        yield {"apis": apis, "worker": worker, "environ": environ, "started": started, "spawner": spawner}
    finally:
        for service in started:
            service.stop()
        for service in started:
            text = service.log.read_text()
            assert database["password"] not in text and broker["password"] not in text, f"{service.log} leaks"


def create(base: str, body: dict = ORDER, key: str | None = None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(base + "/orders", json=body, headers=headers, timeout=10)


def test_create_read_and_version_on_both_instances(platform):
    a, b = (s.url for s in platform["apis"])
    r = create(a)
    assert r.status_code == 201, r.text
    order = r.json()
    assert {k: order[k] for k in ORDER} == ORDER and order["status"] in ("created", "fulfilled")
    got = requests.get(f"{b}/orders/{order['id']}", timeout=5)
    assert got.status_code == 200 and got.json()["id"] == order["id"]
    assert requests.get(b + "/version", timeout=5).json() == {"sha": SHA, "image_tag": None}


def test_list_paginates_through_every_order_once(platform):
    base = platform["apis"][0].url
    ids = {create(base, {**ORDER, "customer_id": f"page-{i}"}).json()["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = requests.get(base + "/orders", params=params, timeout=5).json()
        assert len(page["items"]) <= 3
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))


def test_a_retried_create_returns_the_first_result_across_instances(platform, database):
    a, b = (s.url for s in platform["apis"])
    key = str(uuid.uuid4())
    first = create(a, key=key)
    second = create(b, key=key)
    assert first.status_code == second.status_code == 201
    volatile = {"status": first.json()["status"], "fulfilled_at": first.json()["fulfilled_at"]}
    assert first.json() == {**second.json(), **volatile}
    assert second.headers.get("Idempotent-Replayed") == "true"
    other = create(b, {**ORDER, "currency": "USD"}, key=key)
    assert (other.status_code, other.json()["field"]) == (422, "Idempotency-Key")
    with psycopg.connect(database["conninfo"]) as conn:
        events = conn.execute("SELECT count(*) FROM outbox WHERE payload->>'id' = %s", (first.json()["id"],)).fetchone()
    assert events[0] == 1


def wait_fulfilled(base: str, ids: list[str], timeout: float = 30.0) -> None:
    def all_fulfilled() -> bool:
        return all(requests.get(f"{base}/orders/{i}", timeout=5).json()["status"] == "fulfilled" for i in ids)

    wait_for(all_fulfilled, what=f"{len(ids)} order(s) fulfilled", timeout=timeout, max_delay=0.5)


def test_an_order_is_fulfilled_and_order_fulfilled_is_published(platform, broker):
    base = platform["apis"][1].url
    order_id = create(base).json()["id"]
    wait_fulfilled(base, [order_id], timeout=20)
    assert requests.get(f"{base}/orders/{order_id}", timeout=5).json()["fulfilled_at"]
    with pika.BlockingConnection(pika.URLParameters(broker["url"])) as conn:
        channel = conn.channel()

        def fulfilled_event() -> bool:
            while True:
                method, _props, body = channel.basic_get(OBSERVE_QUEUE, auto_ack=True)
                if method is None:
                    return False
                if json.loads(body)["id"] == order_id:
                    return True

        wait_for(fulfilled_event, what="order.fulfilled event", timeout=10)


def test_a_poison_message_is_dead_lettered_and_the_worker_stays_healthy(platform, broker):
    marker = str(uuid.uuid4())
    with pika.BlockingConnection(pika.URLParameters(broker["url"])) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        for body in (b"not json " + marker.encode(), json.dumps({"id": marker}).encode()):
            channel.basic_publish("platform.events", "order.created", body,
                                  pika.BasicProperties(delivery_mode=2, message_id=marker))  # fmt: skip

        found: list[bytes] = []

        def both_dead_lettered() -> bool:
            method, _props, body = channel.basic_get(DEAD_QUEUE, auto_ack=True)
            if method is not None and marker.encode() in body:
                found.append(body)
            return len(found) == 2

        wait_for(both_dead_lettered, what="two poison messages in the dead-letter queue", timeout=20)
    health = requests.get(platform["worker"].url + "/health", timeout=5)
    assert health.status_code == 200 and health.json()["dead_lettered"] >= 2


def test_killing_the_worker_loses_no_order(platform):
    base = platform["apis"][0].url
    platform["worker"].kill()
    ids = [create(base, {**ORDER, "customer_id": f"kill-{i}"}).json()["id"] for i in range(20)]
    assert all(requests.get(f"{base}/orders/{i}", timeout=5).json()["status"] == "created" for i in ids)
    replacement = Service(platform["spawner"], "platform_services.worker", platform["environ"], "worker")
    platform["started"].append(replacement)
    platform["worker"] = replacement
    replacement.wait_healthy()
    wait_fulfilled(base, ids, timeout=30)


def test_the_relay_survives_its_connection_being_closed(platform, broker):
    """The broker closes the relays' connections: they reconnect, and an order created meanwhile is fulfilled."""
    mgmt = broker["mgmt"]
    base = platform["apis"][0].url

    def relay_connections() -> list[str]:
        # The management API lists connections from its statistics, which lag behind by about a second.
        names = [
            c["name"]
            for c in mgmt.get("/connections")
            if c.get("client_properties", {}).get("connection_name") == "orders-api outbox"
        ]
        return names if len(names) == 2 else []

    for name in wait_for(relay_connections, what="the two relays' connections", timeout=20):
        mgmt.request("DELETE", f"/connections/{requests.utils.quote(name, safe='')}")
    # The relay reconnects within its backoff; meanwhile an order is accepted into the outbox.
    r = create(base)
    assert r.status_code == 201
    wait_fulfilled(base, [r.json()["id"]], timeout=30)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (a PID 1)")
def test_the_api_stops_on_sigterm_as_a_containers_pid_1(platform, tmp_path):
    """In its container the API is PID 1, for which SIGTERM has no default action: it must handle it, or Marathon's
    kill ends in SIGKILL after the grace period."""
    port = free_port()
    env = {**os.environ, **platform["environ"], "PORT0": str(port), "PYTHONPATH": str(SERVICES)}
    with open(tmp_path / "api.log", "wb") as log:
        proc = subprocess.Popen(  # unshare's child is PID 1 of a PID namespace of its own, as in a container
            ["unshare", "--pid", "--fork", sys.executable, "-m", "platform_services.api"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok, what="the API as PID 1",
                 timeout=30, retry_on=(OSError,))  # fmt: skip
        (api,) = psutil.Process(proc.pid).children()
        api.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, "the API as PID 1 exits on SIGTERM, and cleanly"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_latency_on_loopback(platform):
    """Median and p99 of sequential creates and reads on one instance (printed; loose upper bound)."""
    base = platform["apis"][0].url
    session = requests.Session()
    timings: dict[str, list[float]] = {"POST /orders": [], "GET /orders/{id}": []}
    ids = []
    for i in range(200):
        t0 = time.perf_counter()
        r = session.post(base + "/orders", json={**ORDER, "customer_id": f"lat-{i}"}, timeout=10)
        timings["POST /orders"].append(time.perf_counter() - t0)
        ids.append(r.json()["id"])
    for order_id in ids:
        t0 = time.perf_counter()
        session.get(f"{base}/orders/{order_id}", timeout=10)
        timings["GET /orders/{id}"].append(time.perf_counter() - t0)
    for name, values in timings.items():
        values.sort()
        median, p99 = statistics.median(values), values[int(len(values) * 0.99) - 1]
        print(f"\n{name}: n={len(values)} median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        assert median < 0.5
