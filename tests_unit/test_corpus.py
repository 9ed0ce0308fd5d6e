"""The real-world corpus (``tests_unit/corpus/manifest.yaml``): the static gate gives every input written by
others the verdict its real system gives it (zero false rejects, zero misses), exactly the policy flags listed,
and never crashes; and each class of false error the gate used to make has a real input here."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from envfixtures.drivers.rabbitmq import definitions as defs

CORPUS = Path(__file__).with_name("corpus")
_spec = importlib.util.spec_from_file_location("corpus_check", CORPUS / "check.py")
check = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["corpus_check"] = check
_spec.loader.exec_module(check)  # type: ignore[union-attr]

INPUTS = yaml.safe_load((CORPUS / "manifest.yaml").read_text())["inputs"]
IDS = [f"{i['file']}@{i['import_as']}" if "import_as" in i else i["file"] for i in INPUTS]
BY_FILE = {i["file"]: i for i in INPUTS if "import_as" not in i}


def test_corpus_is_large_sourced_and_licensed() -> None:
    files = {i["file"] for i in INPUTS}
    assert len(files) >= 60
    assert {i["kind"].split("-")[0] for i in INPUTS} == {"rabbitmq", "marathon", "cloudformation"}
    assert any(i["verdict"] == "refused" for i in INPUTS) and any(i["flags"] for i in INPUTS)
    for item in INPUTS:
        assert (CORPUS / item["file"]).is_file(), item["file"]
        src = item["source"]
        assert src["licence"] in ("Apache-2.0", "MIT", "MIT-0", "BSD-3-Clause", "MPL-2.0"), item["file"]
        assert len(src["commit"]) == 40 and src["repo"] and src["path"], item["file"]
        assert item["why"], item["file"]
    sources = {i["file"].split("/")[1] for i in INPUTS}
    assert {p.stem for p in (CORPUS / "licenses").glob("*.txt")} >= sources


@pytest.mark.parametrize("item", INPUTS, ids=IDS)
def test_the_gate_gives_the_real_systems_verdict(item: dict) -> None:
    verdict, flags = check.verdict(item)  # a crash fails here too
    found = "\n".join(str(f) for f in check.findings(item))
    assert verdict == item["verdict"], f"{item['file']}: gate says {verdict}, real system {item['why']}\n{found}"
    assert flags == item["flags"], f"{item['file']}: policy flags {flags}, expected {item['flags']}\n{found}"


def _findings(file: str) -> list:
    return check.findings(BY_FILE[file])


def test_a_real_per_vhost_export_is_accepted_as_a_per_vhost_import(tmp_path: Path) -> None:
    """RabbitMQ 3.12.8's GET /api/definitions/<vhost> shape (rabbit_version, parameters, no vhost keys)."""
    source = CORPUS / "rabbitmq/rabbitmq-server/failing_case21.json"
    doc = json.loads(source.read_text())
    assert "parameters" in doc and not any("vhost" in q for q in doc["queues"])
    loaded = defs.load(source)  # what the topology component runs: no error
    assert set(loaded.queues) == {"qq.1", "cq.1", "sq.1"}
    assert defs.problems(doc, import_as="vhost") == []
    assert [p.where for p in defs.problems(doc, import_as="broker")] == ["$.queues[0]"]


@pytest.mark.parametrize(
    ("file", "shows"),
    [
        ("rabbitmq/rabbitmq-server/case3.json", "bindings from the built-in amq.direct (never exported)"),
        ("rabbitmq/rabbitmq-server/case7.json", "bindings from the built-in amq.topic"),
        ("rabbitmq/rabbitmq-server/deps__rabbitmq_cli__test__fixtures__files__definitions.json", "parameters"),
        ("rabbitmq/rabbitmq-server/case2.json", "a whole-broker export: users, vhosts, permissions, global_parameters"),
    ],
)
def test_real_rabbitmq_shapes_are_accepted(file: str, shows: str) -> None:
    assert check.errors(_findings(file)) == [], shows


def test_real_amq_names_are_skipped_with_a_warning_not_refused() -> None:
    found = _findings("rabbitmq/rabbitmq-server/case11.json")
    assert found and all(f.severity == "warning" and "skips" in f.message for f in found)


def test_real_marathon_apps_with_fields_marathon_ignores_or_newer_fields() -> None:
    pinger = _findings("marathon/marathon/pinger-bridge-app.json")
    assert [(f.place, f.severity) for f in pinger] == [("/container/docker/requirePorts", "warning")]
    for file in ("marathon/docs__seccomp-app.json", "marathon/docs__secret-volume-app.json"):
        assert _findings(f"marathon/{file}") == [], file  # container.linuxInfo, a secret volume: known fields
    assert _findings("marathon/marathon/app_list.json") == []  # a GET's nulls ("args": null, "container": null)


def test_real_cloudformation_false_alarms_are_gone_and_real_problems_flagged() -> None:
    replica = _findings("cloudformation/aws-cloudformation-templates/RDS_MySQL_With_Read_Replica.yaml")
    assert replica == []  # the read replica inherits its encryption
    postgres = _findings("cloudformation/widdix-aws-cf-templates/rds-postgres.yaml")
    assert not any("ParentSecretStack" in f.message for f in postgres)  # a stack name, not a secret
    assert len({f.rule for f in postgres}) >= 3, "every finding, not only the first"
    assert not any("{'Fn::" in f.message or '{"Fn::' in f.message for f in postgres), "names, not raw intrinsics"
    [world] = _findings("cloudformation/aws-cloudformation-templates/EC2InstanceWithSecurityGroupSample.yaml")
    assert world.rule == "cfn-world-open" and "192.168.1.0/0" in world.message
