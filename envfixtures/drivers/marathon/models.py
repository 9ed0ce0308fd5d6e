"""Typed views of Marathon's response bodies (RAML types App/AppInfo, Task, Health, TaskFailure, DeploymentStepInfo...).

Parsers accept every shape Marathon has produced since 0.7 (the reference folder holds examples from 0.x to
1.11): health results carry ``instanceId`` (>= 1.4) or ``taskId`` (older), tasks may lack ``state``. A body
that lacks a field the client relies on raises :class:`MalformedResponse` naming the path.
The raw dict stays available as ``.raw`` so that nothing Marathon said is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envfixtures.core.errors import EnvfixturesError


class MalformedResponse(EnvfixturesError):
    """A Marathon response body does not have the shape of its RAML type."""


def _need(obj: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise MalformedResponse(f"{where}/{key}: missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise MalformedResponse(f"{where}/{key}: expected {kind}, got {type(value).__name__}")
    return value


def _opt(obj: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise MalformedResponse(f"{where}/{key}: expected {kind}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class HealthResult:
    """One entry of a task's ``healthCheckResults`` (RAML ``Health``)."""

    alive: bool
    consecutive_failures: int
    instance_id: str | None
    first_success: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    last_failure_cause: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "HealthResult":
        alive = _need(data, "alive", where, bool)
        failures = _need(data, "consecutiveFailures", where, (int, float))
        # >= 1.4 names the instance; older Marathon named the task.
        instance = _opt(data, "instanceId", where, str) or _opt(data, "taskId", where, str)
        return cls(
            alive=alive,
            consecutive_failures=int(failures),
            instance_id=instance,
            first_success=_opt(data, "firstSuccess", where, str),
            last_success=_opt(data, "lastSuccess", where, str),
            last_failure=_opt(data, "lastFailure", where, str),
            last_failure_cause=_opt(data, "lastFailureCause", where, str),
        )


@dataclass(frozen=True)
class Task:
    """A task (RAML ``Task``): ``state`` is absent before Marathon 1.2, ``appId`` in some legacy bodies."""

    id: str
    app_id: str | None
    host: str
    ports: list[int]
    state: str | None
    version: str | None
    staged_at: str | None
    started_at: str | None
    health: list[HealthResult]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def healthy(self) -> bool:
        """True when every health check reported alive (False when there is no result yet)."""
        return bool(self.health) and all(h.alive for h in self.health)

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "Task":
        task_id = _need(data, "id", where, str)
        results = _opt(data, "healthCheckResults", where, list, [])
        return cls(
            id=task_id,
            app_id=_opt(data, "appId", where, str),
            host=_need(data, "host", where, str),
            ports=[int(p) for p in _opt(data, "ports", where, list, [])],
            state=_opt(data, "state", where, str),
            version=_opt(data, "version", where, str),
            staged_at=_opt(data, "stagedAt", where, str),
            started_at=_opt(data, "startedAt", where, str),
            health=[HealthResult.from_json(h, f"{where}/healthCheckResults({i})") for i, h in enumerate(results)],
            raw=dict(data),
        )


@dataclass(frozen=True)
class TaskFailure:
    """An app's ``lastTaskFailure`` (RAML ``TaskFailure``)."""

    app_id: str
    task_id: str
    state: str
    message: str
    timestamp: str
    version: str
    host: str

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "TaskFailure":
        return cls(
            app_id=_need(data, "appId", where, str),
            task_id=_need(data, "taskId", where, str),
            state=_need(data, "state", where, str),
            message=_need(data, "message", where, str),
            timestamp=_need(data, "timestamp", where, str),
            version=_need(data, "version", where, str),
            host=_need(data, "host", where, str),
        )


@dataclass(frozen=True)
class App:
    """An app as Marathon returns it (RAML ``AppInfo``): the definition plus status fields asked for by ``embed``."""

    id: str
    instances: int
    version: str | None
    tasks_staged: int | None
    tasks_running: int | None
    tasks_healthy: int | None
    tasks_unhealthy: int | None
    deployments: list[str]
    tasks: list[Task] | None
    last_task_failure: TaskFailure | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def health_checks(self) -> list[dict[str, Any]]:
        return list(self.raw.get("healthChecks") or [])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.raw.get("labels") or {})

    @property
    def image(self) -> str | None:
        """The Docker image of the app's container, when it has one."""
        container = self.raw.get("container") or {}
        return ((container.get("docker") or {}).get("image")) or None

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "App":
        tasks = _opt(data, "tasks", where, list)
        failure = _opt(data, "lastTaskFailure", where, dict)
        deployments = _opt(data, "deployments", where, list, [])
        return cls(
            id=_need(data, "id", where, str),
            instances=int(_opt(data, "instances", where, int, 1)),
            version=_opt(data, "version", where, str),
            tasks_staged=_opt(data, "tasksStaged", where, int),
            tasks_running=_opt(data, "tasksRunning", where, int),
            tasks_healthy=_opt(data, "tasksHealthy", where, int),
            tasks_unhealthy=_opt(data, "tasksUnhealthy", where, int),
            deployments=[_need(d, "id", f"{where}/deployments({i})", str) for i, d in enumerate(deployments)],
            tasks=None if tasks is None else [Task.from_json(t, f"{where}/tasks({i})") for i, t in enumerate(tasks)],
            last_task_failure=None if failure is None else TaskFailure.from_json(failure, f"{where}/lastTaskFailure"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class DeploymentAction:
    action: str
    app: str | None


@dataclass(frozen=True)
class Deployment:
    """One item of GET /v2/deployments (RAML ``DeploymentStepInfo``)."""

    id: str
    version: str | None
    affected_apps: list[str]
    steps: list[list[DeploymentAction]]
    current_actions: list[DeploymentAction]
    current_step: int
    total_steps: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "Deployment":
        current = _need(data, "currentActions", where, list)
        return cls(
            id=_need(data, "id", where, str),
            version=_opt(data, "version", where, str),
            affected_apps=list(_need(data, "affectedApps", where, list)),
            steps=cls.parse_steps(data, where),
            current_actions=[_action(a, f"{where}/currentActions({i})") for i, a in enumerate(current)],
            current_step=int(_need(data, "currentStep", where, int)),
            total_steps=int(_need(data, "totalSteps", where, int)),
            raw=dict(data),
        )

    @staticmethod
    def parse_steps(data: Any, where: str = "") -> list[list[DeploymentAction]]:
        """``steps`` of a deployment, or the whole body of PUT /v2/groups?dryRun=true (RAML DeploymentSteps)."""
        steps = []
        for i, step in enumerate(_need(data, "steps", where, list)):
            # RAML: a step is {"actions": [...]}; Marathon 0.x sent a bare list of actions.
            actions = step if isinstance(step, list) else _need(step, "actions", f"{where}/steps({i})", list)
            steps.append([_action(a, f"{where}/steps({i})/actions({j})") for j, a in enumerate(actions)])
        return steps


def _action(data: Any, where: str) -> DeploymentAction:
    # Marathon 1.1 named the action "type" inside steps (go-marathon's v1.1.1 capture); later ones "action".
    key = "type" if isinstance(data, Mapping) and "action" not in data and "type" in data else "action"
    return DeploymentAction(_need(data, key, where, str), _opt(data, "app", where, str))


@dataclass(frozen=True)
class DeploymentResult:
    """Body of a deployable call (RAML ``DeploymentResult``).

    Marathon 0.x answered DELETE /v2/groups with ``{"version": ...}`` only: ``deployment_id`` is then None
    (the client takes it from the ``Marathon-Deployment-Id`` header when there is one).
    """

    deployment_id: str | None
    version: str

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "DeploymentResult":
        return cls(_opt(data, "deploymentId", where, str), _need(data, "version", where, str))


@dataclass(frozen=True)
class Group:
    """A group with its apps and child groups (RAML ``GroupInfo``)."""

    id: str
    apps: list[App]
    groups: list["Group"]
    version: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    def all_apps(self) -> list[App]:
        """Apps of this group and of every group below it."""
        found = list(self.apps)
        for group in self.groups:
            found.extend(group.all_apps())
        return found

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "Group":
        apps = _opt(data, "apps", where, list, [])
        groups = _opt(data, "groups", where, list, [])
        return cls(
            id=_need(data, "id", where, str),
            apps=[App.from_json(a, f"{where}/apps({i})") for i, a in enumerate(apps)],
            groups=[Group.from_json(g, f"{where}/groups({i})") for i, g in enumerate(groups)],
            version=_opt(data, "version", where, str),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Info:
    """GET /v2/info (RAML ``MarathonInfo``)."""

    name: str
    version: str
    leader: str | None
    framework_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "Info":
        return cls(
            name=_need(data, "name", where, str),
            version=_need(data, "version", where, str),
            leader=_opt(data, "leader", where, str),
            framework_id=_opt(data, "frameworkId", where, str),
            raw=dict(data),
        )


@dataclass(frozen=True)
class QueueItem:
    """One item of GET /v2/queue: an app waiting for launches, with its backoff delay."""

    app_id: str
    count: int
    time_left_seconds: float
    overdue: bool

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "QueueItem":
        app = _opt(data, "app", where, dict) or _opt(data, "pod", where, dict) or {}
        delay = _need(data, "delay", where, dict)
        return cls(
            app_id=_need(app, "id", f"{where}/app", str),
            count=int(_need(data, "count", where, int)),
            time_left_seconds=float(_need(delay, "timeLeftSeconds", f"{where}/delay", (int, float))),
            overdue=bool(_need(delay, "overdue", f"{where}/delay", bool)),
        )
