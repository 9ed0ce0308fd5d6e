"""Policy rules: ids with reasons, turned off per platform (``rules_off``); validation rules cannot be; warnings
never refuse; every finding is reported with a summary line per file."""

from __future__ import annotations

import pytest

from envfixtures import rules
from envfixtures.core.config import PlatformConfig
from envfixtures.core.errors import ConfigError, TemplateError
from envfixtures.drivers.rabbitmq import definitions as defs
from envfixtures.rules import cloudformation, marathon, policy, rabbitmq


def test_every_rule_of_the_gate_is_a_policy_rule_with_a_reason_or_a_validation_rule() -> None:
    validation = {"marathon-schema", "marathon-unknown-field", "cfn-lint", "cfn-parse", "marathon-parse", rabbitmq.RULE}
    for rule in [*cloudformation.RULES, *marathon.RULES]:
        assert rule in validation or policy.reason(rule), rule
    assert all(policy.POLICY_RULES.values())


def test_rules_off_turns_off_policy_rules_only() -> None:
    none = PlatformConfig()
    assert policy.from_platform(none, "cfn-db-backups, marathon-image-sha").off == {
        "cfn-db-backups",
        "marathon-image-sha",
    }
    assert policy.from_platform(none).off == frozenset()
    with pytest.raises(ConfigError, match="rabbitmq-definitions"):
        policy.from_platform(none, "rabbitmq-definitions")
    found = [rules.Finding("f", "p", "cfn-db-backups", "m"), rules.Finding("f", "q", "cfn-parse", "m")]
    assert policy.without(found, {"cfn-db-backups", "cfn-parse"}) == found[1:]


def test_warnings_never_refuse_and_the_summary_has_one_line_per_file() -> None:
    warning = rules.Finding("a.json", "/x", "marathon-unknown-field", "ignored", rules.WARNING)
    error = rules.Finding("b.json", "/y", "marathon-schema", "bad")
    rules.refuse([warning])
    with pytest.raises(TemplateError, match="b.json:/y: bad"):
        rules.refuse([warning, error])
    assert str(warning) == "a.json:/x: warning: ignored [marathon-unknown-field]"
    assert rules.summary([warning, error], ["a.json", "b.json", "c.json"]) == [
        "a.json: 0 error(s), 1 warning(s) (marathon-unknown-field)",
        "b.json: 1 error(s), 0 warning(s) (marathon-schema)",
        "c.json: ok",
    ]


@pytest.mark.parametrize(
    ("key", "secret"),
    [("DbPassword", True), ("API_TOKEN", True), ("PGPASSWORD", True), ("ParentSecretStack", False)]
    + [("DbSecretArn", False), ("TokenLength", False), ("PASSWORD_FILE", False), ("HttpTokens", False)],
)
def test_secret_names(key: str, secret: bool) -> None:
    assert rules.secret_like(key) is secret


def test_plugin_exchange_types_need_their_plugin() -> None:
    doc = {
        "exchanges": [{"name": "later", "type": "x-delayed-message", "arguments": {"x-delayed-type": "direct"}}],
        "queues": [{"name": "q"}],
        "bindings": [{"source": "later", "destination": "q", "destination_type": "queue", "routing_key": "k"}],
    }
    [unknown] = defs.problems(doc, plugins=None)
    assert unknown.severity == defs.WARNING and "rabbitmq_delayed_message_exchange" in unknown.message
    [refused] = defs.problems(doc, plugins=["rabbitmq_management"])
    assert refused.severity == defs.ERROR and refused.where == "$.exchanges[0].type"
    assert defs.problems(doc, plugins=["rabbitmq_delayed_message_exchange"]) == []
    doc["exchanges"][0]["type"] = "topics"
    assert "unknown exchange type" in defs.problems(doc, plugins=None)[0].message
