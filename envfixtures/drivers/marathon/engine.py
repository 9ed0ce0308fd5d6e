"""The local scheduler's state and loop: apps, groups, tasks, backoff, health, deployments.

All state is guarded by one lock. One long-lived loop thread (every 0.1 s) reaps exited tasks, escalates
kills, starts fetched tasks, dispatches due health checks to a small pool, advances deployments and
reconciles every app's task count. Task processes are forked only on the loop thread, so that their
``PR_SET_PDEATHSIG`` is tied to a thread that lives as long as the scheduler.
State is in memory only (real Marathon keeps it in ZooKeeper): a restarted scheduler starts empty.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from envfixtures.core.ports import free_port
from envfixtures.core.processes import MARKER
from envfixtures.drivers.containers import podman
from envfixtures.drivers.marathon import containerizer
from envfixtures.drivers.marathon import health as hc
from envfixtures.drivers.marathon import tasks as tk
from envfixtures.drivers.marathon.client import format_time
from envfixtures.drivers.marathon.deployments import Deployment, config_of, plan_steps
from envfixtures.drivers.marathon.validation import STATUS_FIELDS, absolute_id, validate_app, validate_group

log = logging.getLogger(__name__)

TICK = 0.1
KEEP_FAILED_SANDBOXES = 5

APP_DEFAULTS: dict[str, Any] = {
    "instances": 1,
    "cpus": 1.0,
    "mem": 128.0,
    "disk": 0.0,
    "gpus": 0,
    "executor": "",
    "constraints": [],
    "env": {},
    "labels": {},
    "fetch": [],
    "healthChecks": [],
    "readinessChecks": [],
    "dependencies": [],
    "backoffSeconds": 1,
    "backoffFactor": 1.15,
    "maxLaunchDelaySeconds": 300,
    "requirePorts": False,
    "killSelection": "YOUNGEST_FIRST",
    "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
    "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
    "secrets": {},
}


class ApiError(Exception):
    """An answer other than success: the HTTP status and Marathon's JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status}: {body.get('message')}")


def normalize(definition: Mapping[str, Any], app_id: str) -> dict[str, Any]:
    """An app spec with Marathon's defaults, as GET /v2/apps shows it (status fields dropped)."""
    spec: dict[str, Any] = {"id": app_id}
    spec.update(copy.deepcopy(APP_DEFAULTS))
    for key, value in definition.items():
        if key in STATUS_FIELDS or key in ("version", "versionInfo"):
            continue
        spec[key] = copy.deepcopy(value)
    spec["id"] = app_id
    strategy = dict(APP_DEFAULTS["upgradeStrategy"])
    strategy.update(definition.get("upgradeStrategy") or {})
    spec["upgradeStrategy"] = strategy
    spec["healthChecks"] = [hc.defaults(c) for c in spec.get("healthChecks") or []]
    if "portDefinitions" not in spec:
        ports = spec.pop("ports", None)
        if ports is not None:
            spec["portDefinitions"] = [{"port": int(p), "protocol": "tcp"} for p in ports]
        elif not spec.get("container"):
            spec["portDefinitions"] = [{"port": 0, "protocol": "tcp", "name": "default"}]
        else:
            spec["portDefinitions"] = []
    else:
        spec.pop("ports", None)
    spec["portDefinitions"] = [{"protocol": "tcp", **pd} for pd in spec["portDefinitions"]]
    if spec.get("cmd") is None:
        spec.pop("cmd", None)
    if spec.get("args") is None:
        spec.pop("args", None)
    return spec


class AppState:
    """An app: its spec, versions, tasks, the targets deployments set, and its launch backoff."""

    def __init__(self, spec: dict[str, Any], version: str) -> None:
        self.spec = spec
        self.id: str = spec["id"]
        self.version = version
        self.config_version = version  # versionInfo.lastConfigChangeAt
        self.scaling_version = version  # versionInfo.lastScalingAt
        self.tasks: dict[str, tk.TaskRun] = {}
        self.target_new = 0  # tasks of the current config to keep
        self.old_allowed = 0  # tasks of older configs to keep (only during a rolling restart)
        self.service_ports: list[int] = []
        self.last_failure: dict[str, Any] | None = None
        self.backoff_delay = float(spec["backoffSeconds"])
        self.launch_not_before = 0.0  # monotonic
        self.queued_since: float | None = None
        self.failed_sandboxes: list[Path] = []

    @property
    def instances(self) -> int:
        return int(self.spec.get("instances", 1))

    def alive_tasks(self) -> list[tk.TaskRun]:
        return [t for t in self.tasks.values() if t.alive]

    def current_tasks(self) -> list[tk.TaskRun]:
        return [
            t
            for t in self.tasks.values()
            if t.alive and t.kill_reason is None and t.config_version == self.config_version
        ]

    def old_tasks(self) -> list[tk.TaskRun]:
        return [
            t
            for t in self.tasks.values()
            if t.alive and t.kill_reason is None and t.config_version != self.config_version
        ]

    def is_healthy(self, task: tk.TaskRun) -> bool:
        """Running and, when the app has health checks, alive in every one of them."""
        if task.state != "TASK_RUNNING" or task.kill_reason is not None:
            return False
        return all(h.alive for h in task.health) if self.spec["healthChecks"] else True

    def reset_backoff(self) -> None:
        self.backoff_delay = float(self.spec["backoffSeconds"])
        self.launch_not_before = 0.0

    def bump_backoff(self, now: float) -> None:
        """A task failed: hold launches for the current delay, then grow it by backoffFactor. As Marathon's rate
        limiter drops a delay once ``maxLaunchDelaySeconds`` have passed since its deadline, a failure after such a
        quiet spell starts again from ``backoffSeconds``."""
        if now >= self.launch_not_before + float(self.spec["maxLaunchDelaySeconds"]):
            self.backoff_delay = float(self.spec["backoffSeconds"])
        self.launch_not_before = now + self.backoff_delay
        self.backoff_delay = min(
            self.backoff_delay * float(self.spec["backoffFactor"]), float(self.spec["maxLaunchDelaySeconds"])
        )


class Engine:
    """The local scheduler. Methods named like the REST calls return JSON-ready bodies or raise ApiError."""

    def __init__(
        self,
        workdir: Path,
        *,
        address: str = "127.0.0.1:0",
        health_workers: int = 8,
        fetch_roots: Sequence[Path] = (),
    ) -> None:
        self.workdir = Path(workdir)
        #: the directories a task's file:// fetch may read from (default: the scheduler's own workdir)
        self.fetch_roots = [Path(p) for p in fetch_roots] or [self.workdir]
        #: the label of this scheduler's containers: the environment's name (its marker), else one of its own
        self.label = os.environ.get(MARKER) or f"marathon-{uuid.uuid4().hex[:12]}"
        self.sandboxes = self.workdir / "sandboxes"
        self.sandboxes.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.lock = threading.RLock()
        self._last_version = 0.0
        self.apps: dict[str, AppState] = {}
        self.stopping: list[AppState] = []
        self.groups: dict[str, str] = {"/": self._new_version()}
        self.deployments: dict[str, Deployment] = {}
        self.pool = ThreadPoolExecutor(max_workers=health_workers, thread_name_prefix="marathon-work")
        self._stop = threading.Event()
        self._next_service_port = 10000
        self.thread = threading.Thread(target=self._loop, name="marathon-loop", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the loop and every task: SIGTERM to each task group, SIGKILL after ``timeout``."""
        self._stop.set()
        self.thread.join(timeout=5)
        with self.lock:
            everything = [t for a in list(self.apps.values()) + self.stopping for t in a.tasks.values()]
        for task in everything:
            tk.signal_group(task, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for task in everything:
            if task.proc is None:
                continue
            try:
                task.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - escalate below
                pass
            tk.signal_group(task, signal.SIGKILL)  # also stragglers of a leader that already exited
            try:
                task.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001
                log.warning("task %s (pid %d) did not die", task.id, task.proc.pid)
        if any(task.image for task in everything):
            try:  # what a podman run that died left running
                podman.remove_containers(self.label)
            except podman.PodmanError as exc:
                log.warning("could not remove the containers labelled %s: %s", self.label, exc)
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("scheduler stopped %d task(s)", len(everything))

    # -- the loop ------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            try:
                with self.lock:
                    self._tick()
            except Exception:  # noqa: BLE001 - the loop must survive a bug in one turn, loudly
                log.exception("scheduler loop turn failed")

    def _tick(self) -> None:
        now = time.monotonic()
        for app in list(self.apps.values()) + list(self.stopping):
            for task in list(app.tasks.values()):
                try:
                    self._watch_task(app, task, now)
                except Exception as exc:  # noqa: BLE001 - a bug on one task fails it with its cause, never loops
                    log.exception("scheduler loop: task %s", task.id)
                    self._fail_unexpectedly(app, task, exc)
        for dep_id, dep in list(self.deployments.items()):
            if dep.tick():
                log.info("deployment %s finished", dep_id)
                del self.deployments[dep_id]
                for app_id in dep.affected:
                    app = self.apps.get(app_id)
                    if app is not None and not self._deployments_of(app_id):
                        app.target_new, app.old_allowed = app.instances, 0
        self.stopping = [a for a in self.stopping if a.alive_tasks()]
        for app in list(self.apps.values()) + self.stopping:
            try:
                self._reconcile(app, now)
            except Exception as exc:  # noqa: BLE001 - as above: the app's deployment fails with the cause
                log.exception("scheduler loop: app %s", app.id)
                app.bump_backoff(now)
                app.last_failure = self._failure_json(app, "", app.version, _unexpected(exc))

    def _fail_unexpectedly(self, app: AppState, task: tk.TaskRun, exc: Exception) -> None:
        tk.signal_group(task, signal.SIGKILL)
        self._finish(app, task, "TASK_FAILED", _unexpected(exc))

    def _watch_task(self, app: AppState, task: tk.TaskRun, now: float) -> None:
        if task.state == "TASK_STAGING" and task.fetch_done:
            if task.kill_reason is not None:
                self._finish(app, task, "TASK_KILLED", "killed before launch")
            elif task.fetch_error:
                self._finish(app, task, "TASK_FAILED", f"Failed to launch container: {task.fetch_error}")
            else:
                self._launch(app, task, now)
            return
        if task.proc is None or not task.alive:
            return
        code = task.proc.poll()
        if code is not None:
            tk.signal_group(task, signal.SIGKILL)  # the container goes with its leader, as on Mesos
            if task.kill_reason is not None:
                self._finish(app, task, "TASK_KILLED", task.kill_reason)
            elif code == 0:
                self._finish(app, task, "TASK_FINISHED", tk.exit_message(code))
            else:
                self._finish(app, task, "TASK_FAILED", tk.failure_message(task, code))
            return
        if task.kill_deadline is not None and now >= task.kill_deadline:
            tk.signal_group(task, signal.SIGKILL)
            task.kill_deadline = None
        if task.state == "TASK_RUNNING" and task.kill_reason is None:
            for state in task.health:
                if not state.running and now >= state.next_at:
                    state.running = True
                    self.pool.submit(self._run_health, app, task, state)

    def _run_health(self, app: AppState, task: tk.TaskRun, state: hc.HealthState) -> None:
        try:
            ok, cause = hc.run_check(state.check, tk.HOST, task.ports, task.env, str(task.sandbox))
        except Exception as exc:  # noqa: BLE001 - a broken check counts as a failure
            ok, cause = False, f"{type(exc).__name__}: {exc}"
        with self.lock:
            state.running = False
            if not task.alive or task.kill_reason is not None or task.started_mono is None:
                return
            if state.record(ok, cause, task.started_mono, time.monotonic()):
                log.info("task %s failed %d consecutive health checks: %s", task.id, state.consecutive_failures, cause)
                app.bump_backoff(time.monotonic())
                self._kill(task, f"failed {state.consecutive_failures} consecutive health checks: {cause}")

    def _launch(self, app: AppState, task: tk.TaskRun, now: float) -> None:
        try:
            task.proc = tk.launch(app.spec, task, env_name=self.label, roots=self.fetch_roots)
        except (OSError, containerizer.LaunchError) as exc:
            self._finish(app, task, "TASK_FAILED", f"Failed to launch container: {exc}")
            return
        task.state = "TASK_RUNNING"
        task.started_at = time.time()
        task.started_mono = now
        task.health = [hc.HealthState(check=c, instance_id=task.instance_id) for c in app.spec["healthChecks"]]
        for state in task.health:
            state.schedule_first(now)
        log.info("task %s running as pid %d", task.id, task.proc.pid)

    def _finish(self, app: AppState, task: tk.TaskRun, state: str, message: str) -> None:
        """A task reached a terminal state: forget it, record a failure, hold relaunches (backoff)."""
        task.state = state
        app.tasks.pop(task.id, None)
        log.info("task %s %s: %s", task.id, state, message)
        if state in ("TASK_FAILED", "TASK_FINISHED"):
            app.bump_backoff(time.monotonic())
        if state == "TASK_FAILED":
            app.last_failure = self._failure_json(app, task.id, task.version, message)
            app.failed_sandboxes.append(task.sandbox)
            while len(app.failed_sandboxes) > KEEP_FAILED_SANDBOXES:
                shutil.rmtree(app.failed_sandboxes.pop(0), ignore_errors=True)
        elif state == "TASK_KILLED":
            shutil.rmtree(task.sandbox, ignore_errors=True)

    @staticmethod
    def _failure_json(app: AppState, task_id: str, version: str, message: str) -> dict[str, Any]:
        """Marathon's ``lastTaskFailure``."""
        return {
            "appId": app.id,
            "host": tk.HOST,
            "message": message,
            "state": "TASK_FAILED",
            "taskId": task_id,
            "timestamp": format_time(time.time()),
            "version": version,
            "slaveId": "local-agent",
        }

    def _kill(self, task: tk.TaskRun, reason: str, grace: float | None = None) -> None:
        if task.kill_reason is not None:
            return
        task.kill_reason = reason
        if task.proc is None:
            return  # still fetching: finished as killed once the fetch returns
        task.state = "TASK_KILLING"
        tk.signal_group(task, signal.SIGTERM)
        task.kill_deadline = time.monotonic() + (tk.DEFAULT_KILL_GRACE if grace is None else grace)

    def _reconcile(self, app: AppState, now: float) -> None:
        grace = app.spec.get("taskKillGracePeriodSeconds")
        old = app.old_tasks()
        if len(old) > app.old_allowed:
            # Unhealthy ones first, then the youngest.
            old.sort(key=lambda t: (app.is_healthy(t), -(t.started_at or t.staged_at)))
            for task in old[: len(old) - app.old_allowed]:
                self._kill(task, "replaced by a new version", grace)
        current = app.current_tasks()
        if len(current) > app.target_new:
            current.sort(key=lambda t: (app.is_healthy(t), -(t.started_at or t.staged_at)))
            for task in current[: len(current) - app.target_new]:
                self._kill(task, "scaled down", grace)
        missing = app.target_new - len(app.current_tasks())
        if missing <= 0:
            app.queued_since = None
            return
        if app.queued_since is None:
            app.queued_since = time.time()
        if now < app.launch_not_before:
            return
        for _ in range(missing):
            self._stage(app)

    def _stage(self, app: AppState) -> None:
        task_id, instance_id = tk.new_task_id(app.id)
        ports = []
        if containerizer.bridged(app.spec):  # host ports of the port mappings
            for mapping in containerizer.port_mappings(app.spec):
                ports.append(int(mapping.get("hostPort") or 0) or free_port())
        else:
            for pd in app.spec["portDefinitions"]:
                ports.append(int(pd["port"]) if app.spec.get("requirePorts") and pd.get("port") else free_port())
        sandbox = self.sandboxes / task_id
        sandbox.mkdir(parents=True)
        task = tk.TaskRun(
            id=task_id,
            instance_id=instance_id,
            app_id=app.id,
            version=app.version,
            config_version=app.config_version,
            ports=ports,
            sandbox=sandbox,
            staged_at=time.time(),
            image=containerizer.image_of(app.spec),
        )
        task.env = tk.task_env(app.spec, task)
        app.tasks[task_id] = task
        if app.spec.get("fetch") or app.spec.get("uris") or task.image:
            spec = app.spec
            self.pool.submit(self._fetch, spec, task)
        else:
            task.fetch_done = True

    def _fetch(self, spec: dict[str, Any], task: tk.TaskRun) -> None:
        """The fetch, then the image's pull (with the credentials the fetch brought), on a worker thread."""
        try:
            tk.fetch_all(spec, task.sandbox, file_roots=self.fetch_roots)
        except tk.FetchError as exc:
            task.fetch_error = f"Failed to fetch all URIs for container '{task.id}': {exc}"
        except Exception as exc:  # noqa: BLE001 - any fetch problem fails the task, not the scheduler
            task.fetch_error = f"Failed to fetch all URIs for container '{task.id}': {type(exc).__name__}: {exc}"
        if task.image and not task.fetch_error and task.kill_reason is None:
            try:
                containerizer.pull(task.image, task.sandbox)
            except podman.PodmanError as exc:
                task.fetch_error = f"Failed to pull image '{task.image}': {exc}"
        task.fetch_done = True

    # -- versions, ids, groups -----------------------------------------------------------------------------

    def _new_version(self) -> str:
        stamp = max(time.time(), self._last_version + 0.001)
        self._last_version = stamp
        return format_time(stamp)

    def _deployments_of(self, app_id: str) -> list[Deployment]:
        return [d for d in self.deployments.values() if app_id in d.affected]

    def _ensure_groups(self, app_or_group_id: str, version: str, *, include_self: bool = False) -> None:
        parts = [p for p in app_or_group_id.split("/") if p]
        upto = len(parts) if include_self else len(parts) - 1
        for i in range(1, upto + 1):
            self.groups.setdefault("/" + "/".join(parts[:i]), version)

    def _assign_service_ports(self, app: AppState, previous: list[int]) -> None:
        ports = []
        for i, pd in enumerate(app.spec["portDefinitions"]):
            if pd.get("port"):
                ports.append(int(pd["port"]))
            elif i < len(previous):
                ports.append(previous[i])
            else:
                ports.append(self._next_service_port)
                self._next_service_port += 1
        app.service_ports = ports

    # -- JSON views ----------------------------------------------------------------------------------------

    def task_json(self, app: AppState, task: tk.TaskRun) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": task.id,
            "appId": app.id,
            "host": tk.HOST,
            "state": task.state,
            "ipAddresses": [{"ipAddress": tk.HOST, "protocol": "IPv4"}],
            "ports": list(task.ports),
            "servicePorts": list(app.service_ports),
            "slaveId": "local-agent",
            "stagedAt": format_time(task.staged_at),
            "version": task.version,
            "localVolumes": [],
            "role": "*",
        }
        if task.started_at:
            body["startedAt"] = format_time(task.started_at)
        results = [h.to_json() for h in task.health if h.reported]
        if app.spec["healthChecks"] and results:
            body["healthCheckResults"] = results
        return body

    def app_json(self, app: AppState, embed: Iterable[str] = ()) -> dict[str, Any]:
        """AppInfo: counts and deployments always (like Marathon), tasks / lastTaskFailure when embedded."""
        wanted = {e.split(".", 1)[-1] for e in embed}
        body = copy.deepcopy(app.spec)
        body["portDefinitions"] = [
            {**pd, "port": app.service_ports[i] if i < len(app.service_ports) else pd.get("port", 0)}
            for i, pd in enumerate(body["portDefinitions"])
        ]
        body["version"] = app.version
        body["versionInfo"] = {"lastScalingAt": app.scaling_version, "lastConfigChangeAt": app.config_version}
        alive = app.alive_tasks()
        body["tasksStaged"] = sum(1 for t in alive if t.state == "TASK_STAGING")
        body["tasksRunning"] = sum(1 for t in alive if t.state in ("TASK_RUNNING", "TASK_KILLING"))
        if app.spec["healthChecks"]:
            body["tasksHealthy"] = sum(1 for t in alive if app.is_healthy(t))
            body["tasksUnhealthy"] = sum(1 for t in alive if any(h.reported and not h.alive for h in t.health))
        else:
            body["tasksHealthy"] = body["tasksUnhealthy"] = 0
        body["deployments"] = [{"id": d.id} for d in self._deployments_of(app.id)]
        if wanted & {"tasks", "failures"}:
            body["tasks"] = [self.task_json(app, t) for t in alive]
        if wanted & {"lastTaskFailure", "failures"} and app.last_failure:
            body["lastTaskFailure"] = dict(app.last_failure)
        return body

    def group_json(self, group_id: str, embed: Iterable[str] = ()) -> dict[str, Any]:
        app_embed = [e.replace("group.apps.", "app.") for e in embed if e.startswith("group.apps.")]
        children = sorted(
            g
            for g in self.groups
            if g != group_id
            and g.rsplit("/", 1)[0] in (group_id.rstrip("/"),)
            and g.startswith(group_id.rstrip("/") + "/")
        )
        apps = sorted(a for a in self.apps if a.rsplit("/", 1)[0] == group_id.rstrip("/"))
        return {
            "id": group_id,
            "apps": [self.app_json(self.apps[a], app_embed) for a in apps],
            "groups": [self.group_json(g, embed) for g in children],
            "pods": [],
            "dependencies": [],
            "version": self.groups.get(group_id),
            "enforceRole": False,
        }

    # -- the REST operations ---------------------------------------------------------------------------------

    def list_apps(
        self,
        *,
        embed: Iterable[str] = (),
        id_filter: str | None = None,
        cmd_filter: str | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            out = []
            for app_id in sorted(self.apps):
                app = self.apps[app_id]
                if id_filter and id_filter not in app_id:
                    continue
                if cmd_filter and cmd_filter not in (app.spec.get("cmd") or ""):
                    continue
                if label and not _label_match(app.spec.get("labels") or {}, label):
                    continue
                out.append(self.app_json(app, embed))
            return {"apps": out}

    def get_app(self, app_id: str, embed: Iterable[str] = ()) -> dict[str, Any]:
        with self.lock:
            app = self._app(app_id)
            return {"app": self.app_json(app, set(embed) | {"app.tasks", "app.lastTaskFailure"})}

    def app_tasks(self, app_id: str) -> dict[str, Any]:
        with self.lock:
            app = self._app(app_id)
            return {"tasks": [self.task_json(app, t) for t in app.alive_tasks()]}

    def all_tasks(self) -> dict[str, Any]:
        with self.lock:
            return {"tasks": [self.task_json(a, t) for a in self.apps.values() for t in a.alive_tasks()]}

    def kill_task(self, app_id: str, task_id: str, *, scale: bool) -> dict[str, Any]:
        with self.lock:
            app = self._app(app_id)
            task = app.tasks.get(task_id)
            if task is None or not task.alive:
                raise ApiError(404, {"message": f"Task '{task_id}' does not exist"})
            body = {"task": self.task_json(app, task)}
            if scale:
                app.spec["instances"] = max(0, app.instances - 1)
                app.target_new = min(app.target_new, app.instances)
                app.version = app.scaling_version = self._new_version()
            self._kill(task, "killed via the REST API", app.spec.get("taskKillGracePeriodSeconds"))
            return body

    def create_app(self, definition: Any) -> tuple[dict[str, Any], str]:
        """POST /v2/apps -> (app body, deployment id)."""
        self._valid_app(definition)
        app_id = absolute_id(definition["id"])
        with self.lock:
            if app_id in self.apps:
                raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
            result = self._change({app_id: normalize(definition, app_id)}, removed=(), force=False)
            return self.app_json(self.apps[app_id]), result["deploymentId"]

    def put_app(self, app_id: str, definition: Any, *, force: bool, partial: bool) -> tuple[bool, dict[str, Any]]:
        """PUT /v2/apps/{id} -> (created, DeploymentResult)."""
        app_id = absolute_id(app_id)
        if not isinstance(definition, Mapping):
            raise ApiError(
                400, {"message": "Invalid JSON", "details": [{"path": "/", "errors": ["error.expected.jsobject"]}]}
            )
        with self.lock:
            existing = self.apps.get(app_id)
            merged = dict(definition)
            if existing is not None and partial:
                merged = {**{k: v for k, v in existing.spec.items()}, **definition}
                if "args" in definition and "cmd" not in definition:
                    merged.pop("cmd", None)
                if "cmd" in definition and "args" not in definition:
                    merged.pop("args", None)
            merged["id"] = app_id
            self._valid_app(merged)
            result = self._change({app_id: normalize(merged, app_id)}, removed=(), force=force)
            return existing is None, result

    def delete_app(self, app_id: str, *, force: bool) -> dict[str, Any]:
        with self.lock:
            self._app(app_id)
            return self._change({}, removed=[absolute_id(app_id)], force=force)

    def restart_app(self, app_id: str, *, force: bool) -> dict[str, Any]:
        with self.lock:
            app = self._app(app_id)
            return self._change({app.id: copy.deepcopy(app.spec)}, removed=(), force=force, restart={app.id})

    def get_group(self, group_id: str, embed: Iterable[str] = ()) -> dict[str, Any]:
        gid = absolute_id(group_id)
        with self.lock:
            if gid not in self.groups:
                raise ApiError(404, {"message": f"Group '{gid}' does not exist"})
            return self.group_json(gid, embed or ("group.groups", "group.apps"))

    def put_group(self, group_id: str, body: Any, *, force: bool) -> dict[str, Any]:
        """PUT /v2/groups/{id}: replace the group's apps (and child groups where given)."""
        gid = absolute_id(group_id)
        if isinstance(body, Mapping) and ("scaleBy" in body or set(body) == {"version"}):
            raise ApiError(
                422,
                {
                    "message": "Object is not valid",
                    "details": [
                        {
                            "path": "/",
                            "errors": ["scaleBy and version rollback are not supported by the local scheduler"],
                        }
                    ],
                },
            )
        details = validate_group(body, group_id=gid)
        if details:
            raise ApiError(422, {"message": "Object is not valid", "details": details})
        with self.lock:
            desired: dict[str, dict[str, Any]] = {}
            removed: list[str] = []
            dropped_groups: list[str] = []
            self._desired_from_group(body, gid, desired, removed, dropped_groups)
            result = self._change(desired, removed=removed, force=force, groups=[gid])
            for g in dropped_groups:
                self.groups.pop(g, None)
            return result

    def _desired_from_group(
        self,
        body: Mapping[str, Any],
        gid: str,
        desired: dict[str, dict[str, Any]],
        removed: list[str],
        dropped: list[str],
    ) -> None:
        self.groups.setdefault(gid, self._new_version())
        if "apps" in body:
            listed = set()
            for app in body["apps"] or []:
                app_id = absolute_id(app["id"], gid)
                listed.add(app_id)
                desired[app_id] = normalize(app, app_id)
            removed += [a for a in self.apps if a.rsplit("/", 1)[0] == gid.rstrip("/") and a not in listed]
        if "groups" in body:
            listed_groups = set()
            for child in body["groups"] or []:
                cid = absolute_id(child.get("id", gid), gid)
                listed_groups.add(cid)
                self._desired_from_group(child, cid, desired, removed, dropped)
            for g in [g for g in self.groups if g.startswith(gid.rstrip("/") + "/")]:
                if not any(g == lg or g.startswith(lg + "/") for lg in listed_groups):
                    dropped.append(g)
                    removed += [a for a in self.apps if a.startswith(g + "/")]

    def delete_group(self, group_id: str, *, force: bool) -> dict[str, Any]:
        gid = absolute_id(group_id)
        with self.lock:
            if gid not in self.groups:
                raise ApiError(404, {"message": f"Group '{gid}' does not exist"})
            prefix = gid.rstrip("/") + "/"
            result = self._change({}, removed=[a for a in self.apps if a.startswith(prefix)], force=force)
            for g in [g for g in self.groups if g == gid or g.startswith(prefix)]:
                if g != "/":
                    self.groups.pop(g, None)
            return result

    def list_deployments(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d.to_json() for d in self.deployments.values()]

    def cancel_deployment(self, deployment_id: str, *, force: bool) -> dict[str, Any] | None:
        with self.lock:
            dep = self.deployments.pop(deployment_id, None)
            if dep is None:
                raise ApiError(404, {"message": f"DeploymentPlan {deployment_id} does not exist"})
            if force:
                return None  # the app stays in whatever mixed state it reached, as in Marathon
            desired = {a: spec for a, spec in dep.before.items() if spec is not None}
            removed = [a for a, spec in dep.before.items() if spec is None and a in self.apps]
            return self._change(desired, removed=removed, force=True)

    def queue(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            out = []
            for app in self.apps.values():
                missing = app.target_new - len(app.current_tasks())
                if missing <= 0:
                    continue
                left = max(0.0, app.launch_not_before - now)
                out.append(
                    {
                        "app": self.app_json(app),
                        "count": missing,
                        "role": "*",
                        "delay": {"timeLeftSeconds": round(left, 3), "overdue": left == 0},
                        "since": format_time(app.queued_since or time.time()),
                    }
                )
            return {"queue": out}

    def info(self) -> dict[str, Any]:
        return {
            "name": "marathon",
            "version": "1.11.0-envfixtures-local",
            "buildref": "envfixtures",
            "elected": True,
            "leader": self.address,
            "frameworkId": "envfixtures-local-0000",
            "marathon_config": {
                "hostname": "127.0.0.1",
                "executor": "//cmd",
                "local_port_min": 10000,
                "local_port_max": 20000,
                "mesos_role": None,
                "mesos_user": None,
            },
            "http_config": {"http_port": int(self.address.rsplit(":", 1)[-1])},
        }

    # -- changes ---------------------------------------------------------------------------------------------

    def _app(self, app_id: str) -> AppState:
        app = self.apps.get(absolute_id(app_id))
        if app is None:
            raise ApiError(404, {"message": f"App '{absolute_id(app_id)}' does not exist"})
        return app

    @staticmethod
    def _valid_app(definition: Any) -> None:
        details = validate_app(definition)
        if details:
            raise ApiError(422, {"message": "Object is not valid", "details": details})

    def _change(
        self,
        desired: Mapping[str, dict[str, Any]],
        *,
        removed: Iterable[str],
        force: bool,
        restart: set[str] = frozenset(),
        groups: Iterable[str] = (),
    ) -> dict[str, Any]:
        """Apply new specs and removals at once (as Marathon's group tree does) and start their deployment."""
        removed = [a for a in removed if a in self.apps and a not in desired]
        affected = sorted(
            set(removed)
            | {a for a, spec in desired.items() if a not in self.apps or a in restart or self.apps[a].spec != spec}
        )
        locking = {d.id for a in affected for d in self._deployments_of(a)}
        if locking and not force:
            raise ApiError(
                409,
                {
                    "message": "App is locked by one or more deployments. Override with the option '?force=true'. "
                    "View details at '/v2/deployments/<DEPLOYMENT_ID>'.",
                    "deployments": [{"id": d} for d in sorted(locking)],
                },
            )
        for dep_id in locking:
            self.deployments.pop(dep_id, None)  # force: the old deployments are cancelled, no rollback
        version = self._new_version()
        for g in groups:
            self.groups[g] = version
        before: dict[str, AppState | None] = {}
        after: dict[str, AppState | None] = {}
        snapshot: dict[str, dict[str, Any] | None] = {}
        changed: set[str] = set()
        for app_id in affected:
            existing = self.apps.get(app_id)
            snapshot[app_id] = copy.deepcopy(existing.spec) if existing else None
            before[app_id] = existing
            if app_id in removed:
                assert existing is not None
                existing.target_new = existing.old_allowed = 0  # never relaunched, even if a force cancels
                self.stopping.append(self.apps.pop(app_id))
                after[app_id] = None
                continue
            spec = desired[app_id]
            if existing is None:
                app = AppState(spec, version)
                self._assign_service_ports(app, [])
                self.apps[app_id] = app
                self._ensure_groups(app_id, version)
            else:
                app = existing
                if config_of(app.spec) != config_of(spec) or app_id in restart:
                    changed.add(app_id)
                    app.config_version = version
                    app.reset_backoff()
                app.scaling_version = version
                app.version = version
                # Freeze the tasks as they are until this app's action of the deployment starts.
                app.old_allowed = len(app.old_tasks())
                app.target_new = len(app.current_tasks())
                previous = app.service_ports
                app.spec = spec
                self._assign_service_ports(app, previous)
            after[app_id] = app
        dep = Deployment(version=version, steps=plan_steps(before, after, changed), affected=affected, before=snapshot)
        if dep.steps:
            self.deployments[dep.id] = dep
            dep.tick()
        log.info("deployment %s: %s", dep.id, [[a.to_json() for a in s] for s in dep.steps])
        return {"deploymentId": dep.id, "version": version}


def _unexpected(exc: Exception) -> str:
    return f"the local scheduler failed on this app: {type(exc).__name__}: {exc}"


def _label_match(labels: Mapping[str, str], selector: str) -> bool:
    """Marathon's label selector subset: ``key``, ``key==value``, ``key!=value``, comma = AND."""
    for part in (p.strip() for p in selector.split(",")):
        if "!=" in part:
            k, v = (s.strip() for s in part.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "==" in part:
            k, v = (s.strip() for s in part.split("==", 1))
            if labels.get(k) != v:
                return False
        elif part and part not in labels:
            return False
    return True
