"""The API's target group follows the app's tasks (agent address : the host port Marathon gave), as ECS registers its
tasks' dynamic ports: against a moto server's ELBv2, a sync registers new running tasks and deregisters gone ones,
and leaves alone what is already right."""

from __future__ import annotations

from typing import Any

import pytest
from test_cloudformation import Moto, fresh

from envfixtures.drivers.aws import targets
from envfixtures.drivers.marathon.models import Task

__all__ = ["fresh"]


def task(host: str, port: int, state: str = "TASK_RUNNING") -> Task:
    return Task.from_json({"id": f"api.{host}.{port}", "appId": "/ef/orders-api", "host": host, "ports": [port],
                           "state": state})  # fmt: skip


def target_group(moto: Moto) -> tuple[Any, str]:
    ec2, elbv2 = moto.client("ec2"), moto.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    arn = elbv2.create_target_group(
        Name="ef-api", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip", HealthCheckPort="traffic-port"
    )["TargetGroups"][0]["TargetGroupArn"]
    return elbv2, arn


@pytest.mark.integration
def test_the_target_group_holds_exactly_the_running_tasks(fresh: Moto) -> None:
    elbv2, arn = target_group(fresh)
    first = targets.task_targets([task("10.40.10.5", 31005), task("10.40.11.7", 31742)])
    assert first == {("10.40.10.5", 31005), ("10.40.11.7", 31742)}
    assert targets.sync(elbv2, arn, first) == (first, set())
    assert targets.registered(elbv2, arn) == first

    # A task relaunched elsewhere: the new one comes in, the gone one goes; a staging task is not a target yet.
    second = targets.task_targets(
        [task("10.40.10.5", 31005), task("10.40.10.9", 31100), task("10.40.11.8", 31200, state="TASK_STAGING")]
    )
    added, removed = targets.sync(elbv2, arn, second)
    assert added == {("10.40.10.9", 31100)} and removed == {("10.40.11.7", 31742)}
    assert targets.registered(elbv2, arn) == second
    assert targets.sync(elbv2, arn, second) == (set(), set()), "nothing to do when it already holds the tasks"


def test_an_agent_named_by_its_dns_name_is_registered_by_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        targets.socket, "gethostbyname", lambda name: {"ip-10-40-10-5.ec2.internal": "10.40.10.5"}[name]
    )
    assert targets.task_targets([task("ip-10-40-10-5.ec2.internal", 31005)]) == {("10.40.10.5", 31005)}
