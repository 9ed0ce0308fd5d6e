"""Docker apps through the plugin: images built from the SHA into the environment's registry, a crashing container
saying why in the JUnit evidence, and a hard abort that `envfixtures reap` cleans of containers and registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import Project
from envfixtures.drivers.containers import podman, registry
from envfixtures.testing import BUSYBOX_IMAGE, BUSYBOX_ROOT_COMMAND

pytestmark = pytest.mark.skipif(
    podman.missing() is not None or registry.executable() is None or not Path("/bin/busybox").is_file(),
    reason=f"needs podman, runc, docker-registry and busybox-static ({podman.INSTALL_HINT})",
)

PYPROJECT = f"""
[tool.envfixtures]
components = ["scheduler", "images"]

[tool.envfixtures.images]
containerfiles = {{ "t/app" = "app/Containerfile" }}
bases = {{ "{BUSYBOX_IMAGE}" = {json.dumps(BUSYBOX_ROOT_COMMAND)} }}
"""

CONTAINERFILE = f"FROM {BUSYBOX_IMAGE}\nARG ENVFIXTURES_SHA\nRUN echo $ENVFIXTURES_SHA > /sha\n"

DEPLOYS = """
import time

from envfixtures.drivers.marathon.client import MarathonClient


def deploy(scheduler, images, cmd, checked=True):
    client = MarathonClient.from_facts(scheduler)
    app = {
        "id": "/t/app",
        "cmd": cmd,
        "fetch": [{"uri": images["docker_config"], "extract": True}],
        "container": {"type": "DOCKER", "docker": {"image": images["images"]["t/app"]}},
        "maxLaunchDelaySeconds": 2,
    }
    if checked:  # the deployment waits for a healthy task, and fails with the task's failure
        app["healthChecks"] = [{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 1}]
    deployment = client.update_app(app["id"], app).deployment_id
    client.wait_for_deployment(deployment, timeout=60, app_ids=[app["id"]], since=time.time())
"""

TEXT = "fatal: the image was built from"


def make_project(project: Project, test: str) -> None:
    project.pytester.makeini("[pytest]\n")
    (project.path / "pyproject.toml").write_text(PYPROJECT)
    (project.path / "app").mkdir()
    (project.path / "app" / "Containerfile").write_text(CONTAINERFILE)
    project.pytester.makepyfile(test_x=DEPLOYS + test)
    project.commit()
    project.sha = None  # builds HEAD: the image from its tree


def test_a_crashing_container_says_why_in_the_junit_evidence(project: Project) -> None:
    make_project(
        project,
        "\n\ndef test_deploy(scheduler, images):\n"
        f"    deploy(scheduler, images, 'echo \"{TEXT} $(cat /sha)\" >&2; exit 1')\n",
    )
    result = project.run("--junitxml=reports/junit.xml")
    result.assert_outcomes(failed=1, passed=1)  # passed: the static item of app/Containerfile
    sha = project.git("rev-parse", "HEAD")
    case = ET.parse(project.path / "reports" / "junit.xml").getroot().find(".//testcase[@name='test_deploy']")
    message = case.find("failure").get("message")
    assert "Container exited with status 1" in message and f"{TEXT} {sha}" in message, message
    evidence = "".join(e.text or "" for e in case.findall("system-out"))
    assert "/t/app: lastTaskFailure TASK_FAILED" in evidence and f"{TEXT} {sha}" in evidence, evidence
    env = project.env()
    assert not project.alive(env), "the scheduler and the registry are gone after the run"
    assert podman.labelled_containers(env.name) == [], "no container left"
    assert podman.run("images", "--filter", f"label={podman.ENV_LABEL}={env.name}", "-q").split() == []


def test_sigkill_to_the_run_then_reap_leaves_no_container_registry_or_image(project: Project) -> None:
    make_project(
        project,
        "\n\ndef test_deploy(scheduler, images):\n    deploy(scheduler, images, 'exec sleep 600', checked=False)\n"
        "    time.sleep(600)\n",
    )
    proc = project.popen()
    env = project.wait_for_started("images/registry", timeout=120)
    deadline = time.monotonic() + 120
    while not podman.labelled_containers(env.name) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert podman.labelled_containers(env.name), "the app's container runs"
    os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert podman.labelled_containers(env.name), (
        "its container outlives the killed run (podman's conmon is not of the run's group)"
    )
    reap = subprocess.run(
        [sys.executable, "-m", "envfixtures.cli", "reap"], cwd=project.path, capture_output=True, text=True, timeout=120
    )
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert podman.labelled_containers(env.name) == [], "reap removed the container by its label"
    assert project.alive(env) == [], "registry, scheduler and their processes are gone"
    assert podman.run("images", "--filter", f"label={podman.ENV_LABEL}={env.name}", "-q").split() == []
    with open("/proc/mounts") as mounts:
        assert not [m for m in mounts if env.name in m], "nothing of the environment is still mounted"
    proc.wait(timeout=10)
