"""What the platform's apps need of the stack (issue 18): their images in the environment's ECR repositories, the
agents' task ports open to the load balancer and the masters, and a target group that holds the API's tasks at the
ports Marathon gave them, health-checked there.

What only a real account has (a registry to push to, tasks on agents registered as targets) is skipped on ``local``
with the reason (``docs/local-standins.md``) and runs on ``--env-backend aws``. Select with ``-k stack``.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_checks import client, only_on_aws, out

from envfixtures.core.facts import Facts
from envfixtures.drivers.aws import targets
from envfixtures.drivers.containers import ecr
from envfixtures.drivers.marathon.client import MarathonClient

AGENT_PORTS = (31000, 32000)  # the Mesos agents' default port resources: Marathon's `port: 0` takes one of these


def test_stack_agents_task_ports_open_to_the_load_balancer_and_the_masters(aws: Facts) -> None:
    [group] = client(aws, "ec2").describe_security_groups(GroupIds=[out(aws, "AppsSecurityGroupId")])["SecurityGroups"]
    task_ports = [r for r in group["IpPermissions"] if (r.get("FromPort"), r.get("ToPort")) == AGENT_PORTS]
    sources = {p["GroupId"] for r in task_ports for p in r.get("UserIdGroupPairs", [])}
    assert sources == {out(aws, "LoadBalancerSecurityGroupId"), out(aws, "MesosSecurityGroupId")}
    assert all(r["IpProtocol"] == "tcp" and not r.get("IpRanges") for r in task_ports), task_ports


def test_stack_api_target_group_checks_each_target_on_its_own_port(aws: Facts) -> None:
    [group] = client(aws, "elbv2").describe_target_groups(TargetGroupArns=[out(aws, "ApiTargetGroupArn")])[
        "TargetGroups"
    ]
    assert group["TargetType"] == "ip", "targets are tasks (address:host port), not instances on one port"
    assert (group["Protocol"], group["HealthCheckProtocol"], group["HealthCheckPath"]) == ("HTTP", "HTTP", "/health")
    assert group["HealthCheckPort"] == "traffic-port"


def test_stack_images_of_the_sha_are_in_the_environments_ecr_repositories(
    aws: Facts, envfixtures_env: Any, request: pytest.FixtureRequest
) -> None:
    only_on_aws(aws, "on local the images go to the environment's registry on loopback: moto serves no ECR registry")
    images: Facts = request.getfixturevalue("images")  # built only where the test runs
    registry = client(aws, "ecr")
    _, namespace = ecr.split_registry(images["registry"])
    assert images["registry"] == out(aws, "ImageRegistry")
    for name, digest in images["artifact_sha256"].items():
        found = registry.describe_images(
            repositoryName=f"{namespace}/{name}", imageIds=[{"imageTag": envfixtures_env.sha}]
        )
        [image] = found["imageDetails"]
        assert image["imageDigest"] == digest, name


def test_stack_api_targets_are_the_api_tasks_healthy_at_their_ports(aws: Facts, api: Facts, scheduler: Facts) -> None:
    only_on_aws(aws, "on local the api is a loopback proxy over the tasks: no target group has targets")
    marathon = MarathonClient.from_facts(scheduler, timeout=10)
    tasks = targets.task_targets(marathon.app_tasks(api["app_id"]))
    assert tasks and all(AGENT_PORTS[0] <= port <= AGENT_PORTS[1] for _, port in tasks), tasks
    health = client(aws, "elbv2").describe_target_health(TargetGroupArn=out(aws, "ApiTargetGroupArn"))
    found = {
        (d["Target"]["Id"], d["Target"]["Port"]): d["TargetHealth"]["State"] for d in health["TargetHealthDescriptions"]
    }
    assert set(found) == tasks, (found, tasks)
    assert set(found.values()) == {"healthy"}, found
