"""Static checks of templates/rabbitmq: the broker validator's consistency rules hold, and every environment
name is a usable vhost. No broker."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envfixtures import rules
from envfixtures.core import naming
from envfixtures.rules import rabbitmq as rmq_rules


@pytest.fixture(scope="module")
def definitions_path(pytestconfig: pytest.Config) -> Path:
    return (pytestconfig.rootpath / "templates") / "rabbitmq" / "definitions.json"


def test_definitions_pass_the_broker_validator(definitions_path: Path) -> None:
    findings = rmq_rules.check_file(definitions_path)
    if findings:
        pytest.fail(rules.report(findings), pytrace=False)


def test_a_broken_definitions_file_gives_every_finding_with_file_and_json_path(tmp_path: Path) -> None:
    path = tmp_path / "definitions.json"
    path.write_text('{"exchanges": [], "queues": [], "bindings": [{"source": "nowhere", "destination": "q"}]}')
    findings = rmq_rules.check_file(path)
    finding = findings[0]
    assert (finding.file, finding.place, finding.rule) == (str(path), "$.bindings[0].source", rmq_rules.RULE)
    # Every problem, not only the first: no destination_type, and the queue is not declared either.
    assert [f.place for f in findings] == ["$.bindings[0].source", "$.bindings[0].destination_type"]


@settings(max_examples=200, deadline=None)
@given(
    sha=st.text(alphabet="0123456789abcdef", min_size=40, max_size=40), branch=st.none() | st.text(), run_id=st.text()
)
def test_env_name_is_a_vhost(sha: str, branch: str | None, run_id: str) -> None:
    """Non-empty, at most 255 bytes, printable ASCII, and the same after the management API's URL quoting."""
    name = naming.env_name(sha, run_id, branch)
    assert 0 < len(name.encode()) <= 255 and name.isascii() and name.isprintable()
    assert unquote(quote(name, safe="")) == name
    assert quote(name, safe="") == name, "needs no escaping in /api/vhosts/<name>"
