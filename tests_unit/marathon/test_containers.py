"""Docker apps of the local scheduler run as podman containers pulled from a registry, as on a Mesos agent.

A real registry (Debian's docker-registry, on loopback, closed by a password) holds two test images made offline:
busybox (from Debian's busybox-static, imported once per machine) and one built from it with an ENTRYPOINT.
Apps fetch the registry's credentials as Marathon documents (``docker.tar.gz``), and the scheduler pulls, runs,
health-checks, kills and relaunches their containers.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from envfixtures.core.ports import free_port
from envfixtures.core.processes import standalone_spawner
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.containers import images, podman, registry
from envfixtures.drivers.marathon import containerizer
from envfixtures.drivers.marathon.client import MarathonClient
from envfixtures.testing import BUSYBOX_IMAGE, BUSYBOX_ROOT_COMMAND

from .conftest import LocalMarathon, deploy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        podman.missing() is not None or registry.executable() is None or not Path("/bin/busybox").is_file(),
        reason=f"needs podman, runc, docker-registry and busybox-static ({podman.INSTALL_HINT})",
    ),
]

BUSYBOX = BUSYBOX_IMAGE
ENTRYPOINT_FILE = f'FROM {BUSYBOX}\nENTRYPOINT ["/bin/echo", "from-entrypoint"]\nCMD ["from-cmd"]\n'


@dataclass
class Registry:
    address: str
    docker_config: str  # the file:// URI apps fetch
    busybox: str
    entrypoint: str


@pytest.fixture(scope="module")
def reg(marathon: LocalMarathon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("registry")
    images.ensure_base(BUSYBOX, BUSYBOX_ROOT_COMMAND, work, log=work / "base.log")
    port = free_port()
    address = f"127.0.0.1:{port}"
    user, password = "tester", "registry-secret-0123"
    config = registry.configure(work / "registry", port, user, password)
    process = standalone_spawner(work, marathon.marker, component="registry")("registry", registry.argv(config))
    try:
        process.wait_ready(
            lambda: registry.answers(address, user, password), what="registry", timeout=30, retry_on=(OSError,)
        )
        authfile = registry.write_auth_file(work / "auth.json", address, user, password)
        # The scheduler reads file:// fetches only from its own directory, as the environment's directory.
        tarball = registry.write_docker_tarball(marathon.workdir / "w" / "docker.tar.gz", address, user, password)
        busybox = f"{address}/test/busybox:1"
        podman.run("tag", BUSYBOX, busybox)
        images.push(busybox, authfile, work)
        context = work / "entrypoint"
        context.mkdir()
        (context / "Containerfile").write_text(ENTRYPOINT_FILE)
        entrypoint = f"{address}/test/entrypoint:1"
        images.build(work, "entrypoint/Containerfile", entrypoint, env_name=marathon.marker, sha="0" * 40,
                     log=work / "build.log")  # fmt: skip
        images.push(entrypoint, authfile, work)
        for ref in (busybox, entrypoint):  # only the registry has them now: every launch pulls
            podman.run("rmi", ref)
        yield Registry(address, tarball.as_uri(), busybox, entrypoint)
    finally:
        process.stop(timeout=5)
        podman.remove_images(marathon.marker)  # the entrypoint image (built with the marker's label)
        podman.run("rmi", "--ignore", f"{address}/test/busybox:1", check=False)  # the tag the pulls made


def docker_app(app_id: str, reg: Registry, image: str | None = None, **over: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "id": app_id,
        "instances": 1,
        "cpus": 0.1,
        "mem": 32,
        "fetch": [{"uri": reg.docker_config, "extract": True}],
        "container": {"type": "DOCKER", "docker": {"image": image or reg.busybox}},
        "backoffSeconds": 1,
        "maxLaunchDelaySeconds": 2,
    }
    app.update(over)
    return app


def remove(client: MarathonClient, app_id: str) -> None:
    client.wait_for_deployment(client.delete_app(app_id, force=True).deployment_id, timeout=30)


def containers_of(task_id: str) -> list[dict[str, Any]]:
    out = podman.run("ps", "-a", "--filter", f"label=envfixtures.task={task_id}", "--format", "json")
    return json.loads(out or "[]")


def failure(client: MarathonClient, app_id: str, timeout: float = 30) -> Any:
    return wait_for(
        lambda: client.get_app(app_id).last_task_failure, what=f"a task failure of {app_id}", timeout=timeout
    )


BRIDGE_HTTP = {
    "cmd": "mkdir -p /www && echo bridged-ok > /www/health && exec httpd -f -p 8080 -h /www",
    "container": None,  # set per test
    "networks": [{"mode": "container/bridge"}],
    "healthChecks": [
        {
            "protocol": "HTTP",
            "path": "/health",
            "portIndex": 0,
            "gracePeriodSeconds": 20,
            "intervalSeconds": 1,
            "timeoutSeconds": 1,
            "maxConsecutiveFailures": 3,
        },
    ],  # fmt: skip
}


def bridged_app(app_id: str, reg: Registry) -> dict[str, Any]:
    app = docker_app(app_id, reg, **{k: v for k, v in BRIDGE_HTTP.items() if k != "container"})
    app["container"]["portMappings"] = [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp", "name": "web"}]
    return app


def test_a_bridge_app_answers_its_health_check_on_the_mapped_port(marathon: LocalMarathon, reg: Registry) -> None:
    app = bridged_app("/containers/bridge", reg)
    deploy(marathon.client, app)
    (task,) = wait_for(
        lambda: [t for t in marathon.client.app_tasks(app["id"]) if t.healthy], what="a healthy task", timeout=60
    )
    (port,) = task.ports
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).text == "bridged-ok\n"
    (container,) = containers_of(task.id)
    assert container["Image"] == reg.busybox, "the container runs the image pulled from the registry"
    assert container["Labels"][podman.ENV_LABEL] == marathon.marker
    published = [(p["host_ip"], p["host_port"], p["container_port"]) for p in container["Ports"]]
    assert published == [("127.0.0.1", port, 8080)], "mapped on loopback only, to the container's port"
    env = marathon.http.get(f"{marathon.url}/v2/apps{app['id']}").json()["app"]
    assert env["container"]["portMappings"][0]["containerPort"] == 8080
    remove(marathon.client, app["id"])
    wait_for(lambda: not containers_of(task.id), what="the container removed with its app", timeout=20)


def test_a_container_killed_from_outside_is_relaunched(marathon: LocalMarathon, reg: Registry) -> None:
    app = bridged_app("/containers/killed", reg)
    deploy(marathon.client, app)
    (first,) = wait_for(lambda: [t for t in marathon.client.app_tasks(app["id"]) if t.healthy], what="task", timeout=60)
    podman.run("kill", containerizer.container_name(first.id))

    def replaced() -> list[Any]:
        return [t for t in marathon.client.app_tasks(app["id"]) if t.healthy and t.id != first.id]

    (second,) = wait_for(replaced, what="a new healthy task", timeout=60)
    assert containers_of(second.id), "the new task is a container again"
    assert not containers_of(first.id), "the killed container is gone"
    lost = failure(marathon.client, app["id"])
    assert lost.task_id == first.id and "Container exited with status 137" in lost.message, lost.message
    remove(marathon.client, app["id"])


def test_a_container_that_exits_1_shows_its_log_tail(marathon: LocalMarathon, reg: Registry) -> None:
    app = docker_app("/containers/crashing", reg, cmd="echo starting; echo the-cause-of-death >&2; exit 1")
    marathon.client.update_app(app["id"], app, force=True)
    lost = failure(marathon.client, app["id"])
    assert lost.message.startswith("Container exited with status 1"), lost.message
    assert "the-cause-of-death" in lost.message, lost.message
    remove(marathon.client, app["id"])


def test_an_image_that_does_not_exist_fails_the_task_saying_so(marathon: LocalMarathon, reg: Registry) -> None:
    app = docker_app("/containers/missing", reg, image=f"{reg.address}/test/no-such-image:1", cmd="true")
    marathon.client.update_app(app["id"], app, force=True)
    lost = failure(marathon.client, app["id"], timeout=15)
    assert f"Failed to pull image '{reg.address}/test/no-such-image:1'" in lost.message, lost.message
    assert "manifest unknown" in lost.message, lost.message
    remove(marathon.client, app["id"])


def test_cmd_replaces_the_entrypoint_and_args_go_to_it(marathon: LocalMarathon, reg: Registry) -> None:
    """Docker's semantics as Mesos applies them: ``args`` are the entrypoint's arguments, ``cmd`` runs through
    ``/bin/sh -c`` in its place, neither runs the image's own entrypoint and command."""
    cases = {
        "/containers/args": ({"args": ["from-args"]}, "from-entrypoint from-args"),
        "/containers/cmd": ({"cmd": "echo from-shell-$((40 + 2))"}, "from-shell-42"),
        "/containers/neither": ({}, "from-entrypoint from-cmd"),
    }
    for app_id, (over, _) in cases.items():
        marathon.client.update_app(app_id, docker_app(app_id, reg, image=reg.entrypoint, instances=1, **over))
    sandboxes = marathon.workdir / "w" / "sandboxes"
    for app_id, (_, expected) in cases.items():
        prefix = app_id.strip("/").replace("/", "_") + "."

        def printed(prefix: str = prefix) -> list[str]:
            return [p.read_text().strip() for p in sandboxes.glob(f"{prefix}*/stdout") if p.read_text().strip()]

        assert expected in wait_for(printed, what=f"the output of {app_id}", timeout=60)[0].splitlines(), app_id
    for app_id in cases:
        remove(marathon.client, app_id)


def test_volumes_bind_inside_the_sandbox_and_nowhere_else(
    marathon: LocalMarathon, reg: Registry, tmp_path: Path
) -> None:
    inside = docker_app(
        "/containers/volume",
        reg,
        cmd="echo written-through > /data/out.txt && sleep 600",
        container={"type": "DOCKER", "docker": {"image": reg.busybox},
                   "volumes": [{"containerPath": "/data", "hostPath": "data", "mode": "RW"}]},
    )  # fmt: skip
    deploy(marathon.client, inside)
    (task,) = wait_for(lambda: marathon.client.app_tasks(inside["id"]), what="task", timeout=60)
    out = marathon.workdir / "w" / "sandboxes" / task.id / "data" / "out.txt"
    assert wait_for(lambda: out.is_file() and out.read_text(), what="out.txt", timeout=30) == "written-through\n"
    remove(marathon.client, inside["id"])

    outside = docker_app(
        "/containers/escape",
        reg,
        cmd="true",
        container={"type": "DOCKER", "docker": {"image": reg.busybox},
                   "volumes": [{"containerPath": "/host", "hostPath": str(tmp_path), "mode": "RW"}]},
    )  # fmt: skip
    marathon.client.update_app(outside["id"], outside, force=True)
    lost = failure(marathon.client, outside["id"])
    assert "outside the task's sandbox" in lost.message, lost.message
    remove(marathon.client, outside["id"])


def test_containers_of_a_killed_scheduler_are_removed_by_label(reg: Registry, tmp_path: Path) -> None:
    """SIGKILL to the scheduler kills its ``podman run`` processes, not their containers; removal by label
    (what the scheduler component's teardown and ``envfixtures reap`` do) leaves none, and no layer mount."""
    other = LocalMarathon(tmp_path)
    shutil.copy(Path(reg.docker_config.removeprefix("file://")), tmp_path / "w" / "docker.tar.gz")
    config = (tmp_path / "w" / "docker.tar.gz").as_uri()
    app = docker_app("/orphans/sleeper", reg, cmd="exec sleep 600", instances=2)
    app["fetch"] = [{"uri": config, "extract": True}]
    try:
        deploy(other.client, app)
        wait_for(lambda: len(other.client.app_tasks(app["id"])) == 2, what="two tasks", timeout=60)

        def both() -> list[str] | None:
            names = podman.labelled_containers(other.marker)
            return names if len(names) == 2 else None

        running = wait_for(both, what="two containers", timeout=30)
        mounts = _overlay_mounts()
        other.stop(signal.SIGKILL)
        assert podman.labelled_containers(other.marker) == running, "the containers outlive a SIGKILLed scheduler"
        assert sorted(podman.remove_containers(other.marker)) == sorted(running)
        assert podman.labelled_containers(other.marker) == []
        assert len(_overlay_mounts()) <= len(mounts) - 2, "the two containers' layer mounts are gone"
    finally:
        other.stop(signal.SIGKILL)
        podman.remove_containers(other.marker)


def _overlay_mounts() -> set[str]:
    with open("/proc/mounts") as fh:
        return {line.split()[1] for line in fh if line.split()[2] == "overlay" and "/containers/storage/" in line}
