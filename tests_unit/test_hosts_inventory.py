"""envfixtures.drivers.hosts.inventory: local is this machine; on aws the hosts are the stack's instances found by
their Role tag, reached through the bastion by an ssh_config that ssh itself accepts (``ssh -G`` resolves it
without connecting)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from envfixtures.core.config import PlatformConfig
from envfixtures.core.errors import ConfigError
from envfixtures.core.facts import Facts
from envfixtures.drivers.hosts import inventory as hosts


class FakeEc2:
    """DescribeInstances over a fixed set of instances, honouring tag and state filters, two per page."""

    def __init__(self, instances: list[dict[str, Any]]) -> None:
        self.instances = instances
        self.calls: list[dict[str, Any]] = []

    def describe_instances(self, Filters: list[dict[str, Any]], NextToken: str | None = None) -> dict[str, Any]:  # noqa: N803
        self.calls.append({"Filters": Filters, "NextToken": NextToken})

        def keep(inst: dict[str, Any]) -> bool:
            tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
            for f in Filters:
                if f["Name"].startswith("tag:") and tags.get(f["Name"][4:]) not in f["Values"]:
                    return False
                if f["Name"] == "instance-state-name" and inst["State"]["Name"] not in f["Values"]:
                    return False
            return True

        matching = [i for i in self.instances if keep(i)]
        start = int(NextToken or 0)
        page = matching[start : start + 2]
        answer: dict[str, Any] = {"Reservations": [{"Instances": page}]}
        if start + 2 < len(matching):
            answer["NextToken"] = str(start + 2)
        return answer


def instance(iid: str, ip: str, role: str, env: str = "ef-0123456-abcd", state: str = "running") -> dict[str, Any]:
    return {
        "InstanceId": iid,
        "PrivateIpAddress": ip,
        "State": {"Name": state},
        "Tags": [{"Key": "Role", "Value": role}, {"Key": "EnvName", "Value": env}],
    }


FLEET = [
    instance("i-1", "10.40.10.11", "rabbitmq"),
    instance("i-2", "10.40.11.12", "rabbitmq"),
    instance("i-3", "10.40.10.13", "rabbitmq"),
    instance("i-4", "10.40.10.21", "mesos-agent"),
    instance("i-5", "10.40.10.31", "mesos-master"),
    instance("i-6", "10.40.10.14", "rabbitmq", state="terminated"),
    instance("i-7", "10.40.10.15", "rabbitmq", env="ef-other-env"),
]


#: Which roles each component runs on, and the environment's tag, as a platform configures them.
PLATFORM = PlatformConfig(
    "pyproject.toml",
    {
        "hosts": {"broker": ["rabbitmq"], "scheduler": ["mesos-master"], "apps": ["mesos-agent"]},
        "aws": {"tags": {"EnvName": "env_name", "GitSha": "sha"}},
    },
)


def aws_env(tmp_path: Path, **settings: str) -> SimpleNamespace:
    facts = Facts({"outputs": {"VpcId": "vpc-1"}, "region": "eu-west-1"})
    return SimpleNamespace(
        backend="aws", name="ef-0123456-abcd", dir=tmp_path, settings=settings, facts=lambda component: facts,
        config=PLATFORM,
    )  # fmt: skip


def test_local_is_this_machine() -> None:
    env = SimpleNamespace(backend="local")
    [host] = hosts.inventory(env, "broker")
    assert host.spec == "local://"
    assert host.connect().backend.NAME == "local"


def test_aws_hosts_are_the_role_instances_of_this_env_through_the_bastion(tmp_path: Path) -> None:
    ec2 = FakeEc2(FLEET)
    env = aws_env(tmp_path, ssh_bastion="bastion.example.net", ssh_identity_file="/keys/ci.pem")
    found = hosts.inventory(env, "broker", ec2=ec2)
    assert [h.instance_id for h in found] == ["i-1", "i-3", "i-2"], "running rabbitmq hosts of this env, by address"
    assert {h.role for h in found} == {"rabbitmq"}
    assert found[0].spec == "ssh://ec2-user@10.40.10.11"
    assert len(ec2.calls) == 2, "every page is read"
    assert {"Name": "tag:Role", "Values": ["rabbitmq"]} in ec2.calls[0]["Filters"]
    assert {"Name": "tag:EnvName", "Values": ["ef-0123456-abcd"]} in ec2.calls[0]["Filters"], "the configured tag"
    config = Path(found[0].ssh_config)
    assert config == tmp_path / "ssh_config" and config.stat().st_mode & 0o077 == 0
    text = config.read_text()
    assert "HostName bastion.example.net" in text and text.count("ProxyJump envfixtures-bastion") == 3
    backend = found[0].connect().backend
    assert (backend.ssh_config, backend.host.name, backend.host.user) == (str(config), "10.40.10.11", "ec2-user")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client on this machine")
def test_ssh_resolves_the_generated_config_to_a_proxy_jump(tmp_path: Path) -> None:
    env = aws_env(tmp_path, ssh_bastion="bastion.example.net", ssh_user="admin")
    [agent] = hosts.inventory(env, "apps", ec2=FakeEc2(FLEET))
    out = subprocess.run(
        ["ssh", "-G", "-F", agent.ssh_config, "10.40.10.21"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    effective = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert effective["proxyjump"] == "envfixtures-bastion"
    assert effective["user"] == "admin"
    assert effective["userknownhostsfile"].startswith(str(tmp_path))


def test_a_managed_service_has_no_host(tmp_path: Path) -> None:
    assert hosts.inventory(aws_env(tmp_path, ssh_bastion="b"), "database", ec2=FakeEc2(FLEET)) == []


def test_no_bastion_is_a_config_error_saying_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ssh_bastion"):
        hosts.inventory(aws_env(tmp_path), "broker", ec2=FakeEc2(FLEET))
