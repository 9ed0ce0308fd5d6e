"""Rules on the Marathon app templates (the ``*.json`` of ``[tool.envfixtures.apps] templates``).

Each template is parsed, rendered with an example SHA and environment name by the apps' own renderer
(:mod:`envfixtures.drivers.marathon.render`, facts of requirements as stand-ins), validated against Marathon's
schema and rules (:mod:`envfixtures.drivers.marathon.validation`), then held to ours: the image tag is the
SHA, health checks exist with sane intervals, ``cpus`` and ``mem`` are set, and no secret is a literal
in ``env`` or ``labels`` (policy rules, see :mod:`.policy`). A field Marathon ignores is a warning.
Places are paths in Marathon's notation (``/healthChecks(0)/intervalSeconds``), the same as Marathon's 422
answers and the apps component's errors; a parse error is ``line L column C``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfixtures.core.errors import TemplateError
from envfixtures.drivers.marathon import render
from envfixtures.drivers.marathon.validation import marathon_path, unknown_fields, validate_app
from envfixtures.rules import WARNING, Finding, from_error, secret_like
from envfixtures.rules.cloudformation import EXAMPLE_ENV, EXAMPLE_SHA

#: Marathon's defaults when a health check leaves them out.
DEFAULT_INTERVAL, DEFAULT_TIMEOUT = 60, 20
MAX_INTERVAL = 60


@dataclass(frozen=True)
class App:
    """One template: as written (``raw``, placeholders intact) and rendered for ``sha``."""

    path: Path
    raw: dict[str, Any]
    rendered: dict[str, Any]
    sha: str

    def finding(self, rule: str, parts: list[Any], message: str) -> Finding:
        return Finding(str(self.path), marathon_path(parts), rule, message)


def context(
    sha: str = EXAMPLE_SHA,
    env_name: str = EXAMPLE_ENV,
    root: Path | str = "/srv/envfixtures",
    requires: tuple[str, ...] | None = None,
) -> render.Context:
    """The check-time context: the templates' placeholders, stand-ins for the facts of ``requires`` (the apps
    component passes its own; ``None``, as in the static stage, accepts the facts of any component)."""
    return render.check_context(render.placeholders(sha, env_name, root), requires)


def load(path: Path | str, ctx: render.Context | None = None, sha: str = EXAMPLE_SHA) -> App:
    """Parse and render one template; :class:`TemplateError` when it does not parse or render."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TemplateError(path, f"line {exc.lineno} column {exc.colno}", f"not valid JSON: {exc.msg}") from None
    except OSError as exc:
        raise TemplateError(path, "/", f"cannot read: {exc.strerror}") from None
    if not isinstance(raw, dict):
        raise TemplateError(path, "/", "an app template must be a JSON object (one app definition)")
    rendered = render.render_value(raw, ctx or context(sha), path, [])
    return App(path, raw, rendered, sha)


# ---------------------------------------------------------------------------- rules


def schema(app: App) -> list[Finding]:
    """Valid against Marathon's schema and Marathon's own rules (every error, not only the first)."""
    return [
        Finding(str(app.path), d["path"], "marathon-schema", "; ".join(d["errors"])) for d in validate_app(app.rendered)
    ]


def unknown(app: App) -> list[Finding]:
    """Fields Marathon 1.10 does not know: it ignores them, so a typo does nothing (a warning, never an error)."""
    return [
        Finding(str(app.path), path, "marathon-unknown-field", "Marathon ignores this field (unknown)", WARNING)
        for path in unknown_fields(app.rendered)
    ]


def image_is_sha(app: App) -> list[Finding]:
    """``container.docker.image`` is tagged with the full SHA the environment is built from."""
    container = app.rendered.get("container") if isinstance(app.rendered.get("container"), Mapping) else {}
    docker = container.get("docker") if isinstance(container.get("docker"), Mapping) else {}
    image = docker.get("image")
    if not isinstance(image, str) or not image:
        return [
            app.finding(
                "marathon-image-sha",
                ["container", "docker", "image"],
                "no container image: the app must run the image built from the SHA",
            )
        ]
    if not image.endswith(":" + app.sha):
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "(none, i.e. latest)"
        return [
            app.finding(
                "marathon-image-sha",
                ["container", "docker", "image"],
                f"image tag {tag!r} is not the SHA; tag it {{{{ sha }}}}",
            )
        ]
    return []


def health_checks(app: App) -> list[Finding]:
    """At least one health check; each with 1 <= intervalSeconds <= 60, timeout < interval, a grace period."""
    checks = app.rendered.get("healthChecks")
    if not isinstance(checks, list) or not checks:
        return [
            app.finding(
                "marathon-health",
                ["healthChecks"],
                "no health checks: Marathon would call a crashed-but-running app healthy",
            )
        ]
    out = []
    for i, check in enumerate(checks):
        if not isinstance(check, Mapping):
            continue
        interval = check.get("intervalSeconds", DEFAULT_INTERVAL)
        timeout = check.get("timeoutSeconds", DEFAULT_TIMEOUT)
        if not isinstance(interval, int) or not 1 <= interval <= MAX_INTERVAL:
            out.append(
                app.finding(
                    "marathon-health",
                    ["healthChecks", i, "intervalSeconds"],
                    f"intervalSeconds must be 1..{MAX_INTERVAL}, is {interval!r}",
                )
            )
        elif not isinstance(timeout, int) or not 0 < timeout < interval:
            out.append(
                app.finding(
                    "marathon-health",
                    ["healthChecks", i, "timeoutSeconds"],
                    f"timeoutSeconds ({timeout!r}) must be less than intervalSeconds ({interval})",
                )
            )
        if check.get("gracePeriodSeconds") is None:
            out.append(
                app.finding(
                    "marathon-health",
                    ["healthChecks", i, "gracePeriodSeconds"],
                    "gracePeriodSeconds must be set (how long the app may take to start)",
                )
            )
    return out


def resources(app: App) -> list[Finding]:
    """``cpus`` and ``mem`` set and positive (Marathon's defaults say nothing about the app)."""
    out = []
    for key in ("cpus", "mem"):
        value = app.rendered.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            out.append(
                app.finding("marathon-resources", [key], f"{key} must be set to a positive number, is {value!r}")
            )
    return out


def secret_literals(app: App) -> list[Finding]:
    """No password-like key of ``env`` or ``labels`` holds a literal (a placeholder or a secret ref is fine)."""
    out = []
    for section in ("env", "labels"):
        values = app.raw.get(section)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if secret_like(key) and isinstance(value, str) and value and not render.PLACEHOLDER.search(value):
                out.append(
                    app.finding(
                        "marathon-secret-literal",
                        [section, key],
                        f"{section}.{key} is a literal secret; use a placeholder of a secret fact "
                        "({{ facts.<component>.<key> }}) in env",
                    )
                )
    return out


RULES: dict[str, Callable[[App], list[Finding]]] = {
    "marathon-schema": schema,
    "marathon-unknown-field": unknown,
    "marathon-image-sha": image_is_sha,
    "marathon-health": health_checks,
    "marathon-resources": resources,
    "marathon-secret-literal": secret_literals,
}


# ---------------------------------------------------------------------------- entry points


def check(app: App) -> list[Finding]:
    return [f for rule in RULES.values() for f in rule(app)]


def check_file(path: Path | str, ctx: render.Context | None = None, sha: str = EXAMPLE_SHA) -> list[Finding]:
    """Every rule on one template; a parse or render error is the one finding (``marathon-parse``)."""
    try:
        app = load(path, ctx, sha)
    except TemplateError as exc:
        return [from_error(exc, "marathon-parse")]
    return check(app)


def check_dir(directory: Path | str, sha: str = EXAMPLE_SHA, requires: tuple[str, ...] | None = None) -> list[Finding]:
    """Every ``*.json`` of ``directory``, and app ids unique across them."""
    directory = Path(directory)
    files = sorted(directory.glob("*.json"))
    if not files:
        return [Finding(str(directory), "/", "marathon-parse", "no *.json app templates")]
    ctx = context(sha, requires=requires)
    findings: list[Finding] = []
    seen: dict[str, Path] = {}
    for path in files:
        findings += check_file(path, ctx, sha)
        try:
            app_id = str(json.loads(path.read_text()).get("id", "")).strip("/")
        except (ValueError, AttributeError):
            continue
        if app_id and app_id in seen:
            findings.append(
                Finding(str(path), "/id", "marathon-schema", f"app id {app_id!r} is also used by {seen[app_id].name}")
            )
        seen.setdefault(app_id, path)
    return findings
