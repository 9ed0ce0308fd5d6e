"""Plain helpers of the API suite: bodies, bounded waits, and the few platform lookups outside the base URL.

The requests tests only use the base URL. The worker-kill and poison-message tests also need the
scheduler (to find and kill the worker's task, and to see it relaunched; with the credentials of its facts)
and the broker (to publish): the names they rely on are the constants below, the one place to adjust.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from envfixtures.core.facts import Facts
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon.client import facts_auth

#: Bounded waits of the suite (seconds).
FULFIL_TIMEOUT = 60.0
RELAUNCH_TIMEOUT = 90.0
REQUEST_TIMEOUT = 15.0

#: The fulfilment worker among the ``apps`` facts' ``app_ids``.
WORKER_APP_SUFFIX = "/fulfilment-worker"
#: Where an ``order.created`` event goes (docs/platform.md), and where the worker's rejects end.
EVENTS_EXCHANGE = "platform.events"
ORDER_CREATED = "order.created"
DEAD_LETTER_QUEUE = "orders.created.dlq"


def valid_order(**changes: Any) -> dict[str, Any]:
    """A valid NewOrder body (docs/platform.md), with a customer of its own unless given."""
    body = {"customer_id": f"c-{uuid.uuid4().hex[:12]}", "items": [{"sku": "SKU-1", "quantity": 2}], "currency": "EUR"}
    body.update(changes)
    return body


def wait_fulfilled(base_url: str, ids: list[str], *, timeout: float = FULFIL_TIMEOUT) -> float:
    """Poll ``GET /orders/{id}`` with backoff, bounded, until every order is fulfilled; returns the seconds taken."""
    pending = set(ids)
    started = time.monotonic()

    def all_fulfilled() -> bool:
        for order_id in sorted(pending):
            r = requests.get(f"{base_url}/orders/{order_id}", timeout=REQUEST_TIMEOUT)
            if r.status_code != 200:
                raise AssertionError(f"GET /orders/{order_id}: {r.status_code} {r.text[:200]}")
            if r.json()["status"] == "fulfilled":
                pending.discard(order_id)
        return not pending

    wait_for(all_fulfilled, what=f"{len(ids)} order(s) fulfilled", timeout=timeout, first_delay=0.1, max_delay=1.0)
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------- the scheduler


def worker_app(apps: Facts) -> str:
    """The worker's app id, from the ``apps`` facts."""
    matching = [a for a in apps["app_ids"] if str(a).endswith(WORKER_APP_SUFFIX)]
    assert len(matching) == 1, f"no single app ending in {WORKER_APP_SUFFIX} among {apps['app_ids']}"
    return str(matching[0])


def app_tasks(scheduler: Facts, app_id: str) -> list[dict[str, Any]]:
    """The app's tasks, from the scheduler of the ``scheduler`` facts (its URL and credentials)."""
    url = f"{scheduler['url']}/v2/apps/{app_id.strip('/')}?embed=app.tasks"
    r = requests.get(url, auth=facts_auth(scheduler), timeout=REQUEST_TIMEOUT)
    r.raise_for_status()
    return r.json()["app"].get("tasks") or []


def healthy(task: dict[str, Any]) -> bool:
    results = task.get("healthCheckResults") or []
    return task.get("state") == "TASK_RUNNING" and bool(results) and all(h.get("alive") for h in results)


def task_pids(task_id: str) -> list[int]:
    """PIDs whose environment carries ``MESOS_TASK_ID=<task_id>`` (what the local scheduler gives each task).

    The local scheduler's API, like Marathon's, names no PID; the environment marker is how a Mesos
    agent's ``ps`` would find a task too. A /proc scan, no psutil: Linux only, processes of this user.
    """
    marker = f"MESOS_TASK_ID={task_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_task(backend: str, scheduler: Facts, app_id: str, task_id: str) -> str:
    """Kill a task the hard way: SIGKILL its processes on ``local``; on ``aws`` ask Marathon to kill it.

    Returns how it was killed (for the test's message).
    """
    if backend == "local":
        pids = task_pids(task_id)
        assert pids, f"no process carries MESOS_TASK_ID={task_id}"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return f"SIGKILL to pid(s) {pids}"
    url = f"{scheduler['url']}/v2/apps/{app_id.strip('/')}/tasks/{task_id}"
    r = requests.delete(url, auth=facts_auth(scheduler), timeout=REQUEST_TIMEOUT)
    r.raise_for_status()
    return "killed through Marathon's API"


# ---------------------------------------------------------------------------------------------- the broker
