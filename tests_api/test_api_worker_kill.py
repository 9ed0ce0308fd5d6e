"""Issue 5: killing the fulfilment worker's task mid-test loses no order.

The worker's task is found through the scheduler (``GET /v2/apps/<worker>?embed=app.tasks``) and killed
the hard way: on ``local`` SIGKILL to the process carrying its ``MESOS_TASK_ID`` (found by a /proc scan:
the scheduler's API, like Marathon's, names no PID), on ``aws`` through Marathon's kill-task API. Orders
are created before, during and after the outage through the base URL; once the scheduler has relaunched
the worker (a new task, healthy), every one of them must be fulfilled within a bounded wait.
"""

from __future__ import annotations

import time

import pytest
from api_support import (
    RELAUNCH_TIMEOUT,
    app_tasks,
    healthy,
    kill_task,
    task_pids,
    valid_order,
    wait_fulfilled,
    worker_app,
)  # fmt: skip

from envfixtures.core.waiting import wait_for

pytestmark = pytest.mark.fault


def test_killing_the_worker_task_loses_no_order(
    create, base_url, apps, scheduler, envfixtures_env, live_work_queues: None
) -> None:
    worker_id = worker_app(apps)
    before = wait_for(lambda: [t for t in app_tasks(scheduler, worker_id) if healthy(t)],
                      what=f"a healthy task of {worker_id}", timeout=RELAUNCH_TIMEOUT)  # fmt: skip
    victim = before[0]["id"]

    ids = [create(valid_order(customer_id=f"kill-before-{i}")).json()["id"] for i in range(5)]
    how = kill_task(envfixtures_env.backend, scheduler, worker_id, victim)
    killed_at = time.monotonic()
    if envfixtures_env.backend == "local":
        wait_for(lambda: not task_pids(victim), what=f"task {victim} gone ({how})", timeout=10)
    responses = [create(valid_order(customer_id=f"kill-during-{i}")) for i in range(15)]
    assert [r.status_code for r in responses] == [201] * 15, "creates must succeed while the worker is down"
    ids += [r.json()["id"] for r in responses]

    def relaunched() -> list[dict]:
        return [t for t in app_tasks(scheduler, worker_id) if t["id"] != victim and healthy(t)]

    replacement = wait_for(relaunched, what=f"{worker_id} relaunched after {how}", timeout=RELAUNCH_TIMEOUT)
    relaunch_seconds = time.monotonic() - killed_at
    assert victim not in {t["id"] for t in app_tasks(scheduler, worker_id)}
    ids += [create(valid_order(customer_id=f"kill-after-{i}")).json()["id"] for i in range(5)]
    fulfil_seconds = wait_fulfilled(base_url, ids)
    print(f"\nworker {how}; relaunched as {replacement[0]['id']} in {relaunch_seconds:.1f}s; "
          f"{len(ids)} orders fulfilled {fulfil_seconds:.1f}s after that")  # fmt: skip
