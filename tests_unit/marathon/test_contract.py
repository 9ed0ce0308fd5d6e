"""Contract tests: the client's parsers read every example and captured real response of the reference folder.

Each reference file is mapped to the parser of the call it documents. Files that document something the
client does not use (pods, events, SSE, app versions) are listed in NOT_APPLICABLE with the reason, and a
test fails if a file is neither parsed nor listed, so a new reference file cannot be skipped silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from envfixtures.drivers.marathon import models
from envfixtures.drivers.marathon.client import Conflict, Locked, error_for
from envfixtures.drivers.marathon.validation import validate_app

#: Marathon's published API description and captured responses, copied into the repository (see its README).
REF = Path(__file__).resolve().parents[2] / "reference" / "marathon"


def apps_list(body: Any) -> list[models.App]:
    return [models.App.from_json(a, f"/apps({i})") for i, a in enumerate(body["apps"])]


def tasks_list(body: Any) -> list[models.Task]:
    return [models.Task.from_json(t, f"/tasks({i})") for i, t in enumerate(body["tasks"])]


def deployments(body: Any) -> list[models.Deployment]:
    return [models.Deployment.from_json(d, f"({i})") for i, d in enumerate(body)]


def queue(body: Any) -> list[models.QueueItem]:
    return [models.QueueItem.from_json(q, f"/queue({i})") for i, q in enumerate(body["queue"])]


def app_or_wrapped(body: Any) -> models.App:
    return models.App.from_json(body["app"] if "app" in body else body)


def error_body(status: int) -> Callable[[Any], Any]:
    def parse(body: Any) -> Any:
        err = error_for("PUT", "/v2/x", status, body)
        assert err.message == body["message"]
        return err

    return parse


RAML_EXAMPLES: dict[str, Callable[[Any], Any]] = {
    "app.json": models.App.from_json,
    "app-check-http-example.json": models.App.from_json,
    "app_list.json": apps_list,
    "app_patch.json": lambda b: b,  # a partial body (no id): the client sends, never parses it
    "apps_create.json": lambda b: [models.App.from_json(a) for a in b],
    "apps_patch.json": lambda b: b,
    "app_task.json": lambda b: models.Task.from_json(b["task"]),
    "app_tasks.json": tasks_list,
    "tasks.json": tasks_list,
    "deployments.json": deployments,
    "deployments_result.json": models.DeploymentResult.from_json,
    "deployment_steps.json": models.Deployment.parse_steps,
    "info.json": models.Info.from_json,
    "group.json": models.Group.from_json,
    "queue.json": queue,
}

LEGACY: dict[str, Callable[[Any], Any]] = {
    "DELETE_v2_apps_id.200.json": models.DeploymentResult.from_json,
    "DELETE_v2_deployments_id.200.json": models.DeploymentResult.from_json,
    "GET_v2_apps.200.json": apps_list,
    "GET_v2_apps_id.200.with-tasks-healthCheckResults-lastTaskFailure.json": app_or_wrapped,
    "GET_v2_apps_id_tasks.200.json": tasks_list,
    "GET_v2_deployments.200.json": deployments,
    "GET_v2_groups.200.json": models.Group.from_json,
    "GET_v2_info.200.legacy.json": models.Info.from_json,
    "GET_v2_leader.200.json": lambda b: b["leader"],
    "GET_v2_tasks.200.with-healthCheckResults.json": tasks_list,
    "POST_v2_apps.201.app-with-deployments.json": models.App.from_json,
    "POST_v2_apps.409.already-exists.json": error_body(409),
    "POST_v2_apps_id_restart.200.json": models.DeploymentResult.from_json,
    "PUT_v2_apps_id.200.deploymentResult.json": models.DeploymentResult.from_json,
    "PUT_v2_apps_id.200.version-rollback.json": models.DeploymentResult.from_json,
    "PUT_v2_apps_id.409.locked-by-deployment.json": error_body(409),
}

REAL: dict[str, Callable[[Any], Any]] = {
    "marathon-lb_1-nginx-marathon1.5.app-definition.json": models.App.from_json,
    "marathon-lb_marathon15_apps.GET_v2_apps_embed_tasks.no-healthchecks.json": apps_list,
    "marathon-lb_zdd_app_blue_marathon1.5.GET_v2_apps_embed_tasks.json": apps_list,
    "marathon-lb_zdd_apps.GET_v2_apps_embed_tasks.marathon0.x.json": apps_list,
}

NOT_APPLICABLE = {
    "pod.json": "pods: the client does not manage pods",
    "events.txt": "server-sent events: the client polls instead of subscribing",
}


def _cases() -> list[tuple[str, Callable[[Any], Any]]]:
    cases = [(f"raml/v2/examples/{n}", p) for n, p in RAML_EXAMPLES.items()]
    cases += [(f"examples/legacy-docs/{n}", p) for n, p in LEGACY.items()]
    cases += [(f"examples/real-responses/{n}", p) for n, p in REAL.items()]
    return cases


@pytest.mark.parametrize(("rel", "parser"), _cases(), ids=[c[0] for c in _cases()])
def test_reference_file_parses(rel: str, parser: Callable[[Any], Any]) -> None:
    result = parser(json.loads((REF / rel).read_text()))
    assert result is not None


def test_every_reference_file_is_covered() -> None:
    covered = {rel for rel, _ in _cases()}
    for folder in ("raml/v2/examples", "examples/legacy-docs", "examples/real-responses"):
        for path in sorted((REF / folder).iterdir()):
            rel = f"{folder}/{path.name}"
            assert rel in covered or path.name in NOT_APPLICABLE, (
                f"{rel} is neither parsed nor listed as not applicable"
            )


def test_captured_health_results_are_read_both_ways() -> None:
    """1.5 names instances (instanceId), 0.x names tasks (taskId): both reach HealthResult.instance_id."""
    new = apps_list(
        json.loads(
            (
                REF / "examples/real-responses/marathon-lb_zdd_app_blue_marathon1.5.GET_v2_apps_embed_tasks.json"
            ).read_text()
        )
    )
    old = apps_list(
        json.loads(
            (REF / "examples/real-responses/marathon-lb_zdd_apps.GET_v2_apps_embed_tasks.marathon0.x.json").read_text()
        )
    )
    new_results = [h for a in new for t in a.tasks or [] for h in t.health]
    old_results = [h for a in old for t in a.tasks or [] for h in t.health]
    assert new_results and all(h.instance_id and ".marathon-" in h.instance_id for h in new_results)
    assert old_results and all(h.instance_id for h in old_results)
    blue = new[0]
    assert blue.tasks_healthy == blue.instances == len(blue.tasks or [])
    assert all(t.healthy for t in blue.tasks or [])


def test_captured_no_healthcheck_apps_have_zero_healthy() -> None:
    apps = apps_list(
        json.loads(
            (
                REF / "examples/real-responses/marathon-lb_marathon15_apps.GET_v2_apps_embed_tasks.no-healthchecks.json"
            ).read_text()
        )
    )
    assert apps and all(not a.health_checks and a.tasks_healthy == 0 for a in apps)


def test_last_task_failure_of_the_legacy_example() -> None:
    app = app_or_wrapped(
        json.loads(
            (
                REF / "examples/legacy-docs/GET_v2_apps_id.200.with-tasks-healthCheckResults-lastTaskFailure.json"
            ).read_text()
        )
    )
    assert app.last_task_failure is not None
    assert app.last_task_failure.message == "Abnormal executor termination"
    assert app.deployments == ["44c4ed48-ee53-4e0f-82dc-4df8b2a69057"]


def test_locked_409_keeps_deployment_ids() -> None:
    body = json.loads((REF / "examples/legacy-docs/PUT_v2_apps_id.409.locked-by-deployment.json").read_text())
    err = error_for("PUT", "/v2/apps/x", 409, body)
    assert isinstance(err, Locked)
    assert err.deployment_ids == ["5cd987cd-85ae-4e70-8df7-f1438367d9cb"]
    exists = error_for(
        "POST",
        "/v2/apps",
        409,
        json.loads((REF / "examples/legacy-docs/POST_v2_apps.409.already-exists.json").read_text()),
    )
    assert isinstance(exists, Conflict) and not isinstance(exists, Locked)


def test_raml_422_example_paths() -> None:
    """The 422 body of traits.raml keeps its details path in the exception."""
    body = {
        "message": "Object is not valid",
        "details": [{"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]}],
    }
    err = error_for("POST", "/v2/apps", 422, body)
    assert err.paths == ["/upgradeStrategy/minimumHealthCapacity"]
    assert "is greater than 1" in str(err)


def test_captured_app_definition_is_valid_for_our_validation() -> None:
    """A real 1.5 request body passes the validation the local scheduler applies (no false 422)."""
    body = json.loads((REF / "examples/real-responses/marathon-lb_1-nginx-marathon1.5.app-definition.json").read_text())
    assert validate_app(body) == []


# -- go-marathon's canned responses -------------------------------------------------------------------------


def _go_parser(method: str, uri: str) -> Callable[[Any], Any] | None:
    path = uri.split("?")[0].removeprefix("/marathon")
    if path == "/ping":
        return lambda text: text
    if "/pods" in path or "eventSubscriptions" in path or "/versions" in path or path.endswith("/delay"):
        return None
    if path == "/v2/apps" and method == "GET":
        return apps_list
    if path == "/v2/apps" and method == "POST":
        return models.App.from_json
    if path.startswith("/v2/apps/") and path.endswith("/tasks") and method in ("GET", "DELETE"):
        return tasks_list
    if path.startswith("/v2/apps/") and "/tasks/" in path and method == "DELETE":
        return lambda b: models.Task.from_json(b["task"])
    if path.startswith("/v2/apps/") and method == "GET":
        return app_or_wrapped
    if path.startswith("/v2/apps/") and method in ("PUT", "DELETE", "POST"):
        return models.DeploymentResult.from_json
    if path == "/v2/tasks" and method == "GET":
        return tasks_list
    if path.startswith("/v2/groups") and method == "GET":
        return lambda b: models.Group.from_json(b) if "id" in b else [models.Group.from_json(g) for g in b["groups"]]
    if path.startswith("/v2/groups") and method in ("PUT", "POST", "DELETE"):
        return models.DeploymentResult.from_json
    if path == "/v2/deployments" and method == "GET":
        return deployments
    if path.startswith("/v2/deployments/") and method == "DELETE":
        return lambda b: None if not b else models.DeploymentResult.from_json(b)  # force: 202, empty
    if path == "/v2/info":
        return models.Info.from_json
    if path == "/v2/leader" and method == "GET":
        return lambda b: b["leader"]
    if path == "/v2/queue":
        return queue
    return None


def _go_entries() -> list[dict[str, Any]]:
    path = REF / "fixtures" / "go-marathon_methods.yml"
    return yaml.safe_load(path.read_text()) if path.exists() else []


#: go-marathon's fake server trims some bodies to the one field its test reads (an app without "id", tasks
#: without "host", which every real Marathon sends): our parser must refuse them rather than invent data.
GO_TRIMMED = {
    ("GET", "/v2/apps?embed=apps.taskStats"),
    ("GET", "/v2/apps?cmd=nginx"),
    ("GET", "/v2/apps/fake-app/tasks"),
    ("DELETE", "/v2/apps/fake-app/tasks/fake-app.fake-task"),
    ("DELETE", "/v2/apps/fake-group/fake-app/tasks/fake-group_fake-app.fake-task"),
    ("GET", "/v2/apps/no-health-check-results-app"),
}


def test_go_marathon_canned_responses_parse() -> None:
    parsed = skipped = 0
    for entry in _go_entries():
        parser = _go_parser(entry["method"], entry["uri"])
        content = (entry.get("content") or "").strip()
        if parser is None or not content:
            skipped += 1
            continue
        body = content if entry["uri"].endswith("/ping") else json.loads(content)
        if (entry["method"], entry["uri"]) in GO_TRIMMED:
            with pytest.raises(models.MalformedResponse):
                parser(body)
            continue
        if isinstance(body, dict) and "message" in body and len(body) <= 2 and "id" not in body:
            error_for(entry["method"], entry["uri"], 400, body)  # an error body: it must map to an exception
        else:
            parser(body)
        parsed += 1
    assert parsed >= 30, f"only {parsed} go-marathon responses parsed ({skipped} skipped)"
