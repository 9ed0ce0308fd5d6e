"""Acme's stack (infra/stack.yaml) as AWS describes it: acme's outputs, the ledger's database, who may reach
it, and the worker hosts. On a local run AWS is the environment's moto server."""

from __future__ import annotations

from typing import Any

from acme_support import aws_client

OUTPUTS = {
    "StackEnvironment", "StackRevision", "NetworkId", "EdgeSubnets", "CoreSubnets", "WorkerSecurityGroupId",
    "LedgerDbSecurityGroupId", "LedgerDbId", "PgHost", "PgPort", "PgName", "PgUser", "AssetsBucketName",
    "WorkerRoleArn", "WorkerFleetName",
}  # fmt: skip
WORLD = {"0.0.0.0/0", "::/0"}


def tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def test_stack_has_acmes_outputs(aws: Any, envfixtures_env: Any) -> None:
    outputs = aws["outputs"]
    assert OUTPUTS <= set(outputs), f"missing outputs: {sorted(OUTPUTS - set(outputs))}"
    assert outputs["StackEnvironment"] == envfixtures_env.name
    assert outputs["StackRevision"] == envfixtures_env.sha
    assert (outputs["PgName"], outputs["PgUser"]) == ("ledger", "ledger_owner")


def test_ledger_database_is_encrypted_private_backed_up_and_tagged(aws: Any, revision: str) -> None:
    outputs = aws["outputs"]
    [db] = aws_client(aws, "rds").describe_db_instances(DBInstanceIdentifier=outputs["LedgerDbId"])["DBInstances"]
    assert db["Engine"] == "postgres"
    assert db["DBName"] == outputs["PgName"]
    assert db["StorageEncrypted"] is True
    assert db["PubliclyAccessible"] is False
    assert db["BackupRetentionPeriod"] >= 7
    assert db["Endpoint"]["Address"] == outputs["PgHost"]
    assert {s["SubnetIdentifier"] for s in db["DBSubnetGroup"]["Subnets"]} == set(outputs["CoreSubnets"].split(","))
    assert tags(db.get("TagList")).get("acme-revision") == revision


def test_only_the_workers_reach_the_ledger_and_nothing_is_open_to_the_internet(aws: Any) -> None:
    outputs = aws["outputs"]
    ec2 = aws_client(aws, "ec2")
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [outputs["NetworkId"]]}])
    by_id = {g["GroupId"]: g for g in groups["SecurityGroups"]}
    db_rules = by_id[outputs["LedgerDbSecurityGroupId"]]["IpPermissions"]
    assert [
        (r["IpProtocol"], r["FromPort"], r["ToPort"], {p["GroupId"] for p in r["UserIdGroupPairs"]}, r["IpRanges"])
        for r in db_rules
    ] == [("tcp", 5432, 5432, {outputs["WorkerSecurityGroupId"]}, [])]
    open_to_world = [
        (g["GroupId"], r.get("FromPort"))
        for g in by_id.values()
        for r in g["IpPermissions"]
        if ({x["CidrIp"] for x in r.get("IpRanges", [])} | {x["CidrIpv6"] for x in r.get("Ipv6Ranges", [])}) & WORLD
    ]
    assert open_to_world == []


def test_worker_hosts_require_imdsv2_and_carry_role_worker(aws: Any, revision: str) -> None:
    outputs = aws["outputs"]
    [fleet] = aws_client(aws, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["WorkerFleetName"]]
    )["AutoScalingGroups"]
    assert tags(fleet.get("Tags")).get("Role") == "worker"
    assert set(fleet["VPCZoneIdentifier"].split(",")) == set(outputs["CoreSubnets"].split(","))
    spec = fleet["LaunchTemplate"]
    [version] = aws_client(aws, "ec2").describe_launch_template_versions(
        LaunchTemplateId=spec["LaunchTemplateId"], Versions=[str(spec["Version"])]
    )["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["SecurityGroupIds"] == [outputs["WorkerSecurityGroupId"]]
    assert all(m["Ebs"]["Encrypted"] for m in data["BlockDeviceMappings"])
    instance_tags = {t["Key"]: t["Value"] for s in data["TagSpecifications"] for t in s["Tags"]}
    assert instance_tags["Role"] == "worker" and instance_tags["acme-revision"] == revision
