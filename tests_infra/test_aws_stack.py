"""The environment's AWS stack, as AWS describes it: network, who may reach what, database, tags, outputs.

Runs against the ``aws`` component (a moto server on ``local``, the real account on ``aws``). A
property moto does not reflect (``docs/local-standins.md``) is skipped on ``local`` with that reason
and runs on ``aws``. Select with ``-k stack`` or ``-k aws``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_checks import client, only_on_aws, out

from envfixtures.core.facts import Facts
from envfixtures.drivers.aws import cloudformation

EXPECTED_OUTPUTS = {
    "VpcId", "VpcCidr", "PublicSubnet1Id", "PublicSubnet2Id", "PrivateSubnet1Id", "PrivateSubnet2Id",
    "PublicSubnetIds", "PrivateSubnetIds", "InternetGatewayId", "NatGateway1Id", "NatGateway2Id",
    "LoadBalancerSecurityGroupId", "AppsSecurityGroupId", "MesosSecurityGroupId", "DatabaseSecurityGroupId",
    "BrokerSecurityGroupId", "DatabaseInstanceId", "DatabaseEndpoint", "DatabasePort", "DatabaseName",
    "DatabaseMasterUsername", "BrokerAmqpEndpoint", "BrokerManagementUrl", "MarathonUrl", "PrivateZoneId",
    "PrivateZoneName", "LoadBalancerDns", "LoadBalancerArn", "ApiUrl", "ApiTargetGroupArn", "HttpsListenerArn",
    "ArtifactBucket", "HostRoleArn", "HostInstanceProfileName", "MesosMasterGroupName", "MesosAgentGroupName",
    "BrokerGroupName", "EnvName", "GitSha",
}  # fmt: skip
WORLD = {"0.0.0.0/0", "::/0"}


def tags_of(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def ingress(aws: Facts, group_output: str) -> list[dict[str, Any]]:
    [group] = client(aws, "ec2").describe_security_groups(GroupIds=[out(aws, group_output)])["SecurityGroups"]
    return group["IpPermissions"]


def sources(rule: dict[str, Any]) -> set[str]:
    return (
        {r["CidrIp"] for r in rule.get("IpRanges", [])}
        | {r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])}
        | {p["GroupId"] for p in rule.get("UserIdGroupPairs", [])}
    )


# ---------------------------------------------------------------------------- outputs and tags


def test_stack_has_every_expected_output(aws: Facts) -> None:
    missing = EXPECTED_OUTPUTS - set(aws["outputs"])
    assert not missing, f"stack outputs missing: {sorted(missing)}"
    assert all(str(value).strip() for value in aws["outputs"].values())


def test_stack_tags_carry_sha_and_env_name(aws: Facts, envfixtures_env: Any) -> None:
    cf = client(aws, "cloudformation")
    found = cloudformation.describe(cf, aws["stack_id"])
    assert found is not None and found["StackStatus"] == "CREATE_COMPLETE"
    assert tags_of(found["Tags"]) == {"EnvName": envfixtures_env.name, "GitSha": envfixtures_env.sha}
    assert aws["outputs"]["GitSha"] == envfixtures_env.sha


def test_stack_resources_carry_sha_and_env_name(aws: Facts, envfixtures_env: Any) -> None:
    expected = {"EnvName": envfixtures_env.name, "GitSha": envfixtures_env.sha}
    ec2, rds, asg = client(aws, "ec2"), client(aws, "rds"), client(aws, "autoscaling")
    [vpc] = ec2.describe_vpcs(VpcIds=[out(aws, "VpcId")])["Vpcs"]
    assert expected.items() <= tags_of(vpc.get("Tags")).items()
    [db] = rds.describe_db_instances(DBInstanceIdentifier=out(aws, "DatabaseInstanceId"))["DBInstances"]
    assert expected.items() <= tags_of(db.get("TagList")).items()
    for key in ("MesosMasterGroupName", "MesosAgentGroupName", "BrokerGroupName"):
        [group] = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[out(aws, key)])["AutoScalingGroups"]
        assert expected.items() <= tags_of(group.get("Tags")).items(), key


# ---------------------------------------------------------------------------- network


def test_stack_network_spans_two_zones(aws: Facts) -> None:
    ec2 = client(aws, "ec2")
    ids = [out(aws, k) for k in ("PublicSubnet1Id", "PublicSubnet2Id", "PrivateSubnet1Id", "PrivateSubnet2Id")]
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(SubnetIds=ids)["Subnets"]}
    assert {s["VpcId"] for s in subnets.values()} == {out(aws, "VpcId")}
    public = [subnets[out(aws, k)] for k in ("PublicSubnet1Id", "PublicSubnet2Id")]
    private = [subnets[out(aws, k)] for k in ("PrivateSubnet1Id", "PrivateSubnet2Id")]
    assert len({s["AvailabilityZone"] for s in public}) == 2
    assert len({s["AvailabilityZone"] for s in private}) == 2
    assert {s["AvailabilityZone"] for s in public} == {s["AvailabilityZone"] for s in private}
    assert len({s["CidrBlock"] for s in subnets.values()}) == 4
    assert {tags_of(s.get("Tags")).get("Tier") for s in public} == {"public"}
    assert {tags_of(s.get("Tags")).get("Tier") for s in private} == {"private"}


def test_stack_internet_gateway_is_attached(aws: Facts) -> None:
    [igw] = client(aws, "ec2").describe_internet_gateways(InternetGatewayIds=[out(aws, "InternetGatewayId")])[
        "InternetGateways"
    ]
    assert [(a["VpcId"], a["State"]) for a in igw["Attachments"]] == [(out(aws, "VpcId"), "available")]


def _default_routes(aws: Facts) -> dict[str, dict[str, Any]]:
    """Route table logical id -> its 0.0.0.0/0 route (by the tag CloudFormation puts on what it creates;
    moto drops the template's own Name tags of route tables)."""
    tables = client(aws, "ec2").describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [out(aws, "VpcId")]}])
    found = {}
    for table in tables["RouteTables"]:
        name = tags_of(table.get("Tags")).get("aws:cloudformation:logical-id", "")
        for route in table["Routes"]:
            if route.get("DestinationCidrBlock") == "0.0.0.0/0":
                found[name] = route
    return found


def test_stack_public_subnets_route_to_the_internet_gateway(aws: Facts) -> None:
    routes = _default_routes(aws)
    assert routes["PublicRouteTable"].get("GatewayId") == out(aws, "InternetGatewayId")


def test_stack_private_subnets_route_through_a_nat_in_their_zone(aws: Facts) -> None:
    routes = _default_routes(aws)
    ec2 = client(aws, "ec2")
    for i in (1, 2):
        nat_id = routes[f"PrivateRouteTable{i}"].get("NatGatewayId")
        assert nat_id == out(aws, f"NatGateway{i}Id")
        [nat] = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"]
        assert nat["SubnetId"] == out(aws, f"PublicSubnet{i}Id")


def test_stack_subnets_are_associated_with_their_route_tables(aws: Facts) -> None:
    only_on_aws(aws, "moto does not reflect subnet-route-table associations")
    ec2 = client(aws, "ec2")
    for subnet_key, gateway_key in (("PublicSubnet1Id", "GatewayId"), ("PrivateSubnet1Id", "NatGatewayId")):
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [out(aws, subnet_key)]}]
        )
        [table] = tables["RouteTables"]
        assert any(r.get(gateway_key) for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0")


def test_stack_subnets_give_no_public_addresses(aws: Facts) -> None:
    only_on_aws(aws, "moto does not reflect MapPublicIpOnLaunch")
    ids = [out(aws, k) for k in ("PublicSubnet1Id", "PublicSubnet2Id", "PrivateSubnet1Id", "PrivateSubnet2Id")]
    subnets = client(aws, "ec2").describe_subnets(SubnetIds=ids)["Subnets"]
    assert [s["MapPublicIpOnLaunch"] for s in subnets] == [False] * 4


# ---------------------------------------------------------------------------- who may reach what


def test_stack_only_the_load_balancer_is_open_to_the_world(aws: Facts) -> None:
    groups = client(aws, "ec2").describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [out(aws, "VpcId")]}])
    open_rules = [
        (g["GroupId"], r.get("FromPort"), r.get("ToPort"))
        for g in groups["SecurityGroups"]
        for r in g["IpPermissions"]
        if sources(r) & WORLD
    ]
    assert open_rules == [(out(aws, "LoadBalancerSecurityGroupId"), 443, 443)]


def test_stack_apps_are_reached_only_from_the_load_balancer(aws: Facts) -> None:
    """From the load balancer; and the task ports (31000-32000) also from the masters, for Marathon's health
    checks (tests_infra/test_aws_apps.py)."""
    rules = ingress(aws, "AppsSecurityGroupId")
    lb, masters = out(aws, "LoadBalancerSecurityGroupId"), out(aws, "MesosSecurityGroupId")
    assert rules and all(sources(r) == {lb} for r in rules if (r["FromPort"], r["ToPort"]) != (31000, 32000))
    assert all(sources(r) <= {lb, masters} for r in rules)


def test_stack_database_is_reached_only_from_the_apps_on_5432(aws: Facts) -> None:
    rules = ingress(aws, "DatabaseSecurityGroupId")
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"], sources(r)) for r in rules] == [
        ("tcp", 5432, 5432, {out(aws, "AppsSecurityGroupId")})
    ]


def test_stack_broker_is_reached_only_from_the_apps_and_its_own_nodes(aws: Facts) -> None:
    """Directly, or through the internal load balancer, whose group admits only the apps on these ports
    (tests_infra/test_aws_hosts.py)."""
    apps, broker = out(aws, "AppsSecurityGroupId"), out(aws, "BrokerSecurityGroupId")
    internal = out(aws, "InternalLoadBalancerSecurityGroupId")
    rules = ingress(aws, "BrokerSecurityGroupId")
    by_port = {(r["FromPort"], r["ToPort"]): sources(r) for r in rules}
    assert by_port[(5672, 5672)] == {apps, internal}
    assert by_port[(15672, 15672)] == {apps, internal}
    inter_node = {k: v for k, v in by_port.items() if k not in {(5672, 5672), (15672, 15672)}}
    assert inter_node and all(v == {broker} for v in inter_node.values()), inter_node
    assert (25672, 25672) in inter_node and (4369, 4369) in inter_node


# ---------------------------------------------------------------------------- database


def _database(aws: Facts) -> dict[str, Any]:
    [db] = client(aws, "rds").describe_db_instances(DBInstanceIdentifier=out(aws, "DatabaseInstanceId"))["DBInstances"]
    return db


def test_stack_database_is_encrypted_private_and_backed_up(aws: Facts) -> None:
    db = _database(aws)
    assert db["Engine"] == "postgres"
    assert db["StorageEncrypted"] is True
    assert db["PubliclyAccessible"] is False
    assert db["BackupRetentionPeriod"] >= 7
    assert db["MultiAZ"] is True
    assert db["Endpoint"]["Address"] == out(aws, "DatabaseEndpoint")
    subnets = {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]}
    assert subnets == {out(aws, "PrivateSubnet1Id"), out(aws, "PrivateSubnet2Id")}


def test_stack_database_is_in_the_database_security_group(aws: Facts) -> None:
    only_on_aws(aws, "moto does not reflect the RDS instance's VPCSecurityGroups")
    groups = {g["VpcSecurityGroupId"] for g in _database(aws)["VpcSecurityGroups"]}
    assert groups == {out(aws, "DatabaseSecurityGroupId")}


def test_stack_database_listens_on_5432(aws: Facts) -> None:
    only_on_aws(aws, "moto does not reflect the RDS port of a postgres instance (it reads 3306)")
    assert _database(aws)["Endpoint"]["Port"] == 5432
    assert out(aws, "DatabasePort") == "5432"


# ---------------------------------------------------------------------------- hosts


@pytest.mark.parametrize(
    ("group_key", "role", "groups"),
    [
        ("MesosMasterGroupName", "mesos-master", {"MesosSecurityGroupId"}),
        ("MesosAgentGroupName", "mesos-agent", {"AppsSecurityGroupId", "MesosSecurityGroupId"}),
        ("BrokerGroupName", "rabbitmq", {"BrokerSecurityGroupId"}),
    ],
)
def test_stack_hosts_require_imdsv2_and_carry_their_role(
    aws: Facts, group_key: str, role: str, groups: set[str]
) -> None:
    [group] = client(aws, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[out(aws, group_key)])[
        "AutoScalingGroups"
    ]
    assert tags_of(group.get("Tags")).get("Role") == role
    assert set(group["VPCZoneIdentifier"].split(",")) == {out(aws, "PrivateSubnet1Id"), out(aws, "PrivateSubnet2Id")}
    spec = group["LaunchTemplate"]
    [version] = client(aws, "ec2").describe_launch_template_versions(
        LaunchTemplateId=spec["LaunchTemplateId"], Versions=[str(spec["Version"])]
    )["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert set(data["SecurityGroupIds"]) == {out(aws, k) for k in groups}
    instance_tags = {t["Key"]: t["Value"] for spec in data["TagSpecifications"] for t in spec["Tags"]}
    assert instance_tags["Role"] == role
    assert all(m["Ebs"]["Encrypted"] for m in data["BlockDeviceMappings"])


# ---------------------------------------------------------------------------- load balancer, identity, bucket


def test_stack_load_balancer_is_public_https_only(aws: Facts) -> None:
    elb = client(aws, "elbv2")
    [lb] = elb.describe_load_balancers(LoadBalancerArns=[out(aws, "LoadBalancerArn")])["LoadBalancers"]
    assert lb["Scheme"] == "internet-facing" and lb["DNSName"] == out(aws, "LoadBalancerDns")
    assert {z["SubnetId"] for z in lb["AvailabilityZones"]} == {
        out(aws, "PublicSubnet1Id"),
        out(aws, "PublicSubnet2Id"),
    }
    assert lb["SecurityGroups"] == [out(aws, "LoadBalancerSecurityGroupId")]
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert [(x["Protocol"], x["Port"]) for x in listeners] == [("HTTPS", 443)]
    assert [c["CertificateArn"] for c in listeners[0]["Certificates"]] == [aws["certificate_arn"]]
    assert listeners[0]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners[0]["DefaultActions"][0]["TargetGroupArn"] == out(aws, "ApiTargetGroupArn")


def test_stack_host_role_is_for_ec2_only(aws: Facts) -> None:
    name = out(aws, "HostRoleArn").rsplit("/", 1)[1]
    role = client(aws, "iam").get_role(RoleName=name)["Role"]
    principals = [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
    assert principals == [{"Service": "ec2.amazonaws.com"}]
    profile = client(aws, "iam").get_instance_profile(InstanceProfileName=out(aws, "HostInstanceProfileName"))
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [name]


def test_stack_artifact_bucket_is_encrypted(aws: Facts) -> None:
    rules = client(aws, "s3").get_bucket_encryption(Bucket=out(aws, "ArtifactBucket"))[
        "ServerSideEncryptionConfiguration"
    ]["Rules"]
    assert {r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules} <= {"AES256", "aws:kms"}
    assert rules


def test_stack_artifact_bucket_blocks_public_access(aws: Facts) -> None:
    only_on_aws(aws, "moto does not reflect the S3 public access block")
    config = client(aws, "s3").get_public_access_block(Bucket=out(aws, "ArtifactBucket"))[
        "PublicAccessBlockConfiguration"
    ]
    assert all(config[k] for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
