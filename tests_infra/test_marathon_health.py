"""Marathon health: every app of the environment's group is deployed, healthy, on its SHA, and as desired.

Runs unchanged on ``local`` (the local scheduler) and ``aws`` (Marathon of the stack). Each check waits a
bounded time (HEALTH_WAIT) for its condition, so a task relaunched moments ago (self-healing, or one killed
by hand in a kept environment) is given its health-check window rather than reported at once.

Image tag: Marathon pulls ``container.docker.image`` and runs it, on ``aws`` and locally (podman). The tag is
asserted on the live definition; each task is asked (GET on the path in its VERSION_PATH label) which image and SHA
its own process was started with (Marathon hands the image to the task as MARATHON_APP_DOCKER_IMAGE, so a task of
an older definition would answer another tag); and locally each task's container is looked at: the image it runs,
and that image's digest, which must be the one the ``images`` component pushed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from envfixtures.drivers.containers import podman
from envfixtures.drivers.marathon.client import MarathonClient, parse_time
from envfixtures.drivers.marathon.models import App

HEALTH_WAIT = 60.0


@pytest.fixture(scope="module")
def marathon(scheduler: Any) -> MarathonClient:
    """The environment's Marathon, with the credentials of the scheduler's facts."""
    return MarathonClient.from_facts(scheduler, timeout=10)


def _group_apps(marathon: MarathonClient, apps: Any) -> dict[str, App]:
    listed = marathon.list_apps(
        embed=("apps.tasks", "apps.deployments", "apps.lastTaskFailure"), app_id=apps["group"] + "/"
    )
    return {a.id: a for a in listed if a.id.startswith(apps["group"] + "/")}


def _eventually(problems_of: Callable[[], list[str]], timeout: float = HEALTH_WAIT) -> list[str]:
    """Problems that persist for ``timeout`` seconds (empty as soon as there are none)."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        problems = problems_of()
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def _each_app(marathon: MarathonClient, apps: Any, check: Callable[[App], list[str]]) -> list[str]:
    live = _group_apps(marathon, apps)
    problems = [f"{app_id}: missing from Marathon" for app_id in apps["app_ids"] if app_id not in live]
    for app_id in apps["app_ids"]:
        if app_id in live:
            problems += [f"{app_id}: {p}" for p in check(live[app_id])]
    return problems


def test_marathon_no_deployment_pending(apps: Any, marathon: MarathonClient) -> None:
    def check(app: App) -> list[str]:
        return [f"deployments pending: {app.deployments}"] if app.deployments else []

    assert _eventually(lambda: _each_app(marathon, apps, check)) == []
    pending = [d.id for d in marathon.deployments() if any(a.startswith(apps["group"] + "/") for a in d.affected_apps)]
    assert pending == []


def test_marathon_running_and_healthy_equal_instances(apps: Any, marathon: MarathonClient) -> None:
    def check(app: App) -> list[str]:
        tasks = app.tasks or []
        running = [t for t in tasks if t.state in (None, "TASK_RUNNING")]
        out = []
        if len(running) != app.instances:
            out.append(f"{len(running)} running tasks, {app.instances} instances asked for")
        if app.health_checks:
            healthy = [t for t in running if t.healthy]
            if len(healthy) != app.instances or app.tasks_healthy != app.instances:
                failure = app.last_task_failure
                out.append(
                    f"{len(healthy)} healthy tasks (tasksHealthy={app.tasks_healthy}), {app.instances} asked for"
                    + (f"; lastTaskFailure: {failure.message}" if failure else "")
                )
        return out

    assert _eventually(lambda: _each_app(marathon, apps, check)) == []


def test_marathon_tasks_on_current_version(apps: Any, marathon: MarathonClient) -> None:
    def check(app: App) -> list[str]:
        config = (app.raw.get("versionInfo") or {}).get("lastConfigChangeAt") or app.version
        stale = [t.id for t in app.tasks or [] if not t.version or parse_time(t.version) < parse_time(config)]
        return [f"tasks of an older version than {config}: {stale}"] if stale else []

    assert _eventually(lambda: _each_app(marathon, apps, check)) == []


def test_marathon_image_tag_and_sha_label_equal_the_sha(
    apps: Any, marathon: MarathonClient, envfixtures_env: Any
) -> None:
    sha = envfixtures_env.sha

    def check(app: App) -> list[str]:
        out = []
        if app.labels.get("GIT_SHA") != sha:
            out.append(f"label GIT_SHA={app.labels.get('GIT_SHA')!r}, checked-out SHA {sha}")
        if app.image is None or app.image.rpartition(":")[2] != sha:
            out.append(f"image {app.image!r} is not tagged {sha}")
        version_path = app.labels.get("VERSION_PATH")  # apps that report what their process was started with
        for task in app.tasks or []:
            if not version_path or not task.ports:
                continue
            try:
                answer = requests.get(f"http://{task.host}:{task.ports[0]}{version_path}", timeout=5).json()
            except (requests.RequestException, ValueError) as exc:
                out.append(f"task {task.id}: /version unreadable: {exc}")
                continue
            if answer.get("image_tag") != sha or answer.get("sha") != sha:
                out.append(f"task {task.id} runs image tag {answer.get('image_tag')!r}, SHA {answer.get('sha')!r}")
        return out

    assert _eventually(lambda: _each_app(marathon, apps, check), timeout=10) == []


def test_every_task_runs_a_container_of_the_image_pushed_for_the_sha(
    apps: Any, marathon: MarathonClient, envfixtures_env: Any, request: pytest.FixtureRequest, record_property: Any
) -> None:
    if envfixtures_env.backend != "local":
        pytest.skip("the agents' containers are not visible from the runner on aws; the tasks' /version covers it")
    pushed = set(request.getfixturevalue("images")["artifact_sha256"].values())
    seen = []

    def check(app: App) -> list[str]:
        out = []
        for task in app.tasks or []:
            listed = podman.run("ps", "--filter", f"label=envfixtures.task={task.id}", "--format", "json")
            containers = json.loads(listed or "[]")
            if len(containers) != 1:
                out.append(f"task {task.id}: {len(containers)} running containers")
                continue
            image, image_id = containers[0]["Image"], containers[0]["ImageID"]
            repository = image.rpartition(":")[0]
            (info,) = json.loads(podman.run("image", "inspect", image_id))
            digests = {d.partition("@")[2] for d in info.get("RepoDigests") or [] if d.startswith(f"{repository}@")}
            seen.append((task.id, image, ",".join(sorted(digests & pushed))))
            if image != app.image:
                out.append(f"task {task.id} runs {image}, its app says {app.image}")
            if not digests & pushed:
                out.append(f"task {task.id} runs {image} ({sorted(digests)}), not what was pushed for the SHA {pushed}")
        return out

    assert _eventually(lambda: seen.clear() or _each_app(marathon, apps, check), timeout=10) == []
    assert seen, "no task was looked at"
    for task_id, image, digest in seen:  # shown in the JUnit report: what ran, exactly
        record_property(f"task {task_id}", f"{image}@{digest}")


def definition_diff(desired: Any, live: Any, path: str = "") -> list[str]:
    """Where ``live`` differs from ``desired``: Marathon adds defaults, so only desired fields are compared.
    A desired port 0 matches any assigned port; ``env`` is compared by names (values may be secret)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [f"{path or '/'}: desired an object, live is {live!r}"]
        out = []
        for key, value in desired.items():
            if key == "id":
                continue
            if path == "" and key == "env":
                missing = sorted(set(value) - set(live.get("env") or {}))
                out += [f"/env/{name}: missing" for name in missing]
                continue
            if key not in live:
                out.append(f"{path}/{key}: missing (desired {value!r})")
                continue
            out += definition_diff(value, live[key], f"{path}/{key}")
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [f"{path}: desired {len(desired)} item(s), live {live!r}"]
        return [d for i, item in enumerate(desired) for d in definition_diff(item, live[i], f"{path}({i})")]
    if path.endswith("/port") and desired == 0:
        return []
    if desired != live and not (
        isinstance(desired, (int, float)) and isinstance(live, (int, float)) and float(desired) == float(live)
    ):
        return [f"{path}: desired {desired!r}, live {live!r}"]
    return []


def test_marathon_live_definition_equals_desired(apps: Any, marathon: MarathonClient) -> None:
    def check(app: App) -> list[str]:
        return definition_diff(apps["desired"][app.id], app.raw)

    assert _each_app(marathon, apps, check) == []


def test_marathon_definition_diff_reports_paths() -> None:
    """The diff itself (no environment): it names the path of each difference."""
    desired = {
        "id": "a",
        "cmd": "x",
        "instances": 2,
        "portDefinitions": [{"port": 0}],
        "env": {"P": "<set>"},
        "healthChecks": [{"path": "/health"}],
    }
    live = {
        "id": "/g/a",
        "cmd": "y",
        "instances": 2,
        "portDefinitions": [{"port": 10003, "protocol": "tcp"}],
        "env": {},
        "healthChecks": [{"path": "/other", "intervalSeconds": 60}],
    }
    assert definition_diff(desired, live) == [
        "/cmd: desired 'x', live 'y'",
        "/env/P: missing",
        "/healthChecks(0)/path: desired '/health', live '/other'",
    ]


def _task_pids(task_id: str) -> list[int]:
    """Every process carrying the task's ``MESOS_TASK_ID``: a process task's, or a container task's ``podman run``
    and the processes inside its container."""
    needle = f"MESOS_TASK_ID={task_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as fh:
                    if needle in fh.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def _health_window(app: App) -> float:
    """Time a relaunched task has to become healthy: launch backoff, grace period, then the failures allowed."""
    backoff = float(app.raw.get("backoffSeconds", 1))
    windows = [
        c.get("gracePeriodSeconds", 300) + c.get("intervalSeconds", 60) * max(c.get("maxConsecutiveFailures", 3), 1)
        for c in app.health_checks
    ]
    return backoff + (max(windows) if windows else 30.0)


@pytest.mark.fault
def test_marathon_self_healing_after_a_task_is_killed(
    apps: Any, scheduler: Any, marathon: MarathonClient, live_work_queues: None
) -> None:
    """Holds ``live_work_queues``: the task it kills may be the worker's, which the worker tests watch."""
    if scheduler.get("backend") != "local":
        pytest.skip("killing a task's process needs a shell on its agent; on aws this runs as a chaos job, not here")
    live = _group_apps(marathon, apps)
    app = next((a for a in live.values() if a.health_checks and a.tasks), None)
    assert app is not None, "no app with health checks and tasks to kill"
    victim = app.tasks[0]
    pids = _task_pids(victim.id)
    assert pids, f"process of task {victim.id} not found"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    window = _health_window(app)
    started = time.monotonic()

    def healed() -> list[str]:
        now = _group_apps(marathon, apps).get(app.id)
        if now is None:
            return ["app gone"]
        healthy = [t for t in now.tasks or [] if t.healthy]
        if any(t.id == victim.id for t in now.tasks or []):
            return [f"killed task {victim.id} still listed"]
        if len(healthy) != now.instances:
            return [f"{len(healthy)}/{now.instances} healthy"]
        return []

    assert _eventually(healed, timeout=window) == [], f"not healthy again within {window:.0f}s"
    elapsed = time.monotonic() - started
    failure = marathon.get_app(app.id).last_task_failure
    assert failure is not None and failure.task_id == victim.id
    print(
        f"self-healing: {app.id} healthy again {elapsed:.1f}s after task {victim.id} was killed (window {window:.0f}s)"
    )
