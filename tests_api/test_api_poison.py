"""Issue 5: a poison message reaches the dead-letter queue, and the worker stays healthy.

Published over AMQP with the ``topology`` facts' application credentials to the platform's exchange
with the routing key of ``order.created`` (``mandatory``, confirmed: an unroutable publish fails the
test rather than passing it silently). The worker must reject them to the dead-letter queue, not
retry them forever, and its task must stay the same healthy task.
"""

from __future__ import annotations

import json
import uuid

import pika
import requests
from api_support import (
    DEAD_LETTER_QUEUE,
    EVENTS_EXCHANGE,
    ORDER_CREATED,
    REQUEST_TIMEOUT,
    app_tasks,
    healthy,
    valid_order,
    wait_fulfilled,
    worker_app,
)  # fmt: skip

from envfixtures.core.waiting import wait_for


def test_a_poison_message_is_dead_lettered_and_the_worker_stays_healthy(
    create, base_url, apps, scheduler, amqp_parameters, live_work_queues: None
) -> None:
    worker_id = worker_app(apps)
    tasks_before = wait_for(lambda: [t for t in app_tasks(scheduler, worker_id) if healthy(t)],
                            what=f"a healthy task of {worker_id}", timeout=60)  # fmt: skip
    marker = str(uuid.uuid4())
    poison = [
        b"not json " + marker.encode(),
        json.dumps({"event": "order.created", "id": marker}).encode(),  # not a uuid
        json.dumps({"event": "order.created", "id": str(uuid.uuid4()), "marker": marker}).encode(),  # no such order
    ]
    with pika.BlockingConnection(amqp_parameters) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        for body in poison:
            # mandatory + confirms: pika raises UnroutableError/NackError if the broker does not take it.
            channel.basic_publish(EVENTS_EXCHANGE, ORDER_CREATED, body,
                                  pika.BasicProperties(delivery_mode=2, message_id=marker,
                                                       content_type="application/json"),
                                  mandatory=True)  # fmt: skip

        found: list[bytes] = []

        def all_dead_lettered() -> bool:
            # A channel of its own per look: messages not ours stay unacked and return to the queue on close.
            look = conn.channel()
            try:
                while True:
                    method, _props, body = look.basic_get(DEAD_LETTER_QUEUE, auto_ack=False)
                    if method is None:
                        return len(found) == len(poison)
                    if marker.encode() in body:
                        look.basic_ack(method.delivery_tag)
                        found.append(body)
            finally:
                look.close()

        wait_for(all_dead_lettered, what=f"{len(poison)} poison messages in {DEAD_LETTER_QUEUE}", timeout=30)
    assert sorted(found) == sorted(poison), "the dead-lettered messages are the poison ones, unchanged"

    tasks_after = [t for t in app_tasks(scheduler, worker_id) if healthy(t)]
    assert {t["id"] for t in tasks_after} == {t["id"] for t in tasks_before}, "the worker was restarted"
    # Still working: a real order is fulfilled after the poison.
    r = create(valid_order())
    wait_fulfilled(base_url, [r.json()["id"]])
    task = tasks_after[0]
    if task.get("host") in ("127.0.0.1", "localhost"):  # the worker's own health endpoint, where reachable
        health = requests.get(f"http://{task['host']}:{task['ports'][0]}/health", timeout=REQUEST_TIMEOUT)
        assert health.status_code == 200 and health.json()["dead_lettered"] >= len(poison)
