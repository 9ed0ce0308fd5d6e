"""Static checks of templates/marathon: every app valid against Marathon's schema and our rules, for the
example SHA and for any SHA / environment name (the renderer never yields an invalid app), and every
environment name a valid Marathon group id. No scheduler."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envfixtures import rules
from envfixtures.core import naming
from envfixtures.drivers.marathon import render
from envfixtures.drivers.marathon.validation import validate_group
from envfixtures.rules import marathon as m_rules
from envfixtures.rules import policy

#: Marathon's rule for each segment of an id (PathId validation).
ID_SEGMENT = re.compile(r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$")
SHAS = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)


@pytest.fixture(scope="module")
def template_dir(pytestconfig: pytest.Config) -> Path:
    return (pytestconfig.rootpath / "templates") / "marathon"


def test_there_are_app_templates(template_dir: Path) -> None:
    assert sorted(template_dir.glob("*.json")), f"no app templates in {template_dir}"


@pytest.mark.parametrize("rule", sorted(m_rules.RULES))
def test_every_app_passes_rule(template_dir: Path, rule: str, pytestconfig: pytest.Config) -> None:
    if rule in policy.from_pytest(pytestconfig).off:
        pytest.skip(f"policy rule {rule} is turned off here (rules_off)")
    ctx = m_rules.context()
    findings = []
    for path in sorted(template_dir.glob("*.json")):
        try:
            app = m_rules.load(path, ctx)
        except Exception as exc:  # a parse error is the one-line reason of the static stage
            pytest.fail(str(exc), pytrace=False)
        findings += m_rules.RULES[rule](app)
    if findings:
        pytest.fail(rules.report(findings), pytrace=False)


def test_app_ids_are_unique_and_templates_parse(template_dir: Path) -> None:
    findings = [f for f in m_rules.check_dir(template_dir) if f.rule in ("marathon-parse", "marathon-schema")]
    if findings:
        pytest.fail(rules.report(findings), pytrace=False)


@settings(max_examples=200, deadline=None)
@given(sha=SHAS, branch=st.none() | st.text(), run_id=st.text())
def test_env_name_is_a_marathon_group_id(sha: str, branch: str | None, run_id: str) -> None:
    name = naming.env_name(sha, run_id, branch)
    assert ID_SEGMENT.match(name)
    assert validate_group({"id": f"/{name}", "apps": []}, group_id=f"/{name}") == []


@settings(max_examples=40, deadline=None)
@given(sha=SHAS, branch=st.none() | st.text(), run_id=st.text())
def test_renderer_gives_valid_apps_for_any_sha_and_env_name(
    template_dir: Path, sha: str, branch: str | None, run_id: str
) -> None:
    name = naming.env_name(sha, run_id, branch)
    ctx = m_rules.context(sha=sha, env_name=name)
    rendered = render.render_dir(template_dir, ctx)  # raises TemplateError on an invalid app
    for path, app in rendered:
        assert json.loads(json.dumps(app)) == app
        assert m_rules.check(m_rules.App(path, json.loads(path.read_text()), app, sha)) == []
    body = render.group_body(f"/{name}", [app for _, app in rendered])
    assert validate_group(body, group_id=f"/{name}") == []
