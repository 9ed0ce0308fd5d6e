"""The hosts' boot (issue 18): the template's UserData fetches and runs the scripts under ``templates/hosts`` and
signals its own group, whose CreationPolicy waits for every instance; the scripts parse (``bash -n``) and pass
shellcheck (Debian's package, installed by scripts/bootstrap.sh); the aws component stages them in the account's
staging bucket before the stack and deletes the environment's prefix at teardown, gives the stack the values a
stand-in needs, and collects each host's console output when a create fails on aws — against a moto server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_cloudformation import REFERENCE, ROOT, SHA, Moto, fresh, issued_certificate, make_env, point_boto3_at

from envfixtures.components import aws as aws_component
from envfixtures.core import config
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ComponentFailed, ConfigError
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.aws import cloudformation, hosts
from envfixtures.rules import cloudformation as cfn_rules

__all__ = ["fresh"]  # the moto server fixture, shared with test_cloudformation
TEMPLATE = ROOT / REFERENCE.section("aws")["template"]
HOSTS = ROOT / REFERENCE.section("aws")["host_scripts"]
SCRIPTS = sorted(HOSTS.glob("*.sh"))
#: What a staged script's URL looks like in UserData: ``${HostScriptsUrl}<name>.sh``.
FETCHED = re.compile(r"\$\{HostScriptsUrl\}([-\w.]+\.sh)")
SIGNALLED = re.compile(r"--logical-resource-id (\w+)")


def launch_templates() -> dict[str, dict[str, Any]]:
    """Launch template logical id -> its UserData script as written (the text of its ``Fn::Sub``)."""
    found = {}
    for rid, res in cloudformation.load_template(TEMPLATE)["Resources"].items():
        if res["Type"] == "AWS::EC2::LaunchTemplate":
            user_data = res["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
            found[rid] = {"text": user_data if isinstance(user_data, str) else user_data[0]}
    return found


def rendered_user_data(text: str) -> str:
    """UserData as a host gets it: the ``${...}`` of the Sub replaced by example values."""
    return re.sub(r"\$\{([^}!][^}]*)\}", lambda m: f"example-{m.group(1).replace('::', '-')}", text)


def shellcheck() -> str:
    found = shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is not installed: scripts/bootstrap.sh installs it (Debian package shellcheck)")
    return found


# ---------------------------------------------------------------------------- the template and the scripts


def test_every_launch_template_runs_a_script_that_exists_and_signals_its_own_group() -> None:
    template = cloudformation.load_template(TEMPLATE)
    resources = template["Resources"]
    groups = {
        res["Properties"]["LaunchTemplate"]["LaunchTemplateId"]["Ref"]: rid
        for rid, res in resources.items()
        if res["Type"] == "AWS::AutoScaling::AutoScalingGroup"
    }
    referenced = set()
    for lt, user_data in launch_templates().items():
        text = user_data["text"]
        assert text.startswith("#!/bin/bash\n"), lt
        scripts = FETCHED.findall(text)
        assert len(scripts) == 1, (lt, scripts)
        assert (HOSTS / scripts[0]).is_file(), f"{lt} fetches {scripts[0]}, which is not in {HOSTS}"
        referenced.add(scripts[0])
        assert SIGNALLED.findall(text) == [groups[lt]], f"{lt} must signal the group that launches it"
        # The group waits for one signal per instance, bounded.
        policy = resources[groups[lt]]["CreationPolicy"]["ResourceSignal"]
        assert policy["Count"] == resources[groups[lt]]["Properties"]["DesiredCapacity"], groups[lt]
        assert re.fullmatch(r"PT\d+M", policy["Timeout"]), policy
    assert referenced == {"mesos-master.sh", "mesos-agent.sh", "rabbitmq-node.sh"}


def test_the_broker_hosts_get_the_environment_of_the_contract() -> None:
    text = launch_templates()["BrokerLaunchTemplate"]["text"]
    for variable, value in (("EF_REGION", "${AWS::Region}"), ("EF_ADMIN_SECRET_ARN", "${AdminSecret}"),
                            ("EF_COOKIE_SECRET_ARN", "${CookieSecret}"), ("EF_NODE_COUNT", "${BrokerNodeCount}"),
                            ("EF_DISCOVERY", "aws")):  # fmt: skip
        assert f"{variable}='{value}'" in text, variable


def assert_parses_and_passes_shellcheck(script: Path) -> None:
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    checked = subprocess.run([shellcheck(), "--shell=bash", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_each_host_script_parses_and_passes_shellcheck(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/bash\n")
    assert_parses_and_passes_shellcheck(script)


@pytest.mark.parametrize("lt", sorted(launch_templates()))
def test_each_user_data_parses_and_passes_shellcheck(lt: str, tmp_path: Path) -> None:
    script = tmp_path / f"{lt}.sh"
    script.write_text(rendered_user_data(launch_templates()[lt]["text"]))
    assert_parses_and_passes_shellcheck(script)


def test_shellcheck_finds_what_it_should(tmp_path: Path) -> None:
    """The check above can fail: an unquoted expansion is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/tmp\n")
    assert subprocess.run([shellcheck(), str(bad)], capture_output=True).returncode != 0


def test_the_broker_group_admits_an_internal_load_balancer_only_while_it_admits_only_the_apps(tmp_path: Path) -> None:
    """cfn-private-sources: the broker's group may admit the internal NLB's group, which admits the apps' group on
    the broker's ports; the NLB's group admitting the VPC on 5672 makes the broker reachable from it: refused."""
    platform = config.find(ROOT)
    values = cfn_rules.example_parameters(platform.section("aws")["parameters"])
    from envfixtures.rules import policy

    rules_policy = policy.from_platform(platform)
    assert cfn_rules.private_sources(cfn_rules.load(TEMPLATE, values, rules_policy)) == []
    opened = tmp_path / "opened.yaml"
    opened.write_text(
        TEMPLATE.read_text().replace(
            "FromPort: 5672, ToPort: 5672, SourceSecurityGroupId: !Ref AppsSecurityGroup, Description: AMQP from",
            "FromPort: 5672, ToPort: 5672, CidrIp: 10.40.0.0/16, Description: AMQP from",
        )
    )
    findings = cfn_rules.private_sources(cfn_rules.load(opened, values, rules_policy))
    assert [f.message.split(";")[0] for f in findings] == [
        "broker security group BrokerSecurityGroup admits group InternalLoadBalancerSecurityGroup on port 5672"
    ]


# ---------------------------------------------------------------------------- the aws component, against moto


def test_host_scripts_are_configured_or_refused_in_one_line(tmp_path: Path) -> None:
    table = {**REFERENCE.table, "aws": {**REFERENCE.table["aws"], "host_scripts": "templates/no-such-hosts"}}
    env = Environment(
        name="ef-0123456-nohosts", sha=SHA, backend="local", root=ROOT, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["aws"], config=type(REFERENCE)(REFERENCE.source, table),
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        env.check(["aws"])
    assert "[tool.envfixtures.aws] host_scripts: 'templates/no-such-hosts' is not a directory" in str(caught.value)
    assert "\n" not in str(caught.value) and not env.dir.exists()
    unset = {k: v for k, v in REFERENCE.table["aws"].items() if k != "host_scripts"}
    env = Environment(
        name="ef-0123456-nohosts", sha=SHA, backend="local", root=ROOT, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["aws"],
        config=type(REFERENCE)(REFERENCE.source, {**REFERENCE.table, "aws": unset}),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"host_scripts: not set, and a stack parameter is given host_scripts_url"):
        env.check(["aws"])


@pytest.mark.integration
def test_real_aws_stages_the_host_scripts_before_the_stack_and_deletes_them_at_teardown(
    fresh: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against moto standing in for the account: the staging bucket (named for the account and region) is created,
    closed and tagged; the scripts of this SHA are there; the stack is given their URL and the stand-in values;
    the environment's prefix is gone after the teardown (whose stack delete moto refuses), the bucket stays."""
    point_boto3_at(fresh, monkeypatch)
    env = make_env(tmp_path, "aws", aws_certificate_arn=issued_certificate(fresh), aws_stack_timeout="30")
    env.check(["aws"])
    facts = env.ensure("aws")
    s3 = fresh.client("s3")
    account = fresh.client("sts").get_caller_identity()["Account"]
    bucket = f"envfixtures-staging-{account}-us-east-1"
    prefix = f"{env.name}/{SHA}/hosts/"
    assert facts["staging_bucket"] == bucket and facts["host_scripts_url"] == f"s3://{bucket}/{prefix}"
    staged = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{env.name}/")["Contents"]}
    assert sorted(staged) == [prefix + p.name for p in SCRIPTS]
    for script in SCRIPTS:
        assert s3.get_object(Bucket=bucket, Key=prefix + script.name)["Body"].read() == script.read_bytes()
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]} == hosts.STAGING_TAGS
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    [stack] = fresh.client("cloudformation").describe_stacks(StackName=facts["stack_id"])["Stacks"]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert given["HostScriptsUrl"] == facts["host_scripts_url"] == facts["outputs"]["HostScriptsUrl"]
    assert given["InternalLoadBalancer"] == "false", "a stand-in creates no network load balancer"
    assert "InternalLoadBalancerDns" not in facts["outputs"]

    problems = env.teardown()
    assert len(problems) == 1 and "DependencyViolation" in problems[0], problems  # moto: the VPC stack stays
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"{env.name}/")["KeyCount"] == 0, "the prefix is gone anyway"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]], "the account's bucket stays"


def test_the_parameters_mapping_gives_the_new_values_and_they_differ_on_a_stand_in() -> None:
    parameters = REFERENCE.section("aws")["parameters"]
    assert {parameters[p] for p in ("HostScriptsUrl", "InternalLoadBalancer", "ImageId")} == {
        "host_scripts_url", "internal_load_balancer", "host_image"}  # fmt: skip
    assert set(parameters.values()) <= set(aws_component.PARAMETER_VALUES)
    assert set(aws_component.PARAMETER_VALUES) - {"database_password"} <= set(cfn_rules.EXAMPLE_VALUES)
    template = cloudformation.load_template(TEMPLATE)
    assert template["Parameters"]["InternalLoadBalancer"]["AllowedValues"] == ["true", "false"]
    assert template["Conditions"]["WithInternalLoadBalancer"] == {"Fn::Equals": [{"Ref": "InternalLoadBalancer"},
                                                                                 "true"]}  # fmt: skip
    conditional = {
        rid for rid, res in template["Resources"].items() if res.get("Condition") == "WithInternalLoadBalancer"
    }
    assert conditional == {"InternalNetworkLoadBalancer", "BrokerAmqpTargets", "BrokerManagementTargets",
                           "MarathonTargets", "BrokerAmqpListener", "BrokerManagementListener", "MarathonListener",
                           "BrokerRecord", "MarathonRecord"}  # fmt: skip


#: Hosts whose stack then fails: a group of one instance, then an HTTPS listener with a certificate ACM does not
#: hold, which moto refuses (after creating the group: it creates in order of dependency).
FAILING_HOSTS = """\
Resources:
  Network: {Type: AWS::EC2::VPC, Properties: {CidrBlock: 10.8.0.0/16}}
  Private: {Type: AWS::EC2::Subnet, Properties: {VpcId: !Ref Network, CidrBlock: 10.8.1.0/24,
            AvailabilityZone: us-east-1a}}
  Boot:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: ami-12c6146b
        InstanceType: t3.small
        MetadataOptions: {HttpTokens: required}
        TagSpecifications:
          - ResourceType: instance
            Tags: [{Key: Role, Value: mesos-agent}, {Key: envfixtures:env, Value: !Ref AWS::StackName}]
  Hosts:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties: {MinSize: 1, MaxSize: 1, VPCZoneIdentifier: [!Ref Private],
                 LaunchTemplate: {LaunchTemplateId: !Ref Boot, Version: !GetAtt Boot.LatestVersionNumber}}
  Balancer:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    DependsOn: Hosts
    Properties: {Subnets: [!Ref Private]}
  Targets: {Type: AWS::ElasticLoadBalancingV2::TargetGroup, Properties: {VpcId: !Ref Network, Port: 80,
            Protocol: HTTP}}
  Https:
    Type: AWS::ElasticLoadBalancingV2::Listener
    Properties:
      LoadBalancerArn: !Ref Balancer
      Protocol: HTTPS
      Port: 443
      Certificates: [{CertificateArn: arn:aws:acm:us-east-1:123456789012:certificate/none}]
      DefaultActions: [{Type: forward, TargetGroupArn: !Ref Targets}]
"""


@pytest.mark.integration
def test_a_failed_create_on_aws_carries_each_hosts_console_output(
    fresh: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Terratest's ec2-syslog: the create fails after the group launched its host; the build's error (the evidence
    a failing test shows) carries the host's console output, and the whole output is in the component's logs."""
    from test_cloudformation import aws_env

    point_boto3_at(fresh, monkeypatch)
    env = aws_env(tmp_path, FAILING_HOSTS, "ef-0123456-noboot")
    env.check(["aws"])
    with pytest.raises(ComponentFailed, match="refused"):
        env.ensure("aws")
    [instance] = [i for r in fresh.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    detail = env.component_state("aws")["detail"]
    assert "console output of 1 host(s), in " in detail
    assert f"-- mesos-agent {instance['InstanceId']} (running), last lines:" in detail
    written = env.dir / "logs" / "aws-console" / f"console-mesos-agent-{instance['InstanceId']}.log"
    text = written.read_text()
    expected = aws_clients.make_client("ec2", endpoint_url=fresh.url, region="us-east-1",
                                       credentials=fresh.credentials)  # fmt: skip
    assert text == hosts.console_output(expected, instance["InstanceId"]) and text.strip()
    assert text.strip().splitlines()[-1] in detail, "the last line of the output is in the message"
    env.teardown()


@pytest.mark.integration
def test_the_stack_broker_reads_its_administrator_from_the_stacks_secret(fresh: Moto) -> None:
    """No ENVFIXTURES_BROKER_ADMIN_*: the broker component reads the secret the stack generated (its ARN an output),
    with the aws component's credentials; a secret that is not the contract's JSON, or cannot be read, fails in one
    line naming the secret and never its value."""
    from envfixtures.components.broker import admin_from_secret
    from envfixtures.core.errors import BuildError
    from envfixtures.core.facts import Facts

    aws = Facts({"endpoint_url": fresh.url, "region": "us-east-1", "access_key_id": fresh.credentials.access_key_id,
                 "secret_access_key": fresh.credentials.secret_access_key})  # fmt: skip
    secrets = fresh.client("secretsmanager")
    good = secrets.create_secret(Name="admin", SecretString='{"username": "ef-admin", "password": "unit-pw-7a1c"}')
    assert admin_from_secret(aws, good["ARN"]) == ("ef-admin", "unit-pw-7a1c")
    bad = secrets.create_secret(Name="cookie", SecretString="unit-cookie-not-json-4d2e")
    with pytest.raises(BuildError) as caught:
        admin_from_secret(aws, bad["ARN"])
    assert str(caught.value) == (f"broker (aws): the administrator's secret {bad['ARN']} is not JSON with a username "
                                 "and a password")  # fmt: skip
    with pytest.raises(BuildError, match=r"could not be read: ResourceNotFoundException$"):
        admin_from_secret(aws, "arn:aws:secretsmanager:us-east-1:123456789012:secret:none-abcdef")


def run_host_script(moto: Moto, name: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``templates/hosts/<name>`` run for real against ``moto`` (its EC2 answers the peer discovery), without
    installing packages; what it would change on the machine is pointed into ``tmp_path`` by its knobs."""
    import os

    environment = {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": moto.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": moto.credentials.secret_access_key, "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "EF_AWS_ENDPOINT_URL": moto.url, "EF_REGION": "us-east-1", "EF_ENV_NAME": "ef-0123456-boot",
        "EF_MASTER_ROLE": "mesos-master", "EF_MASTER_COUNT": "3", "EF_SKIP_INSTALL": "1", "EF_WAIT": "0",
        "EF_ZK_CONF": str(tmp_path / "zoo.cfg"), **env,
    }  # fmt: skip
    return subprocess.run(["bash", str(HOSTS / name)], env=environment, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_the_masters_find_each_other_by_their_tags_and_number_their_zookeeper_ensemble(
    fresh: Moto, tmp_path: Path
) -> None:
    """mesos-master.sh's peer discovery, for real against moto's EC2: three masters tagged as the environment's (and
    an agent and another environment's master, which do not count) make a ZooKeeper ensemble in address order, this
    host's id its place; too few masters, or a host that is not one, fail in one line."""
    if not shutil.which("aws"):
        pytest.fail("awscli is not installed (the hosts' scripts call it): apt-get install awscli")
    ec2 = fresh.client("ec2")

    def launch(count: int, env_name: str, role: str) -> list[str]:
        tags = [{"Key": "EnvName", "Value": env_name}, {"Key": "Role", "Value": role}]
        started = ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count,
                                    TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])  # fmt: skip
        return [i["PrivateIpAddress"] for i in started["Instances"]]

    masters = sorted(launch(3, "ef-0123456-boot", "mesos-master"), key=lambda ip: tuple(map(int, ip.split("."))))
    launch(1, "ef-0123456-boot", "mesos-agent")
    launch(1, "ef-0123456-other", "mesos-master")
    data = tmp_path / "zk-data"
    (tmp_path / "zoo.cfg").write_text(f"tickTime=2000\ndataDir={data}\nclientPort=2181\nserver.9=old:2888:3888\n")

    done = run_host_script(fresh, "mesos-master.sh", tmp_path, EF_MY_IP=masters[1])
    assert f"ZooKeeper member 2 of 3: {' '.join(masters)}" in done.stdout, (done.stdout, done.stderr)
    config = (tmp_path / "zoo.cfg").read_text().splitlines()
    assert [line for line in config if line.startswith("server.")] == [
        f"server.{i + 1}={ip}:2888:3888" for i, ip in enumerate(masters)
    ], "the ensemble replaces what was there"
    assert (data / "myid").read_text() == "2\n"
    # Here it stops at ZooKeeper's start (no such service on this machine), in one line.
    assert done.returncode == 1 and done.stderr.startswith("mesos-master.sh: zookeeper did not start: "), done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr

    fewer = run_host_script(fresh, "mesos-master.sh", tmp_path, EF_MY_IP=masters[0], EF_MASTER_COUNT="4")
    assert fewer.returncode == 1
    assert fewer.stderr.strip() == "mesos-master.sh: only 3 of 4 masters found after 0s (ec2 describe-instances)"
    stranger = run_host_script(fresh, "mesos-master.sh", tmp_path, EF_MY_IP="10.99.0.1")
    assert stranger.returncode == 1
    assert stranger.stderr.strip() == (f"mesos-master.sh: this host (10.99.0.1) is not among the masters found: "
                                       f"{' '.join(masters)}")  # fmt: skip
    agent = run_host_script(fresh, "mesos-agent.sh", tmp_path, EF_MY_IP="10.99.0.2", EF_MASTER_COUNT="4")
    assert agent.returncode == 1
    assert agent.stderr.strip() == "mesos-agent.sh: only 3 of 4 masters found after 0s (ec2 describe-instances)"
