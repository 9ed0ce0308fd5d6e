"""``--env-backend aws`` against a moto server standing in for the account (``AWS_ENDPOINT_URL``), component by
component: each of the reference platform's components either builds or is refused at configure time, in one line
naming what is missing (and, where it is moto's limit, what moto cannot provide), with nothing created; the
account's preconditions (region, credentials, the certificate) are refused before the stack is created; and what
can only be known once the stack exists (a name that does not resolve) fails in seconds, not after a service's
timeout. docs/aws.md, "Against moto", is the table these tests hold.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from test_cloudformation import REFERENCE, ROOT, SHA, Moto, certificate, fresh, issued_certificate, point_boto3_at

from envfixtures.components import aws as aws_component
from envfixtures.core.environment import Environment
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import Facts
from envfixtures.drivers.aws import clients as aws_clients

__all__ = ["fresh"]  # the moto server fixture, shared with test_cloudformation
#: A commit of this checkout: the database's check reads the migrations committed at the SHA.
HEAD = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

#: What each reference component does on aws against moto: "built", or the words its refusal must carry.
EXPECTED = {
    "aws": "built",
    "images": "images (aws): AWS is a stand-in at {url} (AWS_ENDPOINT_URL), and a moto server serves ECR's API but "
    "no registry endpoint: nothing to push images to",
    "database": "database (aws): AWS is a stand-in at {url} (AWS_ENDPOINT_URL), and a moto server records the RDS "
    "instance but runs no PostgreSQL",
    "broker": "broker (aws): AWS is a stand-in at {url} (AWS_ENDPOINT_URL), and a moto server boots no instance: "
    "no RabbitMQ answers",
    "topology": "broker (aws): AWS is a stand-in at {url}",  # it requires the broker
    "scheduler": "scheduler (aws): AWS is a stand-in at {url} (AWS_ENDPOINT_URL), and a moto server boots no "
    "instance: no Marathon answers",
    "apps": "scheduler (aws): AWS is a stand-in at {url}",  # it requires the scheduler first
    "api": "scheduler (aws): AWS is a stand-in at {url}",  # it requires the apps
}


def aws_env(tmp_path: Path, index: int, **settings: str) -> Environment:
    """The reference platform on the aws backend (every component of it, as pyproject.toml lists them)."""
    return Environment(
        name=f"ef-0123456-moto{index}", sha=HEAD, backend="aws", root=ROOT, home=tmp_path / "home",
        settings={"quiet": "true", "aws_stack_timeout": "30", **settings}, components=list(REFERENCE.components),
        config=REFERENCE,
    )  # fmt: skip


def stacks(moto: Moto) -> list[str]:
    """Every stack the account holds, whatever its status."""
    return [s["StackName"] for s in moto.client("cloudformation").list_stacks().get("StackSummaries", [])]


def refusal(env: Environment, name: str) -> str:
    """The one-line reason ``name`` is refused at configure time (the test fails if it is not)."""
    with pytest.raises(ConfigError) as caught:
        env.check([name])
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.integration
def test_each_reference_component_on_aws_against_moto_builds_or_is_refused_with_its_reason(
    fresh: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_boto3_at(fresh, monkeypatch)
    arn = issued_certificate(fresh)
    assert set(EXPECTED) == set(REFERENCE.components), "a reference component this table does not hold"

    outcomes: dict[str, str] = {}
    for index, name in enumerate(REFERENCE.components):
        env = aws_env(tmp_path, index, aws_certificate_arn=arn)
        if EXPECTED[name] == "built":
            continue
        outcomes[name] = refusal(env, name)
        # Refused at configure time: no stack, no state directory, no process.
        assert stacks(fresh) == [], (name, stacks(fresh))
        assert not env.dir.exists(), name
    for name, message in outcomes.items():
        assert message.startswith(EXPECTED[name].format(url=fresh.url)), (name, message)

    # The whole reference platform is refused before anything is created (the first refusal named).
    whole = aws_env(tmp_path, 99, aws_certificate_arn=arn)
    with pytest.raises(ConfigError, match=r"^images \(aws\)"):
        whole.check()
    assert stacks(fresh) == [] and not whole.dir.exists()

    # What builds: the stack, with the outputs the other components would read.
    env = aws_env(tmp_path, 100, aws_certificate_arn=arn)
    env.check(["aws"])
    assert stacks(fresh) == [], "check created nothing"
    facts = env.ensure("aws")
    stack = fresh.client("cloudformation").describe_stacks(StackName=env.name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE" and facts["stack_id"] == stack["StackId"]
    assert facts["certificate_arn"] == arn and facts["region"] == "us-east-1"
    assert {"database_host", "broker_management", "marathon_url", "load_balancer_dns"} <= set(facts["endpoints"])
    problems = env.teardown()  # moto refuses a VPC stack's delete (docs/local-standins.md): said, not hidden
    assert len(problems) == 1 and "DependencyViolation" in problems[0], problems


def test_the_stack_components_are_refused_on_any_stand_in_without_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server needed: an endpoint in AWS's place is known before any call; on AWS's own endpoints the same checks
    pass (they refuse only what is missing there)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile's endpoint_url either
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_PROFILE", "ENVFIXTURES_MARATHON_USER",
                "ENVFIXTURES_MARATHON_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    env = aws_env(tmp_path, 1)
    classes = {name: env.component_class(name) for name in ("database", "broker", "scheduler", "api")}
    for cls in classes.values():
        cls.check(env.context(cls.name, cls))  # AWS's own endpoint: nothing refused
    assert aws_clients.is_aws_endpoint(aws_clients.endpoint_of("cloudformation", "eu-west-1"))

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    for name, cls in classes.items():
        with pytest.raises(ConfigError, match=rf"^{name} \(aws\): AWS is a stand-in at http://127\.0\.0\.1:9 "):
            cls.check(env.context(name, cls))


def test_a_stack_component_missing_its_configuration_is_refused_at_configure_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the builds read after the stack exists is refused before: Marathon's credentials, an output (the broker's
    administrator is the stack's own secret: its output)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDFORMATION", "ENVFIXTURES_MARATHON_USER"):
        monkeypatch.delenv(var, raising=False)
    env = aws_env(tmp_path, 2)
    broker = env.component_class("broker")
    broker.check(env.context("broker", broker))  # no credentials to give: the stack generates the administrator
    monkeypatch.setenv("ENVFIXTURES_MARATHON_PASSWORD", "unit-marathon-password")
    scheduler = env.component_class("scheduler")
    with pytest.raises(ConfigError, match=r"^scheduler \(aws\): set both"):
        scheduler.check(env.context("scheduler", scheduler))

    table = {**REFERENCE.table, "aws": {**REFERENCE.table["aws"], "outputs": {}, "parameters": {}}}
    bare = Environment(
        name="ef-0123456-bare", sha=HEAD, backend="aws", root=ROOT, home=tmp_path / "home", settings={"quiet": "true"},
        components=["aws", "database", "broker", "api"], config=type(REFERENCE)(REFERENCE.source, table),
    )  # fmt: skip
    for name, meaning in (("database", "database_host"), ("broker", "broker_amqp"), ("api", "load_balancer_dns")):
        cls = bare.component_class(name)
        with pytest.raises(ConfigError, match=rf"^{name} \(aws\): no stack output for '{meaning}'"):
            cls.check(bare.context(name, cls))

    # The broker's administrator is the stack's secret: without its output the broker is refused before the stack.
    outputs = {k: v for k, v in REFERENCE.table["aws"]["outputs"].items() if k != "broker_admin_secret"}
    table = {**REFERENCE.table, "aws": {**REFERENCE.table["aws"], "outputs": outputs}}
    no_secret = Environment(
        name="ef-0123456-nosecret", sha=HEAD, backend="aws", root=ROOT, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["aws", "broker"], config=type(REFERENCE)(REFERENCE.source, table),
    )  # fmt: skip
    broker = no_secret.component_class("broker")
    with pytest.raises(ConfigError, match=r"^broker \(aws\): no stack output for 'broker_admin_secret'"):
        broker.check(no_secret.context("broker", broker))


@pytest.mark.integration
@pytest.mark.parametrize(
    "case",
    ["no region", "no credentials", "wrong secret", "not an ARN", "other region", "not in ACM", "not issued", "quota"],
)
def test_each_aws_precondition_is_refused_in_one_line_before_the_stack_is_created(
    case: str, fresh: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_boto3_at(fresh, monkeypatch)
    nowhere = str(tmp_path / "none")
    monkeypatch.setenv("AWS_CONFIG_FILE", nowhere)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    arn = issued_certificate(fresh)
    account = arn.split(":")[4]
    expected: dict[str, tuple[dict[str, Any], str]] = {
        "no region": ({}, "the aws backend needs a region"),
        "no credentials": ({}, "the aws backend found no AWS credentials"),
        "wrong secret": ({}, "the aws backend's credentials were refused by STS GetCallerIdentity in us-east-1"),
        "not an ARN": ({"aws_certificate_arn": "my-cert"}, "aws_certificate_arn 'my-cert': not an ACM certificate"),
        "other region": (
            {"aws_certificate_arn": arn.replace(":us-east-1:", ":eu-west-1:")},
            "aws_certificate_arn: the certificate is in eu-west-1, the stack in us-east-1",
        ),
        "not in ACM": (
            {"aws_certificate_arn": f"arn:aws:acm:us-east-1:{account}:certificate/0000-none"},
            f"aws_certificate_arn: no such certificate in ACM in us-east-1 for account {account}",
        ),
        "not issued": ({"aws_certificate_arn": certificate(fresh)}, "is PENDING_VALIDATION in ACM, not ISSUED"),
        "quota": ({}, "aws quota VPCs per Region (L-F678F1CE) in us-east-1: 5 of 5 in use and the stack creates 1"),
    }
    settings, words = expected[case]
    settings = {"aws_certificate_arn": arn, **settings}
    if case == "no region":
        monkeypatch.delenv("AWS_DEFAULT_REGION")
    elif case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    elif case == "quota":  # moto's quota is AWS's default, 5, and its default VPC counts
        ec2 = fresh.client("ec2")
        while len(ec2.describe_vpcs()["Vpcs"]) < 5:
            ec2.create_vpc(CidrBlock="10.99.0.0/16")
    elif case == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-" + "x" * 27)
    env = Environment(
        name="ef-0123456-pre", sha=SHA, backend="aws", root=ROOT, home=tmp_path / "home", components=["aws"],
        settings={"quiet": "true", "aws_stack_timeout": "30", **settings}, config=REFERENCE,
    )  # fmt: skip
    message = refusal(env, "aws")
    assert words in message, message
    assert "wrong-secret" not in message and fresh.credentials.secret_access_key not in message
    assert stacks(fresh) == [] and not env.dir.exists()


def test_a_stack_endpoint_that_does_not_resolve_fails_in_seconds_with_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known only once the stack exists (on a real account, from outside its VPC): each component that reaches into
    the stack stops once the name its output gave does not resolve, instead of waiting out its service's timeout
    (the database waited 600 s, the scheduler 300 s)."""
    monkeypatch.setattr(aws_component, "RESOLVE_TIMEOUT", 1.0)
    env = aws_env(tmp_path, 3)
    env.description = env.describe()
    env.materialize()
    endpoints = {
        "database_host": "db.ef.invalid", "database_port": "5432", "database_name": "platform",
        "database_user": "platform", "broker_amqp": "amqp://broker.ef.invalid:5672",
        "broker_management": "http://broker.ef.invalid:15672", "marathon_url": "http://marathon.ef.invalid:8080",
        "load_balancer_dns": "lb.ef.invalid",
        "broker_admin_secret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:AdminSecret-abc",
    }  # fmt: skip
    aws = Facts({"backend": "aws", "endpoints": endpoints, "database_password": "unit-db-password-77"})
    env._set_state("aws", status="built", facts=aws.to_json())
    apps = Facts({"app_ids": ["/ef-0123456-moto3/orders-api"], "group": "/ef-0123456-moto3", "url": "http://x"})
    env._set_state("apps", status="built", facts=apps.to_json())
    hosts = {"database": "db.ef.invalid", "broker": "broker.ef.invalid", "scheduler": "marathon.ef.invalid",
             "api": "lb.ef.invalid"}  # fmt: skip
    for name, host in hosts.items():
        cls = env.component_class(name)
        ended: list[BaseException] = []

        def build(cls: Any = cls, name: str = name, ended: list[BaseException] = ended) -> None:
            try:
                cls().build(env.context(name, cls))  # its requirements' facts as the stack gave them
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                ended.append(exc)

        worker = threading.Thread(target=build, daemon=True)
        worker.start()
        worker.join(10)  # a build still waiting on its service's own timeout fails here, not minutes later
        assert not worker.is_alive() and ended, f"{name}: still building after 10 s"
        assert isinstance(ended[0], BuildError), (name, ended[0])
        message = str(ended[0])
        assert (
            message.startswith(f"{name} (aws): the stack's")
            and f"{host} does not resolve from this machine after 1s" in message
        )
        assert "\n" not in message and "unit-db-password" not in message
