"""Static checks of templates/cloudformation: our rules on the template as rendered, cfn-lint clean, and
stack parameters CloudFormation accepts for any SHA, branch and run id. No environment, no AWS."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envfixtures import rules
from envfixtures.components.aws import generate_password
from envfixtures.core import config, naming
from envfixtures.rules import cloudformation as cfn_rules
from envfixtures.rules import policy

STACK_NAME = r"^[a-zA-Z][-a-zA-Z0-9]{0,127}$"
SHAS = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
BRANCHES = st.none() | st.text()
RUN_IDS = st.text()


@pytest.fixture(scope="module")
def template_path(pytestconfig: pytest.Config) -> Path:
    return (pytestconfig.rootpath / "templates") / "cloudformation" / "environment.yaml"


@pytest.fixture(scope="module")
def doc(template_path: Path, pytestconfig: pytest.Config) -> cfn_rules.Document:
    try:
        parameters = config.find(pytestconfig.rootpath).section("aws").get("parameters", {})
        return cfn_rules.load(
            template_path, cfn_rules.example_parameters(parameters), policy=policy.from_pytest(pytestconfig)
        )
    except Exception as exc:  # a parse error is the one-line reason of the static stage
        pytest.fail(str(exc), pytrace=False)


_VERDICTS: dict[Path, list[rules.Finding]] = {}


def example_verdict(doc: cfn_rules.Document) -> list[rules.Finding]:
    if doc.path not in _VERDICTS:
        _VERDICTS[doc.path] = cfn_rules.check(doc)
    return _VERDICTS[doc.path]


@pytest.mark.parametrize("rule", sorted(cfn_rules.RULES))
def test_template_passes_rule(doc: cfn_rules.Document, rule: str, pytestconfig: pytest.Config) -> None:
    if rule in policy.from_pytest(pytestconfig).off:
        pytest.skip(f"policy rule {rule} is turned off here (rules_off)")
    findings = cfn_rules.RULES[rule](doc)
    if findings:
        pytest.fail(rules.report(findings), pytrace=False)


def test_template_is_cfn_lint_clean(template_path: Path) -> None:
    findings = cfn_rules.run_cfn_lint(template_path)
    if findings:
        pytest.fail(rules.report(findings), pytrace=False)


def test_rules_see_the_rendered_template(doc: cfn_rules.Document) -> None:
    """A rule reads ``!Ref AppPort`` as its value, and ``!Sub`` of parameters as the string."""
    apps = doc.rendered["Resources"]["AppsSecurityGroup"]["Properties"]["SecurityGroupIngress"][0]
    assert apps["FromPort"] == int(doc.raw["Parameters"]["AppPort"]["Default"])
    assert apps["SourceSecurityGroupId"] == {"Ref": "LoadBalancerSecurityGroup"}
    zone = doc.rendered["Resources"]["PrivateZone"]["Properties"]["Name"]
    assert zone == f"{cfn_rules.EXAMPLE_ENV}.envfixtures.internal"
    assert cfn_rules.line_of(zone) > 1, "rendered values keep the line of what they replaced"


def test_roles_of_the_security_groups_come_from_the_structure(doc: cfn_rules.Document) -> None:
    assert cfn_rules.load_balancer_groups(doc) == {"LoadBalancerSecurityGroup", "InternalLoadBalancerSecurityGroup"}
    assert cfn_rules.internal_load_balancer_groups(doc) == {"InternalLoadBalancerSecurityGroup"}
    assert cfn_rules.database_groups(doc) == {"DatabaseSecurityGroup"}
    assert cfn_rules.broker_groups(doc) == {"BrokerSecurityGroup"}
    assert cfn_rules.app_groups(doc) == {"AppsSecurityGroup"}, "the Mesos group is on masters too"


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@settings(max_examples=200, deadline=None)
@given(sha=SHAS, branch=BRANCHES, run_id=RUN_IDS)
def test_env_name_is_a_stack_name_and_a_directory_name(
    scratch: Path, sha: str, branch: str | None, run_id: str
) -> None:
    name = naming.env_name(sha, run_id, branch)
    assert re.fullmatch(STACK_NAME, name)
    assert name not in (".", "..") and "/" not in name and "\0" not in name and len(name.encode()) <= 255
    os.makedirs(scratch / name, exist_ok=True)
    assert (scratch / name).is_dir()


@settings(max_examples=40, deadline=None)
@given(sha=SHAS, branch=BRANCHES, run_id=RUN_IDS)
def test_stack_parameters_are_accepted_and_the_rendered_template_passes(
    doc: cfn_rules.Document, sha: str, branch: str | None, run_id: str
) -> None:
    """The parameters the aws component passes satisfy the template's constraints, and the rules' verdict on
    the template rendered with them is the verdict on the example rendering (checked once, above)."""
    name = naming.env_name(sha, run_id, branch)
    params = {
        "EnvName": name,
        "GitSha": sha,
        "CertificateArn": cfn_rules.EXAMPLE_VALUES["certificate_arn"],
        "DbMasterPassword": generate_password(),
        "HostScriptsUrl": f"s3://envfixtures-staging-123456789012-us-east-1/{name}/{sha}/hosts/",
        "InternalLoadBalancer": cfn_rules.EXAMPLE_VALUES["internal_load_balancer"],
        "ImageId": cfn_rules.EXAMPLE_VALUES["host_image"],
    }
    assert cfn_rules.parameter_problems(doc.raw, params) == []
    values = cfn_rules.example_values(doc.raw, params)
    rendered = cfn_rules.Document(doc.path, doc.raw, cfn_rules.render(doc.raw, values), values, doc.policy)
    assert [(f.rule, f.place) for f in cfn_rules.check(rendered)] == [(f.rule, f.place) for f in example_verdict(doc)]
    assert rendered.rendered["Resources"]["PrivateZone"]["Properties"]["Name"] == f"{name}.envfixtures.internal"


def test_parameter_problems_names_what_cloudformation_would_refuse(doc: cfn_rules.Document) -> None:
    problems = cfn_rules.parameter_problems(
        doc.raw,
        {"EnvName": "1-starts-with-a-digit", "GitSha": "abc", "CertificateArn": "x", "DbMasterPassword": "short"},
    )
    assert any(p.startswith("EnvName:") for p in problems)
    assert any(p.startswith("GitSha:") for p in problems)
    assert any("MinLength" in p for p in problems)
