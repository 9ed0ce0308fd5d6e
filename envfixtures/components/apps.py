"""The ``apps`` component: the platform's Marathon app templates deployed as one group named for the environment.

Configured in ``[tool.envfixtures.apps]``: ``templates``, the directory of the app templates (``*.json``, the
template language of :mod:`envfixtures.drivers.marathon.render`), and ``requires``, the components whose facts
they use.

``check`` renders and validates every template (Marathon's 422 rules) before anything is built.
``build`` renders them with the SHA, the env name and the facts of those components, PUTs the group
``/<env name>`` with ``force``, waits until the deployment is gone and every app healthy, and fails fast
with a task's ``lastTaskFailure`` message. Same class on both backends: only the scheduler's URL differs.
Facts: ``url`` (the scheduler; its credentials are in the ``scheduler`` facts), ``group``, ``app_ids``,
``deployment_id``, ``desired`` (the rendered apps, secret-free: ``env`` values are dropped) and ``templates``
(app id -> template file).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envfixtures import rules
from envfixtures.core.component import Component
from envfixtures.core.config import path_field
from envfixtures.core.errors import BuildError, ConfigError, TemplateError
from envfixtures.core.facts import Facts
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.containers import podman
from envfixtures.drivers.marathon import containerizer, render
from envfixtures.drivers.marathon.client import MarathonClient, MarathonError, NotFound, Unavailable
from envfixtures.drivers.marathon.validation import absolute_id
from envfixtures.rules import marathon as marathon_rules
from envfixtures.rules import policy

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext


@dataclasses.dataclass(frozen=True)
class AppsConfig:
    """The app templates, and the components whose facts they use."""

    #: the directory of the Marathon app templates (*.json), relative to the checkout
    templates: str = path_field(kind="dir")
    #: the components built before the apps; their facts are the templates' ``{{ facts.<name>.<key> }}``
    requires: tuple[str, ...] = ("scheduler",)


def template_dir(ctx: "BuildContext") -> Path:
    if not ctx.config.templates:
        raise ConfigError(f"{ctx.platform.where('templates', 'apps')}: not set (the directory of the app templates)")
    return ctx.path(ctx.config.templates)


def context_values(ctx: "BuildContext") -> dict[str, str]:
    """Plain placeholders of the templates (facts of the requirements come in as ``facts.<name>.<key>``)."""
    return render.placeholders(ctx.sha, ctx.name, ctx.root)


class Apps(Component):
    """The platform's Marathon apps, as one group ``/<env name>``."""

    name = "apps"
    requires: tuple[str, ...] = ("scheduler",)
    Config = AppsConfig

    @classmethod
    def requirements(cls, config: AppsConfig) -> tuple[str, ...]:
        """The scheduler, and what the platform's templates use (``requires``)."""
        return tuple(dict.fromkeys(("scheduler", *config.requires)))

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait for the deployment and every app healthy."""

        apps_timeout: float = 300.0

    @classmethod
    def inputs(cls, ctx: "BuildContext") -> list[Path]:
        return sorted(template_dir(ctx).glob("*.json"))

    @classmethod
    def lint(cls, ctx: "BuildContext", *, thorough: bool = False) -> list[rules.Finding]:
        findings = marathon_rules.check_dir(template_dir(ctx), requires=cls.requirements(ctx.config))
        return policy.of_context(ctx).without(findings)

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        requires = cls.requirements(ctx.config)
        rendered = render.render_dir(template_dir(ctx), render.check_context(context_values(ctx), requires))
        rules.refuse(cls.lint(ctx))
        docker_apps = [path for path, app in rendered if containerizer.image_of(app)]
        problem = podman.missing() if docker_apps and ctx.backend == "local" else None
        if problem:  # refused now rather than failing every launch until the timeout
            raise ConfigError(f"{docker_apps[0]}: a docker app runs as a container here, and {problem}")

    def build(self, ctx: "BuildContext") -> Facts:
        facts = {name: ctx.facts(name) for name in self.requirements(ctx.config)}
        rendered = render.render_dir(template_dir(ctx), render.build_context(context_values(ctx), facts))
        _refuse_leaked_secrets(rendered, [v for f in facts.values() for v in f.secret_values()])
        group = f"/{ctx.name}"
        body = render.group_body(group, [app for _, app in rendered])
        app_ids = [absolute_id(a["id"], group) for a in body["apps"]]
        client = MarathonClient.from_facts(ctx.facts("scheduler"))
        timeout = ctx.settings.apps_timeout
        started = time.time()
        result = client.put_group(group, body, force=True)
        ctx.progress(f"apps: deploying {len(app_ids)} app(s) as {group} (deployment {result.deployment_id})")
        client.wait_for_deployment(result.deployment_id, timeout=timeout, app_ids=app_ids, since=started)
        wait_for(
            lambda: _all_healthy(client, app_ids),
            what=f"every app of {group} healthy",
            timeout=timeout,
            retry_on=(Unavailable,),
            failed=lambda: client.failure_since(app_ids, started),
            first_delay=0.1,
        )
        ctx.progress(f"apps: {len(app_ids)} app(s) healthy in {time.time() - started:.1f}s")
        desired = {absolute_id(a["id"], group): _without_env_values(a) for a in body["apps"]}
        live = {a.id: a.version for a in client.list_apps(app_id=group)}
        images = {
            absolute_id(a["id"], group): ((a.get("container") or {}).get("docker") or {}).get("image")
            for a in body["apps"]
        }
        versions = {
            app_id: f"{live.get(app_id)}" + (f" (image {images[app_id]})" if images.get(app_id) else "")
            for app_id in app_ids
        }
        return Facts(
            {
                "versions": versions,
                "url": client.url,
                "group": group,
                "app_ids": app_ids,
                "deployment_id": result.deployment_id,
                "desired": desired,
                "templates": {absolute_id(str(app["id"]).strip("/"), group): str(path) for path, app in rendered},
            }
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Delete the group (its tasks stop) and wait for that deployment; tolerate a scheduler already gone."""
        try:
            scheduler = ctx.facts("scheduler")
        except Exception:  # noqa: BLE001 - nothing was deployed if the scheduler never got built
            return
        client = _client(scheduler, facts, timeout=5.0)
        try:
            result = client.delete_group(f"/{ctx.name}", force=True)
            client.wait_for_deployment(result.deployment_id, timeout=60)
        except (NotFound, Unavailable):
            return
        except MarathonError as exc:
            raise BuildError(f"could not delete Marathon group /{ctx.name}: {exc}") from exc

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        try:
            client = _client(ctx.facts("scheduler"), facts, timeout=5.0)
            lines = []
            for app in client.list_apps(embed=("apps.tasks", "apps.lastTaskFailure"), app_id=facts["group"]):
                failure = app.last_task_failure
                lines.append(
                    f"{app.id}: instances={app.instances} running={app.tasks_running} healthy={app.tasks_healthy} "
                    f"deployments={app.deployments}"
                    + (f" lastTaskFailure={failure.state}: {failure.message}" if failure else "")
                )
            return "\n".join(lines)
        except Exception as exc:  # noqa: BLE001 - diagnosis must not fail the report
            return f"could not read the apps: {exc}"


def _client(scheduler: Facts, facts: Facts, *, timeout: float) -> MarathonClient:
    """The scheduler's client with its credentials, at the URL the apps were deployed to."""
    return MarathonClient.from_facts({**scheduler, "url": facts.get("url") or scheduler["url"]}, timeout=timeout)


def _all_healthy(client: MarathonClient, app_ids: list[str]) -> bool:
    apps = {a.id: a for a in client.list_apps(embed=("apps.tasks",))}
    for app_id in app_ids:
        app = apps.get(app_id)
        if app is None or app.deployments or app.tasks_running != app.instances:
            return False
        if app.health_checks and app.tasks_healthy != app.instances:
            return False
    return True


def _refuse_leaked_secrets(rendered: list[tuple[Path, dict[str, Any]]], secrets: list[str]) -> None:
    """A secret value outside ``/env/<NAME>`` is refused (it would show in labels, ids, logs)."""
    for path, app in rendered:
        for key, value in app.items():
            if key == "env":
                continue
            text = str(value)
            if any(s and s in text for s in secrets):
                raise TemplateError(path, f"/{key}", "contains a secret value; secrets reach apps only through env")


def _without_env_values(app: dict[str, Any]) -> dict[str, Any]:
    """The desired definition kept as a fact: env names only (values may be secret)."""
    out = dict(app)
    if "env" in out:
        out["env"] = {k: "<set>" for k in out["env"]}
    return out
