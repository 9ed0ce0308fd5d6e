"""The project's policy rules: stricter than CloudFormation, Marathon or RabbitMQ, each with an id and a reason.

A policy finding is never a parse or validation error: the real system would accept the input, this project
does not want it. A platform that has its own reason turns rules off with the setting ``rules_off`` (ini
``env_settings = rules_off=cfn-db-backups marathon-image-sha``, or ``--env-set rules_off=...``): a list of
ids separated by commas or spaces. Validation rules (``*-parse``, ``*-schema``, ``cfn-lint``,
``rabbitmq-definitions``) cannot be turned off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from envfixtures.core.errors import ConfigError
from envfixtures.core.settings import parse_lines
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


def disabled(rules_off: str | Mapping[str, str] | None) -> frozenset[str]:
    """The policy rules a platform's setting ``rules_off`` turns off (its text, or a mapping of raw settings)."""
    if isinstance(rules_off, Mapping):
        rules_off = rules_off.get(SETTING, "")
    return parse(rules_off or "")


def without(findings: Iterable[Finding], off: Iterable[str]) -> list[Finding]:
    """``findings`` less those of the policy rules in ``off``."""
    off = frozenset(off) & POLICY_RULES.keys()
    return [f for f in findings if f.rule not in off]


def reason(rule: str) -> str | None:
    """Why the project holds policy rule ``rule`` (``None`` for a validation rule)."""
    return POLICY_RULES.get(rule)


def from_pytest(config: object) -> frozenset[str]:
    """The policy rules turned off for a pytest run (``rules_off`` in ini ``env_settings`` or ``--env-set``)."""
    lines = list(config.getini("env_settings") or []) + list(config.getoption("env_set", None) or [])  # type: ignore[attr-defined]
    return disabled(parse_lines(lines, "--env-set / ini env_settings"))
