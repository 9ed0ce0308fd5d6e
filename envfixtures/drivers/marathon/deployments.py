"""Deployments of the local scheduler: plans made of steps of actions, and what each action waits for.

A plan is computed from the apps before and after a change, like Marathon's DeploymentPlan:
step 1 starts new apps (at 0 instances) and stops removed ones, step 2 scales new and rescaled apps and
restarts changed ones. Actions of a step run together; the next step starts when all are done.
``RestartApplication`` is Marathon's rolling restart (TaskReplaceActor): it keeps at least
``ceil(instances * minimumHealthCapacity)`` healthy tasks and at most
``floor(instances * (1 + maximumOverCapacity))`` tasks while it replaces old-version tasks by new ones.
The engine (:mod:`.engine`) calls :meth:`Action.tick` under its lock on every loop turn.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envfixtures.drivers.marathon.engine import AppState


class Action:
    """One action of a step on one app; ``tick`` sets the app's task targets and says when it is done."""

    name = ""

    def __init__(self, app: "AppState") -> None:
        self.app = app
        self.done = False

    def start(self) -> None:
        """Called once when the action's step begins."""

    def tick(self) -> bool:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"action": self.name, "app": self.app.id}


class StartApplication(Action):
    name = "StartApplication"

    def start(self) -> None:
        self.app.target_new = 0
        self.app.old_allowed = 0

    def tick(self) -> bool:
        return True


class StopApplication(Action):
    name = "StopApplication"

    def start(self) -> None:
        self.app.target_new = 0
        self.app.old_allowed = 0

    def tick(self) -> bool:
        return not self.app.alive_tasks()


class ScaleApplication(Action):
    name = "ScaleApplication"

    def start(self) -> None:
        self.app.target_new = self.app.instances

    def tick(self) -> bool:
        app = self.app
        app.target_new = app.instances
        current = app.current_tasks()
        return len(current) == app.instances and all(app.is_healthy(t) for t in current)


class RestartApplication(Action):
    name = "RestartApplication"

    def start(self) -> None:
        app = self.app
        n = app.instances
        strategy = app.spec.get("upgradeStrategy") or {}
        self.min_healthy = math.ceil(n * float(strategy.get("minimumHealthCapacity", 1.0)))
        self.max_capacity = math.floor(n * (1 + float(strategy.get("maximumOverCapacity", 1.0))))
        app.old_allowed = len(app.old_tasks())
        app.target_new = 0
        self.tick()

    def tick(self) -> bool:
        app = self.app
        n = app.instances
        old = app.old_tasks()
        new = app.current_tasks()
        new_healthy = sum(1 for t in new if app.is_healthy(t))
        # Old tasks may go as new ones become healthy, never below the healthy minimum; never relaunched.
        old_target = min(len(old), app.old_allowed, max(0, self.min_healthy - new_healthy))
        # Old tasks occupy capacity until they are gone, killing ones included (Marathon waits for TASK_KILLED).
        killing = sum(1 for t in app.alive_tasks() if t.kill_reason is not None)
        room = max(0, self.max_capacity - len(old) - killing)
        if (
            old_target > 0
            and old_target == len(old)
            and not killing
            and min(n, room) <= len(new) < n
            and new_healthy == len(new)
        ):
            # No capacity for one more new task (e.g. minimumHealthCapacity=1, maximumOverCapacity=0):
            # Marathon then kills one old task to make room.
            old_target -= 1
        app.old_allowed = old_target
        app.target_new = max(min(n, room), min(len(new), n))  # never kill new tasks to make room
        return not old and len(new) == n and new_healthy == n


@dataclass
class Deployment:
    """A running deployment; ``to_json`` is RAML ``DeploymentStepInfo`` (an item of GET /v2/deployments)."""

    version: str
    steps: list[list[Action]]
    affected: list[str]
    before: dict[str, dict[str, Any] | None]  # app id -> spec before (None: did not exist), for rollback
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    current: int = 0  # index of the running step
    started: bool = False

    def tick(self) -> bool:
        """Advance; True when every step is done."""
        while self.current < len(self.steps):
            actions = self.steps[self.current]
            if not self.started:
                for action in actions:
                    action.start()
                self.started = True
            for action in actions:
                if not action.done:
                    action.done = action.tick()
            if not all(a.done for a in actions):
                return False
            self.current += 1
            self.started = False
        return True

    def to_json(self) -> dict[str, Any]:
        current = self.steps[self.current] if self.current < len(self.steps) else []
        return {
            "id": self.id,
            "version": self.version,
            "affectedApps": list(self.affected),
            "affectedPods": [],
            "steps": [{"actions": [a.to_json() for a in step]} for step in self.steps],
            "currentActions": [{**a.to_json(), "readinessCheckResults": []} for a in current],
            "currentStep": min(self.current + 1, len(self.steps)),
            "totalSteps": len(self.steps),
        }


def config_of(spec: dict[str, Any]) -> dict[str, Any]:
    """What makes a new version of an app's tasks: everything but the instance count and version fields."""
    return {k: v for k, v in spec.items() if k not in ("instances", "version", "versionInfo")}


def plan_steps(
    before: dict[str, "AppState | None"], after: dict[str, "AppState | None"], changed: set[str]
) -> list[list[Action]]:
    """Steps turning ``before`` into ``after``; ``changed`` names apps whose config (not just scale) changed."""
    starts: list[Action] = []
    stops: list[Action] = []
    second: list[Action] = []
    for app_id in sorted(set(before) | set(after)):
        old, new = before.get(app_id), after.get(app_id)
        if new is None and old is not None:
            stops.append(StopApplication(old))
        elif old is None and new is not None:
            starts.append(StartApplication(new))
            second.append(ScaleApplication(new))
        elif new is not None and app_id in changed:
            second.append(RestartApplication(new))
        elif new is not None and old is not None:
            second.append(ScaleApplication(new))
    return [step for step in (stops + starts, second) if step]
