"""Which hosts an environment's component runs on, as testinfra host specs.

``local``: this machine (``local://``). ``aws``: the stack's instances, found by the environment's tag (the
``[tool.envfixtures.aws.tags]`` key given ``env_name``) and their ``Role`` tag — which roles each component runs
on is the platform's ``[tool.envfixtures] hosts`` table (``{broker = ["rabbitmq"], ...}``) — with EC2
``DescribeInstances``, reached over SSH through a bastion: an ``ssh_config`` is written into the environment's
directory (the bastion, then ``ProxyJump`` for the private addresses), and each host is
``ssh://USER@PRIVATE_IP`` with that config (testinfra's ``ssh`` backend runs ``ssh -F``).

The bastion comes from the setting ``ssh_bastion`` or, failing that, the stack output configured as
``bastion_host``; the user and key from ``ssh_user`` (default ``ec2-user``) and ``ssh_identity_file``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envfixtures.core.errors import ConfigError

log = logging.getLogger(__name__)

LOCAL = "local://"
DEFAULT_USER = "ec2-user"

DEFAULT_ENV_TAG = "envfixtures:env"


@dataclass(frozen=True)
class Host:
    """A testinfra host spec and what it is."""

    spec: str  # "local://" or "ssh://user@address"
    role: str
    instance_id: str | None = None
    ssh_config: str | None = None

    def connect(self) -> Any:
        """The testinfra host (no connection is made until a command runs)."""
        import testinfra

        if self.ssh_config:
            return testinfra.get_host(self.spec, ssh_config=self.ssh_config)
        return testinfra.get_host(self.spec)


def instances(ec2: Any, env_name: str, roles: Iterable[str], env_tag: str = DEFAULT_ENV_TAG) -> list[dict[str, Any]]:
    """Running instances of the environment carrying one of ``roles`` (DescribeInstances, every page)."""
    filters = [
        {"Name": f"tag:{env_tag}", "Values": [env_name]},
        {"Name": "tag:Role", "Values": sorted(set(roles))},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        answer = ec2.describe_instances(Filters=filters, **({"NextToken": token} if token else {}))
        for reservation in answer.get("Reservations", []):
            found += reservation.get("Instances", [])
        token = answer.get("NextToken")
        if not token:
            return sorted(found, key=lambda i: i.get("PrivateIpAddress") or "")


def role_of(instance: Mapping[str, Any]) -> str:
    return next((t["Value"] for t in instance.get("Tags", []) if t.get("Key") == "Role"), "")


def ssh_config_text(
    bastion: str, addresses: Iterable[str], *, user: str, identity_file: str | None, known_hosts: Path
) -> str:
    """An ssh_config: the bastion, and every private address reached through it with ProxyJump."""
    key = f"  IdentityFile {identity_file}\n  IdentitiesOnly yes\n" if identity_file else ""
    common = (
        f"  User {user}\n{key}  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking accept-new\n"
        "  ConnectTimeout 15\n  ServerAliveInterval 15\n"
    )
    text = f"# written by envfixtures.drivers.hosts.inventory\nHost envfixtures-bastion\n  HostName {bastion}\n{common}"
    for address in addresses:
        text += f"\nHost {address}\n  HostName {address}\n  ProxyJump envfixtures-bastion\n{common}"
    return text


def aws_hosts(
    ec2: Any,
    *,
    env_name: str,
    roles: Iterable[str],
    env_dir: Path,
    settings: Mapping[str, str],
    bastion: str | None,
    env_tag: str = DEFAULT_ENV_TAG,
) -> list[Host]:
    """The instances with one of ``roles`` as SSH hosts through the bastion; writes ``env_dir/ssh_config``."""
    roles = tuple(roles)
    if not roles:
        return []
    bastion = settings.get("ssh_bastion") or bastion
    if not bastion:
        raise ConfigError(
            "no bastion to reach the stack's hosts: set --env-set ssh_bastion=HOST "
            "(or name the stack's bastion output in [tool.envfixtures.aws.outputs] bastion_host)"
        )
    found = instances(ec2, env_name, roles, env_tag)
    addresses = [i["PrivateIpAddress"] for i in found if i.get("PrivateIpAddress")]
    user = settings.get("ssh_user", DEFAULT_USER)
    config = Path(env_dir) / "ssh_config"
    config.parent.mkdir(parents=True, exist_ok=True)
    text = ssh_config_text(
        bastion,
        addresses,
        user=user,
        identity_file=settings.get("ssh_identity_file"),
        known_hosts=Path(env_dir) / "known_hosts",
    )
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    log.info("%d host(s) with role %s, ssh_config %s", len(addresses), "/".join(roles), config)
    return [
        Host(f"ssh://{user}@{i['PrivateIpAddress']}", role_of(i), i.get("InstanceId"), str(config))
        for i in found
        if i.get("PrivateIpAddress")
    ]


def inventory(env: Any, component: str, *, ec2: Any = None) -> list[Host]:
    """The hosts ``component`` of ``env`` runs on: this machine on ``local``, the stack's instances on ``aws``.

    ``ec2`` is an EC2 client (made from the ``aws`` component's facts when not given).
    """
    if env.backend == "local":
        return [Host(LOCAL, "local")]
    aws = env.facts("aws")
    if ec2 is None:
        from envfixtures.drivers.aws import clients as aws_clients

        ec2 = aws_clients.client(aws, "ec2")
    roles = env.config.table.get("hosts", {}).get(component, [])
    tags = env.config.section("aws").get("tags") or {DEFAULT_ENV_TAG: "env_name"}
    return aws_hosts(
        ec2,
        env_name=env.name,
        roles=roles,
        env_dir=env.dir,
        settings=env.settings,
        bastion=(aws.get("endpoints") or {}).get("bastion_host"),
        env_tag=next((k for k, v in tags.items() if v == "env_name"), DEFAULT_ENV_TAG),
    )
