"""The stack's hosts and the endpoints in front of them (issue 18): boot scripts staged for this SHA, the broker's
secrets, groups created only once every instance signalled its boot, an internal network load balancer in front of
the broker (5672, 15672) and the masters (8080), and the broker's and Marathon's names as alias records for it.

Runs against the ``aws`` component. On ``local`` (moto) the stack is created with ``InternalLoadBalancer=false``
(moto ignores a load balancer's Type and refuses TCP listeners), moto's CloudFormation creates no Secrets Manager
secret and ignores CreationPolicy, and boots nothing: those tests are skipped there with that reason
(``docs/local-standins.md``) and run on ``--env-backend aws``. Select with ``-k hosts`` or ``-k aws``.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from aws_checks import client, only_on_aws, out

from envfixtures.core.facts import Facts

#: The internal load balancer's listeners: port -> the group of the stack whose instances are its targets.
LISTENERS = {5672: "BrokerGroupName", 15672: "BrokerGroupName", 8080: "MesosMasterGroupName"}


def group_instances(aws: Facts, output: str) -> list[dict[str, Any]]:
    [group] = client(aws, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[out(aws, output)])[
        "AutoScalingGroups"
    ]
    return group["Instances"]


# ---------------------------------------------------------------------------- both backends


def test_hosts_boot_scripts_are_staged_for_this_sha(aws: Facts, envfixtures_env: Any) -> None:
    url = urlsplit(out(aws, "HostScriptsUrl"))
    assert url.scheme == "s3" and url.path.endswith(f"/{envfixtures_env.sha}/hosts/")
    listed = client(aws, "s3").list_objects_v2(Bucket=url.netloc, Prefix=url.path.lstrip("/"))
    names = {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
    assert {"mesos-master.sh", "mesos-agent.sh", "rabbitmq-node.sh"} <= names, names


def test_hosts_internal_load_balancer_group_admits_only_the_apps_on_the_broker_ports(aws: Facts) -> None:
    """The broker's group admits the internal load balancer's group (its listeners and health checks), which admits
    only the apps' group on the broker's ports: the broker stays reached from the apps only."""
    [group] = client(aws, "ec2").describe_security_groups(GroupIds=[out(aws, "InternalLoadBalancerSecurityGroupId")])[
        "SecurityGroups"
    ]
    by_port = {
        (r["FromPort"], r["ToPort"]): {p["GroupId"] for p in r.get("UserIdGroupPairs", [])}
        | {c["CidrIp"] for c in r.get("IpRanges", [])}
        for r in group["IpPermissions"]
    }
    apps = out(aws, "AppsSecurityGroupId")
    assert by_port[(5672, 5672)] == {apps} and by_port[(15672, 15672)] == {apps}
    assert by_port[(8080, 8080)] == {out(aws, "VpcCidr")}, "Marathon from inside the VPC, as the masters' group"


def test_hosts_role_may_fetch_its_scripts_signal_this_stack_and_read_only_the_broker_secrets(aws: Facts) -> None:
    iam = client(aws, "iam")
    role = out(aws, "HostRoleArn").rsplit("/", 1)[-1]
    document = iam.get_role_policy(RoleName=role, PolicyName="boot")["PolicyDocument"]
    if isinstance(document, str):  # moto hands the document back as the text of a Python dict
        document = json.loads(document.replace("'", '"').replace("None", "null"))
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    url = urlsplit(out(aws, "HostScriptsUrl"))
    assert by_sid["FetchBootScripts"]["Action"] == ["s3:GetObject"]
    assert by_sid["FetchBootScripts"]["Resource"] == f"arn:aws:s3:::{url.netloc}{url.path}*", "the staged prefix only"
    assert by_sid["SignalThisStackOnly"]["Action"] == ["cloudformation:SignalResource"]
    assert by_sid["SignalThisStackOnly"]["Resource"] == aws["stack_id"]
    assert set(by_sid["PeerDiscovery"]["Action"]) == {
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:DescribeInstances",
    }
    assert by_sid["ReadTheBrokerSecrets"]["Action"] == ["secretsmanager:GetSecretValue"]
    if aws["backend"] != "local":  # moto creates no secret: its Resource reads [None, None] there
        assert sorted(by_sid["ReadTheBrokerSecrets"]["Resource"]) == sorted(
            [out(aws, "BrokerAdminSecretArn"), out(aws, "BrokerCookieSecretArn")]
        )


# ---------------------------------------------------------------------------- aws only


def test_hosts_broker_secrets_exist_and_the_admin_secret_is_a_user(aws: Facts) -> None:
    only_on_aws(aws, "moto creates no AWS::SecretsManager::Secret from a template (its output is missing)")
    secrets = client(aws, "secretsmanager")
    for output in ("BrokerAdminSecretArn", "BrokerCookieSecretArn"):
        described = secrets.describe_secret(SecretId=out(aws, output))
        assert described["ARN"] == out(aws, output) and "DeletedDate" not in described
    value = json.loads(secrets.get_secret_value(SecretId=out(aws, "BrokerAdminSecretArn"))["SecretString"])
    assert set(value) == {"username", "password"} and value["username"] and len(value["password"]) >= 32


def test_hosts_groups_were_created_by_one_success_signal_per_instance(aws: Facts) -> None:
    only_on_aws(aws, "moto ignores CreationPolicy and boots no host to signal")
    events = client(aws, "cloudformation").get_paginator("describe_stack_events").paginate(StackName=aws["stack_id"])
    signals: dict[str, set[str]] = {}
    for page in events:
        for event in page["StackEvents"]:
            reason = event.get("ResourceStatusReason") or ""
            if reason.startswith("Received SUCCESS signal with UniqueId "):
                signals.setdefault(event["LogicalResourceId"], set()).add(reason.rsplit(" ", 1)[-1])
    for logical, output in (("MesosMasterGroup", "MesosMasterGroupName"), ("MesosAgentGroup", "MesosAgentGroupName"),
                            ("BrokerGroup", "BrokerGroupName")):  # fmt: skip
        instances = group_instances(aws, output)
        assert instances and all(i["LifecycleState"] == "InService" for i in instances), output
        assert signals.get(logical) == {i["InstanceId"] for i in instances}, f"{logical}: {signals.get(logical)}"


def test_hosts_internal_load_balancer_listens_and_forwards_to_healthy_hosts(aws: Facts) -> None:
    only_on_aws(aws, "moto creates no network load balancer (the stack is given InternalLoadBalancer=false)")
    elb = client(aws, "elbv2")
    [balancer] = elb.describe_load_balancers(LoadBalancerArns=[out(aws, "InternalLoadBalancerArn")])["LoadBalancers"]
    assert (balancer["Type"], balancer["Scheme"]) == ("network", "internal")
    assert balancer["SecurityGroups"] == [out(aws, "InternalLoadBalancerSecurityGroupId")]
    listeners = elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert {(listener["Protocol"], listener["Port"]) for listener in listeners} == {("TCP", p) for p in LISTENERS}
    for listener in listeners:
        [action] = listener["DefaultActions"]
        assert action["Type"] == "forward"
        health = elb.describe_target_health(TargetGroupArn=action["TargetGroupArn"])["TargetHealthDescriptions"]
        expected = {i["InstanceId"] for i in group_instances(aws, LISTENERS[listener["Port"]])}
        assert {h["Target"]["Id"] for h in health} == expected, listener["Port"]
        assert {h["Target"]["Port"] for h in health} == {listener["Port"]}
        assert all(h["TargetHealth"]["State"] == "healthy" for h in health), (listener["Port"], health)


def test_hosts_alias_records_name_the_internal_load_balancer(aws: Facts) -> None:
    only_on_aws(aws, "moto creates no network load balancer, so no alias record for it")
    dns = out(aws, "InternalLoadBalancerDns").rstrip(".").lower()
    records = client(aws, "route53").list_resource_record_sets(HostedZoneId=out(aws, "PrivateZoneId"))
    aliases = {
        r["Name"].rstrip("."): r["AliasTarget"]["DNSName"].rstrip(".").lower()
        for r in records["ResourceRecordSets"]
        if r["Type"] == "A" and "AliasTarget" in r
    }
    for output in ("BrokerAmqpEndpoint", "BrokerManagementUrl", "MarathonUrl"):
        host = urlsplit(out(aws, output)).hostname
        assert aliases.get(host) in (dns, f"dualstack.{dns}"), (output, host, aliases)


def test_hosts_the_internal_load_balancer_resolves_to_private_addresses(aws: Facts) -> None:
    """An internal load balancer's name is public DNS for its private addresses: in the VPC's private subnets."""
    only_on_aws(aws, "moto creates no network load balancer")
    addresses = {a[4][0] for a in socket.getaddrinfo(out(aws, "InternalLoadBalancerDns"), None, socket.AF_INET)}
    vpc = ipaddress.ip_network(out(aws, "VpcCidr"))
    assert addresses and all(ipaddress.ip_address(a) in vpc for a in addresses), addresses
