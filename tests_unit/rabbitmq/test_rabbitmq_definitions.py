"""Validation of RabbitMQ definitions files: every problem names the file and the JSON path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from envfixtures.core.errors import TemplateError
from envfixtures.drivers.rabbitmq import definitions as defs

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "rabbitmq" / "definitions.json"


@pytest.fixture
def doc() -> dict:
    return json.loads(TEMPLATE.read_text())


def check(doc: dict, tmp_path: Path) -> defs.Definitions:
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(doc))
    return defs.load(path)


def error(doc: dict, tmp_path: Path) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        check(doc, tmp_path)
    assert info.value.path == str(tmp_path / "definitions.json")
    return info.value


def test_the_shipped_template_is_valid_and_has_quorum_queues_and_dead_lettering() -> None:
    d = defs.load(TEMPLATE)
    types = {defs.queue_type(q) for q in d.queues.values()}
    assert {"quorum", "classic"} <= types
    assert "platform.events" in d.exchanges and d.exchanges["platform.events"]["type"] == "topic"
    assert any("x-dead-letter-exchange" in (q.get("arguments") or {}) for q in d.queues.values())


def test_binding_to_missing_exchange_names_the_json_path(doc: dict, tmp_path: Path) -> None:
    doc["bindings"][3]["source"] = "no.such.exchange"
    err = error(doc, tmp_path)
    assert err.where == "$.bindings[3].source"
    assert "no.such.exchange" in err.problem
    assert str(err).startswith(f"{tmp_path / 'definitions.json'}:$.bindings[3].source:")


def test_binding_to_missing_queue(doc: dict, tmp_path: Path) -> None:
    doc["bindings"][1]["destination"] = "orders.lost"
    assert error(doc, tmp_path).where == "$.bindings[1].destination"


def test_exchange_to_exchange_binding_needs_the_destination_exchange(doc: dict, tmp_path: Path) -> None:
    doc["bindings"].append(
        {
            "source": "platform.events",
            "destination": "audit",
            "destination_type": "exchange",
            "routing_key": "#",
            "arguments": {},
        }
    )
    err = error(doc, tmp_path)
    assert err.where == f"$.bindings[{len(doc['bindings']) - 1}].destination" and "exchange 'audit'" in err.problem


def test_missing_dead_letter_exchange_in_queue_arguments(doc: dict, tmp_path: Path) -> None:
    doc["queues"][2]["arguments"]["x-dead-letter-exchange"] = "platform.gone"
    err = error(doc, tmp_path)
    assert err.where == "$.queues[2].arguments.x-dead-letter-exchange"


def test_missing_dead_letter_exchange_in_a_policy(doc: dict, tmp_path: Path) -> None:
    doc["policies"][0]["definition"]["dead-letter-exchange"] = "platform.gone"
    assert error(doc, tmp_path).where == "$.policies[0].definition.dead-letter-exchange"


def test_policy_pattern_matching_no_queue(doc: dict, tmp_path: Path) -> None:
    doc["policies"][1]["pattern"] = "^invoices\\."
    err = error(doc, tmp_path)
    assert err.where == "$.policies[1].pattern" and "matches no declared queue" in err.problem


def test_invalid_policy_regex(doc: dict, tmp_path: Path) -> None:
    doc["policies"][0]["pattern"] = "orders.("
    assert error(doc, tmp_path).where == "$.policies[0].pattern"


@pytest.mark.parametrize("section", ["exchanges", "queues", "policies"])
def test_a_name_declared_twice(doc: dict, tmp_path: Path, section: str) -> None:
    doc[section].append(copy.deepcopy(doc[section][0]))
    err = error(doc, tmp_path)
    assert err.where == f"$.{section}[{len(doc[section]) - 1}].name"
    assert f"first at $.{section}[0]" in err.problem


def test_a_binding_declared_twice(doc: dict, tmp_path: Path) -> None:
    doc["bindings"].append(copy.deepcopy(doc["bindings"][2]))
    assert error(doc, tmp_path).where == f"$.bindings[{len(doc['bindings']) - 1}]"


def test_competing_policies_of_equal_priority(doc: dict, tmp_path: Path) -> None:
    doc["policies"].append(
        {
            "name": "also-orders",
            "pattern": "^orders\\.created$",
            "apply-to": "queues",
            "priority": 1,
            "definition": {"max-length": 10},
        }
    )
    err = error(doc, tmp_path)
    assert err.where == "$.policies[2].priority" and "orders.created" in err.problem


def test_quorum_queue_must_be_durable(doc: dict, tmp_path: Path) -> None:
    doc["queues"][0]["durable"] = False
    assert error(doc, tmp_path).where == "$.queues[0]"


def test_reserved_names_and_unknown_types(doc: dict, tmp_path: Path) -> None:
    bad = copy.deepcopy(doc)
    bad["exchanges"][0]["name"] = "amq.mine"
    # RabbitMQ's import skips an 'amq.' name (a warning, not a refusal); the bindings from it then fail.
    [warning] = [p for p in defs.problems(bad) if p.severity == defs.WARNING]
    assert warning.where == "$.exchanges[0].name" and "skips" in warning.message
    assert error(bad, tmp_path).where == "$.bindings[0].source"
    bad = copy.deepcopy(doc)
    bad["exchanges"][1]["type"] = "x-random"
    assert error(bad, tmp_path).where == "$.exchanges[1].type"
    bad = copy.deepcopy(doc)
    bad["queues"][4]["arguments"]["x-queue-type"] = "lazy"
    assert error(bad, tmp_path).where == "$.queues[4].arguments.x-queue-type"


def test_unexpected_top_level_key_and_bad_json(doc: dict, tmp_path: Path) -> None:
    doc["users"] = []
    assert error(doc, tmp_path).where == "$.users"
    path = tmp_path / "definitions.json"
    path.write_text('{"exchanges": [}')
    with pytest.raises(TemplateError) as info:
        defs.load(path)
    assert info.value.where.startswith("line 1 column")


def test_effective_policy_takes_the_highest_priority(doc: dict, tmp_path: Path) -> None:
    doc["policies"].append(
        {
            "name": "urgent",
            "pattern": "^orders\\.created$",
            "apply-to": "queues",
            "priority": 9,
            "definition": {"max-length": 10},
        }
    )
    d = check(doc, tmp_path)
    assert defs.effective_policy(d.policies, "orders.created") == "urgent"
    assert defs.effective_policy(d.policies, "orders.fulfilled") == "work-queues"
    assert defs.effective_policy(d.policies, "notifications.email") is None


def test_a_per_vhost_export_whose_policies_name_their_vhost_is_per_vhost(doc: dict) -> None:
    """RabbitMQ 3.10's GET /api/definitions/<vhost> keeps ``vhost`` in policies and parameters only (found by
    tests_plugin/test_definitions_round_trip.py): still the per-vhost shape, its policies matched to its queues."""
    export = copy.deepcopy(doc)
    export.update(rabbit_version="3.10.8", parameters=[])
    for policy in export["policies"]:
        policy["vhost"] = "ef-0123456-xprt"
    assert [p for p in defs.problems(export) if p.severity == "error" or p.rule == "rabbitmq-policy-unused"] == []


def test_an_erlang_charlist_in_an_error_body_is_decoded() -> None:
    from envfixtures.drivers.rabbitmq.management import error_text

    body = '{"error":[84,105,109,101,100,32,111,117,116],"reason":"x"}'
    assert error_text(body) == "error: Timed out; reason: x"
    assert error_text('{"error":"Object Not Found","reason":"Not Found"}') == (
        '{"error":"Object Not Found","reason":"Not Found"}'
    )
    assert error_text("<html>502</html>") == "<html>502</html>"
