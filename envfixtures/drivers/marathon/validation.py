"""Validate Marathon app and group definitions; errors come in Marathon's 422 body shape.

Two layers, as in Marathon: the last JSON schema Marathon published (``schema/AppDefinition.json``, 1.7,
Apache-2.0, copied from the reference folder) and the rules the schema cannot express (one of ``cmd`` /
``args``, or a ``container``; health-check port indices; ``env`` secrets that reference ``secrets``; app ids
inside their group). Paths are written the way Marathon writes them: ``/healthChecks(0)/portIndex``.
The schema predates fields added in Marathon 1.8+ (``tty``, ``role``, ``resourceLimits``, ``check``); those
are checked here by type and not refused as unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_DIR = Path(__file__).with_name("schema")

MESSAGE = "Object is not valid"

#: Fields of the current RAML ``App`` type that the 1.7 JSON schema does not know; value = accepted JSON types.
NEWER_FIELDS: dict[str, tuple[type, ...]] = {
    "tty": (bool,),
    "role": (str,),
    "resourceLimits": (dict,),
    "check": (dict,),
}

#: Status fields of ``AppInfo`` that a GET returns; they are ignored when a definition is sent back.
STATUS_FIELDS = frozenset(
    {
        "tasksStaged",
        "tasksRunning",
        "tasksHealthy",
        "tasksUnhealthy",
        "deployments",
        "tasks",
        "lastTaskFailure",
        "readinessCheckResults",
        "taskStats",
        "tasksStats",
    }
)

_ID_SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
ID_RULE = "must fully match regular expression '^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])|(\\.|\\.\\.)$'"  # noqa: E501 - Marathon's message, verbatim
COMMAND_RULE = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."


class ValidationFailed(Exception):
    """Raised by :func:`check_app` / :func:`check_group`; ``body`` is Marathon's 422 body."""

    def __init__(self, details: list[dict[str, Any]]) -> None:
        self.details = details
        self.body = {"message": MESSAGE, "details": details}
        super().__init__("; ".join(f"{d['path']}: {', '.join(d['errors'])}" for d in details))


@cache
def app_schema() -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / "AppDefinition.json").read_text())


@cache
def _validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(app_schema())


def marathon_path(parts: Iterable[Any], prefix: str = "") -> str:
    """A JSON path in Marathon's notation: keys as ``/key``, list indices as ``(i)``."""
    out = prefix
    for part in parts:
        out += f"({part})" if isinstance(part, int) else f"/{part}"
    return out or "/"


def absolute_id(app_id: str, base: str = "/") -> str:
    """Resolve an app or group id against ``base`` the way Marathon does (relative ids, ``.`` and ``..``)."""
    parts = [] if app_id.startswith("/") else [p for p in base.split("/") if p]
    for seg in app_id.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
        else:
            parts.append(seg)
    return "/" + "/".join(parts)


def validate_app(app: Any, *, prefix: str = "", base: str = "/") -> list[dict[str, Any]]:
    """Marathon's 422 ``details`` for one app definition (empty when valid).

    ``prefix`` is prepended to every path (``/apps(3)`` inside a group); ``base`` is the group the id is
    relative to.
    """
    errors: dict[str, list[str]] = {}

    def add(path: str, message: str) -> None:
        errors.setdefault(path, [])
        if message not in errors[path]:
            errors[path].append(message)

    if not isinstance(app, Mapping):
        return [{"path": prefix or "/", "errors": ["error.expected.jsobject"]}]
    body = {k: v for k, v in app.items() if k not in STATUS_FIELDS and k not in NEWER_FIELDS}
    for key, kinds in NEWER_FIELDS.items():
        if key in app and not isinstance(app[key], kinds):
            add(marathon_path([key], prefix), f"error.expected.{kinds[0].__name__}")
    for err in sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "not" and list(err.absolute_path) == []:
            continue  # cmd + args: reported below with Marathon's own wording
        path = list(err.absolute_path)
        if err.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", err.message.split("(")[-1])
            for name in extra or ["?"]:
                add(marathon_path(path + [name], prefix), "is not a known property")
            continue
        if err.validator == "required":
            missing = re.findall(r"'([^']+)'", err.message)[:1]
            add(marathon_path(path + missing, prefix), "error.path.missing")
            continue
        add(marathon_path(path, prefix), _marathon_wording(err))

    # Rules beyond the schema (Marathon's AppValidation).
    app_id = app.get("id")
    if isinstance(app_id, str):
        resolved = absolute_id(app_id, base)
        if marathon_path(["id"], prefix) in errors:
            pass  # the schema already refused it
        elif resolved == "/" or any(not _ID_SEGMENT.match(s) for s in resolved.strip("/").split("/")):
            add(marathon_path(["id"], prefix), ID_RULE)
        elif base != "/" and app_id.startswith("/") and not resolved.startswith(base.rstrip("/") + "/"):
            add(
                marathon_path(["id"], prefix),
                f"identifier {resolved} is not child of {base}. Hint: use relative paths.",
            )
    has_cmd = bool(app.get("cmd"))
    has_args = bool(app.get("args"))
    if (has_cmd and has_args) or not (has_cmd or has_args or app.get("container")):
        add(prefix or "/", COMMAND_RULE)

    ports = app.get("portDefinitions")
    if ports is None:
        ports = app.get("ports")
    # Without ports, Marathon gives a host-networked app one port (PortDefinition(0, name="default")).
    n_ports = len(ports) if isinstance(ports, list) else (0 if app.get("container") else 1)
    container = app.get("container") if isinstance(app.get("container"), Mapping) else {}
    mappings = container.get("portMappings") or ((container.get("docker") or {}).get("portMappings")) or []
    n_ports = max(n_ports, len(mappings) if isinstance(mappings, list) else 0)
    for i, check in enumerate(app.get("healthChecks") or []):
        if not isinstance(check, Mapping):
            continue
        protocol = check.get("protocol", "HTTP")
        where = marathon_path(["healthChecks", i], prefix)
        if protocol == "COMMAND":
            if not isinstance(check.get("command"), Mapping) or not check["command"].get("value"):
                add(where, "command is required when protocol is COMMAND")
        elif check.get("port") is None:
            index = check.get("portIndex", 0)
            if isinstance(index, int) and index >= n_ports:
                add(
                    where,
                    "Health check port indices must address an element of the ports array or container port mappings.",
                )
        if protocol != "COMMAND" and check.get("command"):
            add(where, f"command is only allowed when protocol is COMMAND (protocol is {protocol})")
    names = [p.get("name") for p in (app.get("portDefinitions") or []) if isinstance(p, Mapping) and p.get("name")]
    if len(names) != len(set(names)):
        add(marathon_path(["portDefinitions"], prefix), "Port names must be unique.")
    secrets = app.get("secrets") if isinstance(app.get("secrets"), Mapping) else {}
    for name, value in (app.get("env") or {}).items() if isinstance(app.get("env"), Mapping) else ():
        if isinstance(value, Mapping) and value.get("secret") not in secrets:
            add(marathon_path(["env", name], prefix), f"references an undefined secret named '{value.get('secret')}'")
    instances = app.get("instances")
    if isinstance(instances, bool):
        add(marathon_path(["instances"], prefix), "error.expected.jsnumber")
    return [{"path": p, "errors": e} for p, e in errors.items()]


def validate_group(group: Any, *, group_id: str = "/", prefix: str = "") -> list[dict[str, Any]]:
    """422 ``details`` for a group body of PUT/POST /v2/groups (apps and child groups, recursively)."""
    if not isinstance(group, Mapping):
        return [{"path": prefix or "/", "errors": ["error.expected.jsobject"]}]
    details: list[dict[str, Any]] = []
    gid = absolute_id(str(group.get("id") or group_id), group_id if group.get("id") else "/")
    known = {"id", "apps", "groups", "dependencies", "version", "scaleBy", "enforceRole", "pods"}
    for key in group:
        if key not in known:
            details.append({"path": f"{prefix}/{key}", "errors": ["is not a known property"]})
    apps = group.get("apps") or []
    if not isinstance(apps, list):
        return details + [{"path": f"{prefix}/apps", "errors": ["error.expected.jsarray"]}]
    seen: set[str] = set()
    for i, app in enumerate(apps):
        details += validate_app(app, prefix=f"{prefix}/apps({i})", base=gid)
        if isinstance(app, Mapping) and isinstance(app.get("id"), str):
            full = absolute_id(app["id"], gid)
            if full in seen:
                details.append({"path": f"{prefix}/apps({i})/id", "errors": [f"App {full} is defined twice"]})
            seen.add(full)
    for j, child in enumerate(group.get("groups") or []):
        child_id = child.get("id") if isinstance(child, Mapping) else None
        base = absolute_id(child_id, gid) if isinstance(child_id, str) else gid
        details += validate_group(child, group_id=base, prefix=f"{prefix}/groups({j})")
    return details


_JSON_TYPES = {
    "string": "jsstring",
    "integer": "jsnumber",
    "number": "jsnumber",
    "boolean": "jsboolean",
    "object": "jsobject",
    "array": "jsarray",
}


def _marathon_wording(err: jsonschema.ValidationError) -> str:
    """Marathon's phrasing for the common schema errors (``is greater than 1``, ``error.expected.jsstring``)."""
    if err.validator == "maximum":
        return f"is greater than {err.validator_value:g}"
    if err.validator == "minimum":
        return f"is less than {err.validator_value:g}"
    if err.validator == "type" and isinstance(err.validator_value, str):
        return f"error.expected.{_JSON_TYPES.get(err.validator_value, err.validator_value)}"
    if err.validator == "minLength" and err.validator_value == 1:
        return "must not be empty"
    return err.message


def check_app(app: Any, *, base: str = "/") -> None:
    """Raise :class:`ValidationFailed` when ``app`` is not a valid app definition."""
    details = validate_app(app, base=base)
    if details:
        raise ValidationFailed(details)


def check_group(group: Any, *, group_id: str = "/") -> None:
    details = validate_group(group, group_id=group_id)
    if details:
        raise ValidationFailed(details)
