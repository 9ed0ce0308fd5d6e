"""Routing of the local scheduler (werkzeug rules, :data:`envfixtures.drivers.marathon.server.ROUTES`).

App ids hold slashes, so a path like ``/v2/apps/group/tasks`` fits both the app (``/group/tasks``) and the
tasks of app ``/group``. The suffix wins, as in Marathon (its ``{appId:.+}/tasks`` resource has more literal
characters than ``{id:.+}``, and Jersey prefers it) and as the if-chain this routing replaced did: the app
``/group/tasks`` itself is read with ``GET /v2/apps?id=/group/tasks`` and its tasks with
``GET /v2/apps/group/tasks/tasks``.
"""

from __future__ import annotations

import pytest

from envfixtures.drivers.marathon.engine import ApiError
from envfixtures.drivers.marathon.server import route

from .conftest import LocalMarathon


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "args"),
    [
        ("GET", "/ping", "ping", {}),
        ("HEAD", "/ping", "ping", {}),
        ("GET", "/v2/apps", "list_apps", {}),
        ("POST", "/v2/apps", "create_app", {}),
        ("GET", "/v2/apps/group", "get_app", {"app_id": "group"}),
        ("PATCH", "/v2/apps/a/b/c", "put_app", {"app_id": "a/b/c"}),
        # A suffix wins over the app id that would swallow it.
        ("GET", "/v2/apps/group/tasks", "app_tasks", {"app_id": "group"}),
        ("GET", "/v2/apps/group/tasks/tasks", "app_tasks", {"app_id": "group/tasks"}),
        ("POST", "/v2/apps/group/restart", "restart_app", {"app_id": "group"}),
        ("POST", "/v2/apps/a/restart/restart", "restart_app", {"app_id": "a/restart"}),
        ("POST", "/v2/apps/group/tasks/restart", "restart_app", {"app_id": "group/tasks"}),
        # The app id of a task ends at the first /tasks/.
        ("DELETE", "/v2/apps/group/tasks/t1", "kill_task", {"app_id": "group", "task_id": "t1"}),
        ("DELETE", "/v2/apps/a/tasks/b/tasks/c", "kill_task", {"app_id": "a", "task_id": "b/tasks/c"}),
        # A suffix rule without the method gives way to the app rule with it.
        ("DELETE", "/v2/apps/group/tasks", "delete_app", {"app_id": "group/tasks"}),
        ("PUT", "/v2/apps/group/tasks", "put_app", {"app_id": "group/tasks"}),
        ("GET", "/v2/apps/group/restart", "get_app", {"app_id": "group/restart"}),
        ("GET", "/v2/apps/group/tasks/t1", "get_app", {"app_id": "group/tasks/t1"}),
        ("GET", "/v2/apps/group/versions", "get_app", {"app_id": "group/versions"}),  # no versions route
        # A segment named like a suffix, not a suffix.
        ("DELETE", "/v2/apps/web/tasksrunner", "delete_app", {"app_id": "web/tasksrunner"}),
        ("GET", "/v2/apps//a", "get_app", {"app_id": "/a"}),  # Marathon's ids drop empty segments
        ("GET", "/v2/groups", "get_group", {}),
        ("POST", "/v2/groups/a/b", "create_group", {"group_id": "a/b"}),
        ("DELETE", "/v2/deployments/a/b", "cancel_deployment", {"deployment_id": "a/b"}),
    ],
)
def test_route(method: str, path: str, endpoint: str, args: dict[str, str]) -> None:
    assert route(method, path) == (endpoint, args)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/v2//apps"),
        ("GET", "/v2/groupsx"),
        ("POST", "/ping"),  # a known path with another method: 404, not 405
        ("PUT", "/v2/apps"),
        ("POST", "/v2/apps/group"),
        ("POST", "/v2/apps/group/tasks"),
        ("GET", "/v2/deployments/d1"),
        ("HEAD", "/v2/info"),  # werkzeug lets HEAD into GET rules; the API answers HEAD on /ping only
        ("HEAD", "/v2/apps/group/tasks"),
    ],
)
def test_unknown_routes_are_404(method: str, path: str) -> None:
    with pytest.raises(ApiError) as err:
        route(method, path)
    assert (err.value.status, err.value.body) == (
        404,
        {"message": f"{method} {path} is not part of the local scheduler's API"},
    )


@pytest.mark.integration
def test_an_app_id_ending_in_tasks_over_http(marathon: LocalMarathon) -> None:
    """App ``/rt/tasks`` beside app ``/rt``: GET /v2/apps/rt/tasks lists the tasks of ``/rt``."""
    url = f"{marathon.url}/v2/apps"

    def create(app_id: str) -> None:
        resp = marathon.http.post(url, json={"id": app_id, "cmd": "exec sleep 300", "instances": 0}, timeout=5)
        assert resp.status_code == 201, resp.text
        assert resp.headers["Location"] == f"/v2/apps{app_id}"

    create("/rt/tasks")
    missing = marathon.http.get(f"{url}/rt/tasks", timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"message": "App '/rt' does not exist"})

    create("/rt")
    for path in ("/rt/tasks", "/rt/tasks/", "/rt%2Ftasks", "/rt/tasks/tasks"):
        resp = marathon.http.get(f"{url}{path}", timeout=5)
        assert (resp.status_code, resp.json()) == (200, {"tasks": []}), path
    (listed,) = marathon.http.get(url, params={"id": "/rt/tasks"}, timeout=5).json()["apps"]
    assert listed["id"] == "/rt/tasks"

    deleted = marathon.http.delete(f"{url}/rt/tasks?force=true", timeout=5)  # the app, not its tasks
    assert deleted.status_code == 200 and deleted.headers["Marathon-Deployment-Id"] == deleted.json()["deploymentId"]
    assert marathon.http.get(url, params={"id": "/rt/tasks"}, timeout=5).json() == {"apps": []}
    assert marathon.http.get(f"{url}/rt/tasks", timeout=5).json() == {"tasks": []}  # /rt is still there
    assert marathon.http.delete(f"{url}/rt?force=true", timeout=5).status_code == 200
