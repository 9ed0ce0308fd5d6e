"""Render Marathon app templates (the ``*.json`` of a platform's apps directory) and build the environment's group.

Hand-written rather than Jinja: placeholders ``{{ name }}`` are substituted inside JSON *string values*
only, after the file parsed as JSON, so a value can never break the JSON and every error names the file
and the JSON path. ``$PORT0``-style shell variables in ``cmd`` are left alone.

Context names: ``sha``, ``short_sha``, ``env_name``, ``group``, ``root`` and ``facts.<component>.<key>``
for the components the apps require. A secret fact may only be used under ``/env/...`` (secrets reach
apps through ``env``, never labels, ids or commands).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envfixtures.core.errors import TemplateError
from envfixtures.core.facts import Facts
from envfixtures.drivers.marathon.validation import marathon_path, validate_app

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


class Context:
    """What a template may refer to. ``facts`` maps component name -> Facts (or a stand-in at check time)."""

    def __init__(self, values: Mapping[str, str], facts: Mapping[str, Mapping[str, Any]]) -> None:
        self.values = dict(values)
        self.facts = facts if isinstance(facts, AnyComponent) else dict(facts)

    def lookup(self, name: str) -> tuple[str, bool] | None:
        """(value, is_secret) for a placeholder name, or None when unknown."""
        if name in self.values:
            return str(self.values[name]), False
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "facts" and parts[1] in self.facts:
            facts = self.facts[parts[1]]
            if parts[2] in facts:
                secret = parts[2] in getattr(facts, "secret_keys", ())
                return str(facts[parts[2]]), secret
        return None


class StandIn(dict):
    """Facts of a requirement at check time (nothing is built yet): any key renders as a marker."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"<{key}>"


class AnyComponent(dict):
    """Stand-ins for the facts of any component (the static stage, which does not know the apps' requirements)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> StandIn:
        return StandIn()


def placeholders(sha: str, env_name: str, root: Path | str) -> dict[str, str]:
    """The plain placeholders of the templates (facts of the requirements come in as ``facts.<name>.<key>``)."""
    return {"sha": sha, "short_sha": sha[:12], "env_name": env_name, "group": f"/{env_name}", "root": str(root)}


def check_context(values: Mapping[str, str], requires: tuple[str, ...] | None) -> Context:
    """Stand-ins for the facts of ``requires`` (``None``: of any component)."""
    return Context(values, AnyComponent() if requires is None else {name: StandIn() for name in requires})


def build_context(values: Mapping[str, str], facts: Mapping[str, Facts]) -> Context:
    return Context(values, facts)


def render_value(value: Any, ctx: Context, path: Path, parts: list[Any]) -> Any:
    if isinstance(value, dict):
        return {k: render_value(v, ctx, path, parts + [k]) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, ctx, path, parts + [i]) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        found = ctx.lookup(match.group(1))
        where = marathon_path(parts)
        if found is None:
            known = sorted(ctx.values) + [f"facts.{c}.<key>" for c in ctx.facts]
            raise TemplateError(
                path, where, f"unknown placeholder {{{{ {match.group(1)} }}}}; known: {', '.join(known)}"
            )
        text, secret = found
        if secret and not (len(parts) == 2 and parts[0] == "env"):
            raise TemplateError(
                path,
                where,
                f"secret {match.group(1)} may only be used in /env/<NAME>, never in labels, ids or commands",
            )
        return text

    return PLACEHOLDER.sub(substitute, value)


def render_file(path: Path, ctx: Context) -> dict[str, Any]:
    """Parse one template, substitute placeholders, validate it as a Marathon app (TemplateError on error)."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TemplateError(path, f"line {exc.lineno} column {exc.colno}", exc.msg) from None
    except OSError as exc:
        raise TemplateError(path, "-", f"cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise TemplateError(path, "/", "an app template must be a JSON object (one app definition)")
    app = render_value(raw, ctx, path, [])
    details = validate_app(app)
    if details:
        first = details[0]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        raise TemplateError(path, first["path"], "; ".join(first["errors"]) + more)
    return app


def render_dir(directory: Path, ctx: Context) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``*.json`` of ``directory``, rendered and validated, in name order; ids must be unique."""
    files = sorted(directory.glob("*.json"))
    if not files:
        raise TemplateError(directory, "-", "no *.json app templates")
    seen: dict[str, Path] = {}
    out = []
    for path in files:
        app = render_file(path, ctx)
        app_id = str(app["id"]).strip("/")
        if app_id in seen:
            raise TemplateError(path, "/id", f"app id {app_id!r} is also used by {seen[app_id].name}")
        seen[app_id] = path
        out.append((path, app))
    return out


def group_body(group_id: str, apps: list[dict[str, Any]]) -> dict[str, Any]:
    """The PUT /v2/groups body: apps with ids relative to the group."""
    return {"id": group_id, "apps": [{**app, "id": str(app["id"]).strip("/")} for app in apps]}
