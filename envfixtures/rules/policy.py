"""The project's policy rules: stricter than CloudFormation, Marathon or RabbitMQ, each with an id and a reason.

A policy finding is never a parse or validation error: the real system would accept the input, this project
does not want it. A platform says which rules it holds in its configuration::

    [tool.envfixtures.rules]
    off = ["marathon-image-sha"]          # with the platform's reason in a comment
    [tool.envfixtures.rules.cfn-private-sources]
    app_roles = ["worker"]                # the rule's settings (:data:`RULE_SETTINGS`)

and a single run turns more off with the setting ``rules_off`` (``--env-set rules_off=cfn-db-backups``, ids
separated by commas or spaces). Validation rules (``*-parse``, ``*-schema``, ``cfn-lint``,
``rabbitmq-definitions``) cannot be turned off.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from envfixtures.core import config as config_mod
from envfixtures.core.config import PlatformConfig
from envfixtures.core.errors import ConfigError
from envfixtures.core.settings import layered
from envfixtures.rules import Finding

SETTING = "rules_off"

#: Policy rule id -> why the project holds it although the real system accepts what it refuses.
POLICY_RULES: dict[str, str] = {
    # CloudFormation (CloudFormation itself accepts all of these)
    "cfn-world-open": "only the load balancer may be reachable from the internet (any /0 prefix)",
    "cfn-private-sources": "the database and the broker are reached from the apps' hosts only",
    "cfn-port-range": "least privilege: the database's and broker's groups open their service ports, no range",
    "cfn-db-encrypted": "data at rest is encrypted (read replicas and cluster members inherit it)",
    "cfn-db-public": "the database has no public address",
    "cfn-db-backups": "the database keeps automated backups",
    "cfn-bucket-encrypted": "buckets have default server-side encryption",
    "cfn-bucket-public": "buckets block every kind of public access",
    "cfn-imdsv2": "hosts require IMDSv2 (IMDSv1 lets an SSRF read the instance role's credentials)",
    "cfn-secret-default": "secrets are NoEcho parameters without a Default",
    "cfn-secret-literal": "no secret is written into the template",
    # Marathon (Marathon accepts all of these)
    "marathon-image-sha": "the app runs the image built from the SHA under test",
    "marathon-health": "every app has health checks with sane timings",
    "marathon-resources": "cpus and mem are explicit",
    "marathon-secret-literal": "no secret is written into an app definition",
    # RabbitMQ (the definitions import accepts all of these)
    "rabbitmq-dlx-declared": "a dead-letter exchange is declared, or dead letters are silently dropped",
    "rabbitmq-policy-unused": "a policy that matches nothing is a renamed queue family or a typo",
    "rabbitmq-policy-tie": "two policies of equal priority on one queue: RabbitMQ picks one arbitrarily",
    "rabbitmq-unique-names": "a name declared twice: the import keeps the first and ignores the second",
    "rabbitmq-duplicate-binding": "a binding declared twice is a copy-paste mistake (the import makes one)",
}


@dataclasses.dataclass(frozen=True)
class PrivateSources:
    """Settings of ``cfn-private-sources``: which hosts (by their ``Role`` tag) are the apps' and the broker's."""

    #: the apps' hosts: their security groups may reach the database and the broker
    app_roles: tuple[str, ...] = ()
    #: the broker's hosts: their security groups are guarded like the database's
    broker_roles: tuple[str, ...] = ()


#: Policy rule id -> the dataclass of its settings (a table ``[tool.envfixtures.rules.<id>]``).
RULE_SETTINGS: dict[str, type] = {"cfn-private-sources": PrivateSources}


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which policy rules a platform holds, and their settings."""

    off: frozenset[str] = frozenset()
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def of(self, rule: str) -> Any:
        """The settings of ``rule`` (its defaults when the platform sets none)."""
        return self.settings.get(rule) or RULE_SETTINGS[rule]()

    def without(self, findings: Iterable[Finding]) -> list[Finding]:
        return without(findings, self.off)


def from_platform(platform: PlatformConfig, rules_off: str = "") -> Policy:
    """The policy of a platform's ``[tool.envfixtures.rules]`` and a run's ``rules_off``, checked."""
    table = platform.section("rules")
    unknown = sorted(set(table) - {"off", *RULE_SETTINGS})
    if unknown:
        raise ConfigError(
            f"{platform.where(section='rules')}: unknown key {', '.join(map(repr, unknown))}; known: off, "
            f"{', '.join(RULE_SETTINGS)} (the rules with settings)"
        )
    off_list = config_mod.parse_value(tuple[str, ...], table.get("off", []), platform.where("off", "rules"))
    try:
        off = parse(" ".join(off_list)) | parse(rules_off or "")
    except ConfigError as exc:
        raise ConfigError(f"{platform.where('off', 'rules')} / --env-set {exc}") from None
    settings = {
        rule: config_mod.parse([cls], platform.section("rules").get(rule, {}), platform.where(section=f"rules.{rule}"))[
            0
        ]
        for rule, cls in RULE_SETTINGS.items()
    }
    return Policy(off, settings)


def of_context(ctx: Any) -> Policy:
    """The policy a component's ``check`` and ``build`` apply (a :class:`~envfixtures.core.context.BuildContext`)."""
    return from_platform(ctx.platform, ctx.environment_settings.rules_off)


_SPLIT = re.compile(r"[\s,]+")


def parse(text: str) -> frozenset[str]:
    """The rule ids in ``text``; :class:`ConfigError` naming any id that is not a policy rule."""
    ids = frozenset(i for i in _SPLIT.split(text.strip()) if i)
    unknown = sorted(ids - POLICY_RULES.keys())
    if unknown:
        raise ConfigError(
            f"{SETTING}: {', '.join(unknown)} not a policy rule (validation rules cannot be turned off); "
            f"policy rules: {', '.join(sorted(POLICY_RULES))}"
        )
    return ids


def without(findings: Iterable[Finding], off: Iterable[str]) -> list[Finding]:
    """``findings`` less those of the policy rules in ``off``."""
    off = frozenset(off) & POLICY_RULES.keys()
    return [f for f in findings if f.rule not in off]


def reason(rule: str) -> str | None:
    """Why the project holds policy rule ``rule`` (``None`` for a validation rule)."""
    return POLICY_RULES.get(rule)


def from_pytest(config: object) -> Policy:
    """The policy of a pytest run: the platform's configuration at its rootdir, ``rules_off`` of ini
    ``env_settings``, ``ENVFIXTURES_SETTING_RULES_OFF`` or ``--env-set``."""
    values, _ = layered(
        config.getini("env_settings") or [],  # type: ignore[attr-defined]
        "ini env_settings",
        config.getoption("env_set", None) or [],  # type: ignore[attr-defined]
        "--env-set",
        os.environ,
    )
    rules_off = values.get(SETTING, "")
    return from_platform(config_mod.find(Path(config.rootpath)), rules_off)  # type: ignore[attr-defined]
