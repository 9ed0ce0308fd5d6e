"""Validate Marathon app and group definitions as Marathon 1.10 does; errors come in Marathon's 422 body shape.

Hand-written around a schema because no maintained library validates Marathon definitions: Marathon's own
validation is Scala (``AppValidation``, ``AppNormalization``) and its last JSON schema is 1.7's.

Two layers, as in Marathon: that schema (``schema/AppDefinition.json``, 1.7, Apache-2.0, copied from the
reference folder) for types and ranges, and the rules the schema cannot express (one of ``cmd`` / ``args``, or
a ``container``; health-check port indices against the ports Marathon assigns by default; ``env`` secrets
that reference ``secrets``; app ids inside their group). Paths are written the way Marathon writes them:
``/healthChecks(0)/portIndex``.

As Marathon 1.10 reads a definition: an unknown field is ignored (reported by :func:`unknown_fields`, a
warning in the static report, never an error); a field newer than the 1.7 schema (``tty``, ``role``,
``resourceLimits``, ``check``, ``container.linuxInfo``, secret volumes ...) is known; ``null`` is the same as
absent (a GET returns nulls); an app without ports gets Marathon's default port (one port definition on host
networking, one port mapping on bridge or container networking).
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

#: Paths (``*`` for any list index or map key) of fields in Marathon 1.10's RAML that the 1.7 schema does not
#: know; everything under a path ending in ``**`` is known too.
NEWER_PATHS: tuple[tuple[str, ...], ...] = (
    ("tty",),
    ("role",),
    ("resourceLimits", "**"),
    ("check", "**"),
    ("container", "linuxInfo", "**"),
    ("container", "volumes", "*", "secret"),
    ("container", "volumes", "*", "external", "**"),
    ("container", "volumes", "*", "persistent", "**"),
    ("container", "portMappings", "*", "networkNames"),
    ("container", "docker", "portMappings", "*", "networkNames"),
    ("networks", "*", "**"),
)

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


def _open(node: Any) -> Any:
    """The schema without ``additionalProperties: false``: Marathon ignores fields it does not know."""
    if isinstance(node, dict):
        return {k: _open(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_open(v) for v in node]
    return node


@cache
def _validator() -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_open(app_schema()))


def without_nulls(value: Any) -> Any:
    """``value`` with every ``null`` member removed: Marathon reads ``"field": null`` as an absent field."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _known(path: tuple[str, ...]) -> bool:
    for known in NEWER_PATHS:
        if known[-1] == "**":
            head = known[:-1]
            if len(path) >= len(head) and all(k in ("*", p) for k, p in zip(head, path, strict=False)):
                return True
        elif len(known) == len(path) and all(k in ("*", p) for k, p in zip(known, path, strict=True)):
            return True
    return False


def _properties(schema: Mapping[str, Any]) -> tuple[set[str], bool]:
    """The property names a schema node declares (through ``oneOf``/``anyOf``), and whether it closes them."""
    names = set(schema.get("properties") or {})
    closed = schema.get("additionalProperties") is False
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in schema.get(key) or []:
            if isinstance(branch, Mapping) and (branch.get("type") == "object" or "properties" in branch):
                more, more_closed = _properties(branch)
                names |= more
                closed = closed or more_closed
    return names, closed


def unknown_fields(app: Any, prefix: str = "") -> list[str]:
    """Paths (Marathon notation) of the fields of ``app`` that Marathon 1.10 does not know and ignores."""
    out: list[str] = []
    root = app_schema()

    def resolve(schema: Any) -> Mapping[str, Any]:
        if isinstance(schema, Mapping) and "$ref" in schema:
            return root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
        return schema if isinstance(schema, Mapping) else {}

    def walk(value: Any, schema: Any, path: tuple[Any, ...], names: tuple[str, ...]) -> None:
        schema = resolve(schema)
        if isinstance(value, Mapping):
            declared, closed = _properties(schema)
            patterns = schema.get("patternProperties") or {}
            for key, item in value.items():
                here = (*names, str(key))
                if key in declared:
                    walk(
                        item,
                        (schema.get("properties") or {}).get(key) or _branch_property(schema, key),
                        (*path, key),
                        here,
                    )
                elif patterns:
                    walk(item, next(iter(patterns.values())), (*path, key), (*names, "*"))
                elif closed and not path and key in STATUS_FIELDS:
                    continue
                elif closed and not _known(here):
                    out.append(marathon_path([*path, key], prefix))
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for i, item in enumerate(value):
                walk(item, schema["items"], (*path, i), (*names, "*"))

    if isinstance(app, Mapping):
        walk(without_nulls(app), root, (), ())
    return out


def _branch_property(schema: Mapping[str, Any], key: str) -> Any:
    for k in ("oneOf", "anyOf", "allOf"):
        for branch in schema.get(k) or []:
            if isinstance(branch, Mapping) and key in (branch.get("properties") or {}):
                return branch["properties"][key]
    return {}


def network_mode(app: Mapping[str, Any]) -> str:
    """``host``, ``container/bridge`` or ``container``: the app's networking as Marathon normalizes it."""
    networks = app.get("networks")
    if isinstance(networks, list) and networks:
        modes = [n.get("mode", "container") for n in networks if isinstance(n, Mapping)]
        return "host" if not modes or "host" in modes else modes[0]
    container = app.get("container") if isinstance(app.get("container"), Mapping) else {}
    docker = container.get("docker") if isinstance(container.get("docker"), Mapping) else {}
    legacy = {"BRIDGE": "container/bridge", "USER": "container"}
    if docker.get("network") in legacy:
        return legacy[docker["network"]]
    if isinstance(app.get("ipAddress"), Mapping):
        return "container"
    return "host"


def port_count(app: Mapping[str, Any]) -> int:
    """How many ports the app has once Marathon has applied its defaults (``AppNormalization``)."""
    container = app.get("container") if isinstance(app.get("container"), Mapping) else {}
    if network_mode(app) == "host":
        ports = app.get("portDefinitions")
        if ports is None:
            ports = app.get("ports")
        return len(ports) if isinstance(ports, list) else 1  # Apps.DefaultPortDefinitions
    mappings = container.get("portMappings")
    if mappings is None and isinstance(container.get("docker"), Mapping):
        mappings = container["docker"].get("portMappings")
    return len(mappings) if isinstance(mappings, list) and mappings else 1  # Apps.DefaultPortMappings


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
    app = without_nulls(app)
    body = {k: v for k, v in app.items() if k not in STATUS_FIELDS and k not in NEWER_FIELDS}
    for key, kinds in NEWER_FIELDS.items():
        if key in app and not isinstance(app[key], kinds):
            add(marathon_path([key], prefix), f"error.expected.{kinds[0].__name__}")
    for err in sorted(_validator().iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "not" and list(err.absolute_path) == []:
            continue  # cmd + args: reported below with Marathon's own wording
        path = list(err.absolute_path)
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

    n_ports = port_count(app)
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
    group = without_nulls(group)
    details: list[dict[str, Any]] = []
    gid = absolute_id(str(group.get("id") or group_id), group_id if group.get("id") else "/")
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


GROUP_FIELDS = frozenset({"id", "apps", "groups", "dependencies", "version", "scaleBy", "enforceRole", "pods"})


def group_unknown_fields(group: Any, prefix: str = "") -> list[str]:
    """Paths of the fields of a group body (its apps and child groups too) that Marathon ignores."""
    if not isinstance(group, Mapping):
        return []
    group = without_nulls(group)
    out = [f"{prefix}/{key}" for key in group if key not in GROUP_FIELDS]
    for i, app in enumerate(group.get("apps") or [] if isinstance(group.get("apps"), list) else []):
        out += unknown_fields(app, prefix=f"{prefix}/apps({i})")
    for j, child in enumerate(group.get("groups") or [] if isinstance(group.get("groups"), list) else []):
        out += group_unknown_fields(child, prefix=f"{prefix}/groups({j})")
    return out


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
