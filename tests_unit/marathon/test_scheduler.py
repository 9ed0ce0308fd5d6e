"""Behaviour of the local scheduler, against the real server process and real task processes."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from envfixtures.core.errors import FailedState
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon.client import Locked, MarathonClient, NotFound, Unprocessable
from envfixtures.drivers.marathon.engine import AppState

from .conftest import LocalMarathon, deploy, pid_of_task

HTTP_APP = "echo ok > ok.txt && exec python3 -m http.server $PORT0 --bind 127.0.0.1"


# Real scheduler processes and real tasks: the integration stage, not the fast static one.
pytestmark = pytest.mark.integration


def http_check(**over: Any) -> dict[str, Any]:
    check = {
        "protocol": "HTTP",
        "path": "/ok.txt",
        "portIndex": 0,
        "gracePeriodSeconds": 10,
        "intervalSeconds": 1,
        "timeoutSeconds": 1,
        "maxConsecutiveFailures": 2,
    }
    check.update(over)
    return check


def healthy_tasks(client: MarathonClient, app_id: str) -> list[Any]:
    app = client.get_app(app_id, embed=["app.tasks"])
    return [t for t in app.tasks or [] if t.healthy]


def test_ping_info_leader(marathon: LocalMarathon) -> None:
    c = marathon.client
    assert c.ping()
    assert c.info().name == "marathon"
    assert c.leader() == f"127.0.0.1:{marathon.port}"


def test_post_answers_201_with_location_and_deployment_header(marathon: LocalMarathon) -> None:
    resp = marathon.http.post(f"{marathon.url}/v2/apps", json={"id": "/hdr/app", "cmd": "exec sleep 300"}, timeout=5)
    assert resp.status_code == 201
    assert resp.headers["Location"] == "/v2/apps/hdr/app"
    body = resp.json()
    assert body["deployments"] == [{"id": resp.headers["Marathon-Deployment-Id"]}]
    again = marathon.http.post(f"{marathon.url}/v2/apps", json={"id": "/hdr/app", "cmd": "exec sleep 300"}, timeout=5)
    assert again.status_code == 409
    assert again.json() == {"message": "An app with id [/hdr/app] already exists."}
    put = marathon.http.put(f"{marathon.url}/v2/apps/hdr/app?force=true", json={"cmd": "exec sleep 301"}, timeout=5)
    assert put.status_code == 200 and put.json()["deploymentId"] == put.headers["Marathon-Deployment-Id"]
    deleted = marathon.client.delete_app("/hdr/app", force=True)
    marathon.client.wait_for_deployment(deleted.deployment_id, timeout=20)
    with pytest.raises(NotFound, match="App '/hdr/app' does not exist"):
        marathon.client.get_app("/hdr/app")


def test_invalid_app_gets_422_with_marathon_paths(marathon: LocalMarathon) -> None:
    with pytest.raises(Unprocessable) as err:
        marathon.client.create_app(
            {"id": "/bad", "cmd": "x", "args": ["y"], "upgradeStrategy": {"minimumHealthCapacity": 1.5}}
        )
    assert set(err.value.paths) == {"/", "/upgradeStrategy/minimumHealthCapacity"}
    assert err.value.body["message"] == "Object is not valid"
    with pytest.raises(Unprocessable) as group_err:
        marathon.client.put_group("/badgroup", {"apps": [{"id": "a", "cmd": "x"}, {"id": "b"}]})
    assert group_err.value.paths == ["/apps(1)"]
    with pytest.raises(NotFound):
        marathon.client.get_group("/badgroup")


def test_task_environment_and_fetch_into_sandbox(marathon: LocalMarathon, tmp_path: Path) -> None:
    tmp_path = marathon.workdir / "w" / "files"  # file:// only from the scheduler's own directories
    tmp_path.mkdir(exist_ok=True)
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello-from-fetch\n")
    archive = tmp_path / "bundle.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"inside the archive\n"
        info = tarfile.TarInfo("bundle/readme.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    plain = tmp_path / "kept.tar.gz"
    plain.write_bytes(archive.read_bytes())
    app = {
        "id": "/envtest/app",
        "cmd": "env > env.txt && ./hello.sh > hello.txt && exec sleep 300",
        "env": {"MY_SETTING": "x1"},
        "labels": {"GIT_SHA": "abc"},
        "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}],
        "fetch": [
            {"uri": f"file://{script}", "executable": True},
            {"uri": f"file://{archive}"},
            {"uri": f"file://{plain}", "extract": False},
        ],
    }
    deploy(marathon.client, app)
    task = marathon.client.app_tasks("/envtest/app")[0]
    sandbox = marathon.workdir / "w" / "sandboxes" / task.id
    env_file = sandbox / "env.txt"
    wait_for(env_file.exists, what="env.txt", timeout=10)
    wait_for(lambda: (sandbox / "hello.txt").exists() and (sandbox / "hello.txt").read_text(), what="hello", timeout=10)
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert env["PORT0"] == str(task.ports[0]) and env["PORT1"] == str(task.ports[1])
    assert env["PORTS"] == f"{task.ports[0]},{task.ports[1]}" and env["PORT"] == env["PORT0"]
    assert env["PORT_HTTP"] == env["PORT0"]
    assert env["HOST"] == "127.0.0.1"
    assert env["MARATHON_APP_ID"] == "/envtest/app"
    assert env["MARATHON_APP_VERSION"] == task.version
    assert env["MESOS_TASK_ID"] == task.id
    assert env["MESOS_SANDBOX"] == str(sandbox)
    assert env["MY_SETTING"] == "x1" and env["MARATHON_APP_LABEL_GIT_SHA"] == "abc"
    assert env["ENVFIXTURES_ENV"] == marathon.marker
    assert (sandbox / "hello.txt").read_text() == "hello-from-fetch\n"
    assert (sandbox / "bundle" / "readme.txt").read_text() == "inside the archive\n"
    assert (sandbox / "kept.tar.gz").exists() and not (sandbox / "bundle.tgz").is_dir()
    assert os.getsid(pid_of_task(task.id) or 0) == pid_of_task(task.id), "a task runs in its own session"
    marathon.client.wait_for_deployment(marathon.client.delete_app("/envtest/app").deployment_id, timeout=20)


def test_fetch_failure_is_a_task_failure(marathon: LocalMarathon) -> None:
    missing = marathon.workdir / "w" / "files" / "nonexistent.tgz"
    app = {"id": "/fetchfail/app", "cmd": "exec sleep 300", "fetch": [{"uri": f"file://{missing}"}]}
    marathon.client.update_app(app["id"], app)
    failure = wait_for(lambda: marathon.client.get_app(app["id"]).last_task_failure, what="failure", timeout=15)
    assert failure.state == "TASK_FAILED" and "Failed to fetch all URIs" in failure.message
    assert "No such file" in failure.message
    marathon.client.delete_app(app["id"], force=True)


def test_a_refused_fetch_fails_the_task_saying_why(marathon: LocalMarathon, tmp_path: Path) -> None:
    """A tampered artifact, a destPath out of the sandbox, a file:// outside the scheduler's directories: each
    is a TASK_FAILED whose lastTaskFailure names the rule, and nothing is written outside the sandbox."""
    files = marathon.workdir / "w" / "files"
    files.mkdir(exist_ok=True)
    (files / "app.tar.gz").write_bytes(b"tampered after the digest was taken")
    (tmp_path / "outside.txt").write_text("not the environment's")
    good = "0" * 64
    cases = {
        "/refused/digest": ({"uri": f"file://{files}/app.tar.gz#sha256={good}"}, "sha256 mismatch"),
        "/refused/up": ({"uri": f"file://{files}/app.tar.gz", "destPath": "../../escaped"}, "goes up ('..')"),
        "/refused/absolute": ({"uri": f"file://{files}/app.tar.gz", "destPath": str(tmp_path / "abs")}, "absolute"),
        "/refused/outside": ({"uri": f"file://{tmp_path}/outside.txt"}, "file:// is refused outside"),
    }
    for app_id, (item, _) in cases.items():
        marathon.client.update_app(app_id, {"id": app_id, "cmd": "touch ran && exec sleep 300", "fetch": [item]})
    try:
        for app_id, (_, says) in cases.items():
            failure = wait_for(lambda a=app_id: marathon.client.get_app(a).last_task_failure, what=app_id, timeout=15)
            assert failure.state == "TASK_FAILED", app_id
            assert "Failed to fetch all URIs" in failure.message and says in failure.message, (app_id, failure.message)
        assert not (marathon.workdir / "w" / "escaped").exists() and not (tmp_path / "abs").exists()
        assert not list((marathon.workdir / "w" / "sandboxes").rglob("ran")), "no refused task ran"
    finally:
        for app_id in cases:
            marathon.client.delete_app(app_id, force=True)


def test_unhealthy_task_is_killed_and_relaunched(marathon: LocalMarathon) -> None:
    app = {
        "id": "/health/http",
        "cmd": HTTP_APP,
        "instances": 1,
        "healthChecks": [
            http_check(),
            {
                "protocol": "TCP",
                "portIndex": 0,
                "gracePeriodSeconds": 10,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 2,
            },
        ],
    }
    deploy(marathon.client, app)
    (first,) = healthy_tasks(marathon.client, app["id"])
    assert len(first.health) == 2 and all(h.alive for h in first.health)
    sandbox = marathon.workdir / "w" / "sandboxes" / first.id
    (sandbox / "ok.txt").unlink()  # HTTP check now answers 404; TCP still passes
    start = time.monotonic()

    def replaced() -> Any:
        tasks = healthy_tasks(marathon.client, app["id"])
        return tasks if tasks and tasks[0].id != first.id else None

    (second,) = wait_for(replaced, what="replacement task", timeout=20)
    elapsed = time.monotonic() - start
    # 2 failures at 1 s interval, then backoff 1 s, then the first passing check.
    assert 1.0 <= elapsed < 10, elapsed
    assert pid_of_task(first.id) is None
    app_now = marathon.client.get_app(app["id"])
    assert app_now.tasks_healthy == 1 and app_now.last_task_failure is None  # a kill is not a failure (Marathon)
    marathon.client.delete_app(app["id"], force=True)


def test_grace_period_ignores_command_check_failures(marathon: LocalMarathon) -> None:
    app = {
        "id": "/health/grace",
        "cmd": "exec sleep 300",
        "healthChecks": [
            {
                "protocol": "COMMAND",
                "command": {"value": "false"},
                "gracePeriodSeconds": 3,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 1,
                "delaySeconds": 0,
            }
        ],
    }
    marathon.client.update_app(app["id"], app)
    (task,) = wait_for(lambda: marathon.client.app_tasks(app["id"]), what="task", timeout=10)
    wait_for(lambda: pid_of_task(task.id), what="task process", timeout=10)
    started = time.monotonic()
    wait_for(lambda: pid_of_task(task.id) is None, what="first task killed", timeout=15)
    lived = time.monotonic() - started
    assert 2.0 <= lived <= 8.0, f"killed after {lived:.1f}s; grace period is 3s"
    marathon.client.delete_app(app["id"], force=True)


def test_backoff_and_last_task_failure(marathon: LocalMarathon, tmp_path: Path) -> None:
    launches = tmp_path / "launches"
    app = {
        "id": "/crash/app",
        "cmd": f"date +%s.%N >> {launches}; echo boom >&2; exit 3",
        "backoffSeconds": 1,
        "backoffFactor": 2,
        "maxLaunchDelaySeconds": 2,
    }
    marathon.client.update_app(app["id"], app)
    wait_for(lambda: launches.exists() and len(launches.read_text().split()) >= 4, what="4 launches", timeout=20)
    marathon.client.delete_app(app["id"], force=True)
    times = [float(x) for x in launches.read_text().split()]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # delays 1, 2, then capped at 2 (plus a loop turn and a fork each)
    assert 0.9 <= gaps[0] <= 1.8 and 1.9 <= gaps[1] <= 2.8 and 1.9 <= gaps[2] <= 2.8, gaps


def test_backoff_grows_per_failure_and_starts_again_after_a_quiet_spell_as_marathon_s_rate_limiter() -> None:
    """Marathon drops an app's delay once maxLaunchDelaySeconds have passed since its deadline: a kept environment's
    apps, whose tasks each rerun kills on purpose, do not keep an ever longer backoff."""
    app = AppState({"id": "/a", "backoffSeconds": 1, "backoffFactor": 2, "maxLaunchDelaySeconds": 4}, "v1")
    holds = []
    for now in (100.0, 102.0, 105.0, 112.9, 113.0 + 4 + 4):
        app.bump_backoff(now)
        holds.append(app.launch_not_before - now)
    # 1, 2, 4, capped 4 (112.9 is 3.9 s after the deadline 109), then 4.1 s after the deadline 116.9: from 1 again
    assert holds == pytest.approx([1.0, 2.0, 4.0, 4.0, 1.0])


def test_last_task_failure_message(marathon: LocalMarathon) -> None:
    app = {"id": "/crash/msg", "cmd": "exit 7", "backoffSeconds": 30}
    marathon.client.update_app(app["id"], app)
    failure = wait_for(lambda: marathon.client.get_app(app["id"]).last_task_failure, what="failure", timeout=10)
    assert failure.state == "TASK_FAILED" and failure.message == "Command exited with status 7"
    queued = [q for q in marathon.client.queue() if q.app_id == app["id"]]
    assert queued and queued[0].time_left_seconds > 20 and not queued[0].overdue
    # With a health check the deployment cannot finish; the wait fails fast with the task's message.
    started = time.monotonic()
    with pytest.raises(FailedState, match="Command exited with status 7"):
        marathon.client.wait_for_deployment(
            marathon.client.update_app(app["id"], {**app, "healthChecks": [http_check()]}, force=True).deployment_id,
            timeout=20,
            app_ids=[app["id"]],
            since=time.time(),
        )
    assert time.monotonic() - started < 5
    marathon.client.delete_app(app["id"], force=True)


def _watch_restart(client: MarathonClient, app_id: str) -> list[tuple[int, int]]:
    """Restart and sample (alive tasks, healthy tasks) until the deployment is gone."""
    result = client.restart_app(app_id)
    samples = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        app = client.get_app(app_id, embed=["app.tasks"])
        tasks = app.tasks or []
        samples.append((len(tasks), sum(1 for t in tasks if t.healthy and t.state == "TASK_RUNNING")))
        if result.deployment_id not in app.deployments:
            return samples
        time.sleep(0.1)
    raise AssertionError("restart did not finish")


@pytest.mark.parametrize(
    ("min_health", "over", "max_total", "min_healthy"), [(0.5, 0.0, 2, 1), (1.0, 1.0, 4, 2), (1.0, 0.0, 2, 1)]
)
def test_rolling_restart_honours_upgrade_strategy(
    marathon: LocalMarathon, min_health: float, over: float, max_total: int, min_healthy: int
) -> None:
    app_id = f"/rolling/app-{int(min_health * 10)}-{int(over * 10)}"
    app = {
        "id": app_id,
        "cmd": HTTP_APP,
        "instances": 2,
        "healthChecks": [http_check()],
        "upgradeStrategy": {"minimumHealthCapacity": min_health, "maximumOverCapacity": over},
    }
    deploy(marathon.client, app)
    before = {t.id for t in marathon.client.app_tasks(app_id)}
    samples = _watch_restart(marathon.client, app_id)
    after = marathon.client.get_app(app_id, embed=["app.tasks"])
    assert {t.id for t in after.tasks or []}.isdisjoint(before), "every task was replaced"
    assert after.tasks_healthy == 2
    assert all(t.version == after.version for t in after.tasks or [])
    assert max(n for n, _ in samples) <= max_total, samples
    assert min(h for _, h in samples) >= min_healthy, samples
    marathon.client.delete_app(app_id, force=True)


def test_locked_force_and_cancel_with_rollback(marathon: LocalMarathon) -> None:
    c = marathon.client
    good = {"id": "/lock/app", "cmd": HTTP_APP, "healthChecks": [http_check(gracePeriodSeconds=300)]}
    deploy(c, good)
    broken = {**good, "cmd": "exec sleep 300"}  # never healthy: its deployment cannot finish
    stuck = c.update_app(good["id"], broken)
    assert [d.id for d in c.deployments()] == [stuck.deployment_id]
    with pytest.raises(Locked) as locked:
        c.update_app(good["id"], {**broken, "env": {"A": "1"}})
    assert locked.value.deployment_ids == [stuck.deployment_id]
    assert "locked by one or more deployments" in str(locked.value)
    rollback = c.cancel_deployment(stuck.deployment_id)
    assert rollback is not None
    c.wait_for_deployment(rollback.deployment_id, timeout=30)
    restored = c.get_app(good["id"], embed=["app.tasks"])
    assert restored.raw["cmd"] == HTTP_APP and restored.tasks_healthy == 1
    stuck2 = c.update_app(good["id"], broken)
    assert c.cancel_deployment(stuck2.deployment_id, force=True) is None
    assert c.deployments() == []
    with pytest.raises(NotFound):
        c.cancel_deployment(stuck2.deployment_id)
    c.delete_app(good["id"], force=True)


def test_group_put_removes_missing_apps_and_delete_stops_tasks(marathon: LocalMarathon) -> None:
    c = marathon.client
    body = {"id": "/grp", "apps": [{"id": "one", "cmd": "exec sleep 300"}, {"id": "two", "cmd": "exec sleep 300"}]}
    result = c.put_group("/grp", body)
    c.wait_for_deployment(result.deployment_id, timeout=20)
    group = c.get_group("/grp")
    assert sorted(a.id for a in group.apps) == ["/grp/one", "/grp/two"]
    two = c.app_tasks("/grp/two")[0]
    pid_two = pid_of_task(two.id)
    assert pid_two
    result = c.put_group("/grp", {"id": "/grp", "apps": [body["apps"][0]]})
    c.wait_for_deployment(result.deployment_id, timeout=20)
    assert pid_of_task(two.id) is None
    with pytest.raises(NotFound):
        c.get_app("/grp/two")
    one = c.app_tasks("/grp/one")[0]
    result = c.delete_group("/grp")
    c.wait_for_deployment(result.deployment_id, timeout=20)
    assert pid_of_task(one.id) is None
    with pytest.raises(NotFound):
        c.get_group("/grp")


def test_killed_task_is_relaunched(marathon: LocalMarathon) -> None:
    app = {"id": "/heal/app", "cmd": HTTP_APP, "healthChecks": [http_check()]}
    deploy(marathon.client, app)
    (task,) = healthy_tasks(marathon.client, app["id"])
    os.killpg(pid_of_task(task.id) or 0, signal.SIGKILL)
    (new,) = wait_for(
        lambda: [t for t in healthy_tasks(marathon.client, app["id"]) if t.id != task.id], what="relaunch", timeout=15
    )
    failure = marathon.client.get_app(app["id"]).last_task_failure
    assert failure is not None and failure.task_id == task.id and "SIGKILL" in failure.message
    marathon.client.delete_app(app["id"], force=True)


def test_scheduler_stop_kills_every_task(tmp_path: Path) -> None:
    server = LocalMarathon(tmp_path)
    try:
        body = {
            "id": "/stop",
            "apps": [
                {"id": "a", "cmd": "sleep 300 & sleep 300 & wait", "instances": 2},
                {"id": "b", "cmd": "exec sleep 300"},
            ],
        }
        server.client.wait_for_deployment(server.client.put_group("/stop", body).deployment_id, timeout=20)
        assert len(server.task_pids()) >= 2 * 3 + 1
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0
    assert server.marked() == []


def test_tasks_die_with_a_killed_scheduler(tmp_path: Path) -> None:
    """SIGKILL to the scheduler: PR_SET_PDEATHSIG makes the kernel kill each task leader."""
    server = LocalMarathon(tmp_path)
    body = {"id": "/die", "apps": [{"id": "a", "cmd": "exec sleep 300", "instances": 3}]}
    server.client.wait_for_deployment(server.client.put_group("/die", body).deployment_id, timeout=20)
    assert len(server.task_pids()) == 3
    server.stop(signal.SIGKILL)
    wait_for(lambda: server.marked() == [], what="tasks gone after SIGKILL", timeout=5)


def test_bulk_listing_body_shapes(marathon: LocalMarathon) -> None:
    """GET /v2/apps?embed=apps.tasks returns RAML AppInfo fields the client and suites read."""
    app = {"id": "/shape/app", "cmd": HTTP_APP, "healthChecks": [http_check()]}
    deploy(marathon.client, app)
    raw = marathon.http.get(f"{marathon.url}/v2/apps", params={"embed": "apps.tasks", "id": "/shape"}, timeout=5).json()
    (body,) = raw["apps"]
    for key in (
        "id",
        "cmd",
        "instances",
        "version",
        "versionInfo",
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
        "deployments",
        "tasks",
        "portDefinitions",
        "upgradeStrategy",
        "healthChecks",
    ):
        assert key in body, key
    (task,) = body["tasks"]
    for key in ("id", "appId", "host", "ports", "state", "stagedAt", "startedAt", "version", "healthCheckResults"):
        assert key in task, key
    assert set(task["healthCheckResults"][0]) == {
        "alive",
        "consecutiveFailures",
        "firstSuccess",
        "lastSuccess",
        "lastFailure",
        "lastFailureCause",
        "instanceId",
    }
    assert task["healthCheckResults"][0]["instanceId"].startswith("shape_app.marathon-")
    assert json.loads(json.dumps(marathon.client.get_group("/shape").raw))["apps"][0]["id"] == "/shape/app"
    marathon.client.delete_app(app["id"], force=True)


def test_a_failed_task_says_why(marathon: LocalMarathon) -> None:
    """The last lines of a failed task's stderr are in its lastTaskFailure and in the deployment's failure."""
    app = {
        "id": "/crash/why",
        "cmd": "echo starting; echo 'config key DATABASE_URL is missing' >&2; exit 1",
        "backoffSeconds": 30,
        "healthChecks": [http_check()],
    }
    with pytest.raises(FailedState, match="config key DATABASE_URL is missing") as caught:
        marathon.client.wait_for_deployment(
            marathon.client.update_app(app["id"], app).deployment_id,
            timeout=20,
            app_ids=[app["id"]],
            since=time.time(),
        )
    assert "Command exited with status 1" in str(caught.value)
    failure = marathon.client.get_app(app["id"]).last_task_failure
    assert failure is not None and "config key DATABASE_URL is missing" in failure.message
    assert "starting" not in failure.message  # stderr only, not stdout
    marathon.client.delete_app(app["id"], force=True)
