"""One mistake injected into a copy of the shipped templates fails the static stage with a finding that names it.

Each case patches ``templates/`` (copied into ``tmp_path``) once and runs the static rules as the stage runs
them (cfn-lint aside: it has tests of its own); the finding must refuse, come from the rule meant for the
mistake, and name what was done.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from envfixtures import rules
from envfixtures.core import config
from envfixtures.rules import cloudformation, marathon, policy, rabbitmq

ROOT = Path(__file__).resolve().parent.parent
#: The reference platform's policy rules and their settings (its [tool.envfixtures]).
REFERENCE_POLICY = policy.from_platform(config.find(ROOT))


@dataclass(frozen=True)
class Injection:
    id: str
    file: str  # relative to templates/
    patch: Callable[[str], str]
    rule: str
    names: tuple[str, ...]  # what the message must say


def replace(old: str, new: str) -> Callable[[str], str]:
    def patch(text: str) -> str:
        assert text.count(old) >= 1, f"anchor gone from the shipped template: {old!r}"
        return text.replace(old, new, 1)

    return patch


def json_patch(change: Callable[[dict], None]) -> Callable[[str], str]:
    def patch(text: str) -> str:
        doc = json.loads(text)
        change(doc)
        return json.dumps(doc, indent=2)

    return patch


def _undeclared_binding(doc: dict) -> None:
    doc["bindings"].append(
        {
            "source": "platform.audit",
            "destination": "orders.created",
            "destination_type": "queue",
            "routing_key": "#",
            "arguments": {},
        }
    )


def _no_command(app: dict) -> None:
    for key in ("cmd", "args", "container"):
        app.pop(key, None)


DB_PORTS = "          FromPort: 5432\n          ToPort: 5432\n"
INJECTIONS = [
    Injection(
        "db-ingress-port-range-widened",
        "cloudformation/environment.yaml",
        replace(DB_PORTS, "          FromPort: 0\n          ToPort: 5432\n"),
        "cfn-port-range",
        ("DatabaseSecurityGroup", "ports 0-5432", "5432"),
    ),
    Injection(
        "ingress-from-non-canonical-slash-0",
        "cloudformation/environment.yaml",
        replace(
            "CidrIp: 10.40.0.0/16, Description: Marathon API inside the VPC }\n",
            "CidrIp: 10.40.0.0/16, Description: Marathon API inside the VPC }\n"
            "        - { IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: 192.168.1.0/0, Description: SSH }\n",
        ),
        "cfn-world-open",
        ("MesosSecurityGroup", "192.168.1.0/0", "0.0.0.0/0", "port 22"),
    ),
    Injection(
        "db-publicly-accessible",
        "cloudformation/environment.yaml",
        replace("PubliclyAccessible: false", "PubliclyAccessible: true"),
        "cfn-db-public",
        ("Database", "PubliclyAccessible"),
    ),
    Injection(
        "db-storage-not-encrypted",
        "cloudformation/environment.yaml",
        replace("StorageEncrypted: true", "StorageEncrypted: false"),
        "cfn-db-encrypted",
        ("Database", "StorageEncrypted"),
    ),
    Injection(
        "imdsv1",
        "cloudformation/environment.yaml",
        replace("HttpTokens: required", "HttpTokens: optional"),
        "cfn-imdsv2",
        ("MesosMasterLaunchTemplate", "IMDSv1", "optional"),
    ),
    Injection(
        "binding-from-undeclared-exchange",
        "rabbitmq/definitions.json",
        json_patch(_undeclared_binding),
        "rabbitmq-definitions",
        ("platform.audit", "not declared"),
    ),
    Injection(
        "app-without-cmd-args-or-container",
        "marathon/orders-api.json",
        json_patch(_no_command),
        "marathon-schema",
        ("'cmd' or 'args'", "'container'"),
    ),
]


def static_stage(templates: Path) -> list[rules.Finding]:
    """The static rules of the three kinds of template, as the static stage runs them (cfn-lint aside)."""
    found = cloudformation.check_file(templates / "cloudformation" / "environment.yaml", policy=REFERENCE_POLICY)
    found += marathon.check_dir(templates / "marathon")
    found += rabbitmq.check_file(templates / "rabbitmq" / "definitions.json")
    return found


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", copy)
    return copy


def test_the_shipped_templates_pass(templates: Path) -> None:
    found = rules.errors(static_stage(templates))
    assert found == [], rules.report(found)


@pytest.mark.parametrize("injection", INJECTIONS, ids=[i.id for i in INJECTIONS])
def test_injected_mistake_fails_the_static_stage_naming_it(templates: Path, injection: Injection) -> None:
    path = templates / injection.file
    path.write_text(injection.patch(path.read_text()))
    found = rules.errors(static_stage(templates))
    mine = [f for f in found if f.rule == injection.rule and all(n in f.message for n in injection.names)]
    assert mine, f"{injection.id}: no {injection.rule} finding naming {injection.names}:\n{rules.report(found)}"
    assert all(f.file == str(path) for f in mine)
    with pytest.raises(Exception, match=injection.rule):
        rules.refuse(mine)  # what a component's check() does at configure
