"""A Marathon task that fails says why: its stderr reaches the error, the JUnit evidence and summary.md."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from conftest import Project

DEPLOYS_A_CRASHING_APP = """
import time

from envfixtures.drivers.marathon.client import MarathonClient


def test_deploy(scheduler):
    client = MarathonClient.from_facts(scheduler)
    app = {
        "id": "/t/crash",
        "cmd": "echo 'fatal: queue orders.created is not declared' >&2; exit 1",
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 1}],
    }
    deployment = client.update_app(app["id"], app).deployment_id
    client.wait_for_deployment(deployment, timeout=30, app_ids=[app["id"]], since=time.time())
"""

TEXT = "fatal: queue orders.created is not declared"


def test_a_failed_task_says_why_in_the_error_and_the_junit_evidence(project: Project) -> None:
    project.pytester.makeini("[pytest]\nenv_components = scheduler\n")
    project.pytester.makepyfile(test_x=DEPLOYS_A_CRASHING_APP)
    result = project.run("--junitxml=reports/junit.xml")
    result.assert_outcomes(failed=1)
    case = ET.parse(project.path / "reports" / "junit.xml").getroot().find(".//testcase")
    failure = case.find("failure")
    assert TEXT in failure.get("message") and "Command exited with status 1" in failure.get("message")
    evidence = "".join(e.text or "" for e in case.findall("system-out"))
    assert "envfixtures evidence" in evidence and "/t/crash: lastTaskFailure TASK_FAILED" in evidence
    assert TEXT in evidence
    summary = (project.path / "reports" / "summary.md").read_text()
    assert TEXT in summary
    assert not project.alive(), "the scheduler and its tasks are gone after the run"
