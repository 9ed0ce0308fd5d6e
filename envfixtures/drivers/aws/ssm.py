"""A way into the stack's VPC from the runner: SSM port-forwarding sessions, no bastion, no open port.

``aws ssm start-session --document-name AWS-StartPortForwardingSessionToRemoteHost`` through one of the
environment's instances (they carry ``AmazonSSMManagedInstanceCore``) forwards a loopback port of the runner to
``host:port`` as that instance reaches it (a name of the stack's private zone, the RDS endpoint). The AWS CLI hands
the session to Amazon's ``session-manager-plugin``, which must be installed: :func:`missing` says so at configure
time. The session is a long-lived process: the component that opens it starts it with its spawner (journaled,
stopped at teardown) and waits until the loopback port accepts connections. Nothing secret is on its command line
(the CLI reads the usual credential chain).
"""

from __future__ import annotations

import json
import shutil
import socket
from typing import Any

from envfixtures.core.errors import BuildError

DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"
PLUGIN = "session-manager-plugin"
PLUGIN_HINT = (
    "install Amazon's session-manager-plugin (https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html)"
)


def missing() -> str | None:
    """Why SSM sessions cannot start here (``None``: they can)."""
    if shutil.which("aws") is None:
        return "the AWS CLI (aws) is not installed (Debian: apt-get install awscli)"
    if shutil.which(PLUGIN) is None:
        return f"{PLUGIN} is not installed, and `aws ssm start-session` needs it: {PLUGIN_HINT}"
    return None


def argv(target: str, host: str, port: int, local_port: int, region: str) -> list[str]:
    """The command of a session forwarding ``127.0.0.1:local_port`` to ``host:port`` through instance ``target``."""
    parameters = {"host": [host], "portNumber": [str(port)], "localPortNumber": [str(local_port)]}
    return ["aws", "ssm", "start-session", "--region", region, "--target", target, "--document-name", DOCUMENT,
            "--parameters", json.dumps(parameters, separators=(",", ":"))]  # fmt: skip


def gateway(ec2: Any, tag_key: str, env_name: str, roles: tuple[str, ...] = ()) -> str:
    """A running instance of the environment (tagged ``tag_key=env_name``) to open sessions through, preferring
    the ``Role`` tags ``roles`` in their order."""
    filters = [{"Name": f"tag:{tag_key}", "Values": [env_name]}, {"Name": "instance-state-name", "Values": ["running"]}]
    found = [
        (instance["InstanceId"], {t["Key"]: t["Value"] for t in instance.get("Tags") or []}.get("Role", ""))
        for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]
    if not found:
        raise BuildError(f"no running instance tagged {tag_key}={env_name} to open an SSM session through")
    rank = {role: index for index, role in enumerate(roles)}
    return min(found, key=lambda item: (rank.get(item[1], len(rank)), item[0]))[0]


def accepts(port: int) -> bool:
    """The session's loopback port accepts a connection (the plugin listens once the session is open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True
