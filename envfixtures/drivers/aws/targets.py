"""Hand-written: Marathon has no registrar for ALB target groups (ECS registers its tasks' dynamic host ports
itself; for Marathon that was marathon-lb, an HAProxy on the agents, archived). A few boto3 calls do it.

The API's target group holds the API app's tasks, each as ``<agent address>:<host port>`` (``TargetType: ip``):
Marathon gives each task a host port of the agent's range (``port: 0``), so the target group follows the tasks,
the way ECS's dynamic port mapping does, instead of expecting every agent on one fixed port. :func:`sync` makes
the target group hold exactly the running tasks (registering new ones, deregistering gone ones); the load
balancer's own health checks then decide which receive traffic.

Run as a process for the life of the environment (the ``api`` component starts it, journaled, and stops it):
``python -m envfixtures.drivers.aws.targets --marathon URL --app-id /group/app --target-group ARN --region R``;
Marathon's credentials in ``ENVFIXTURES_MARATHON_CREDENTIALS`` (never on the command line), AWS's from boto3's
usual chain. SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.marathon import auth
from envfixtures.drivers.marathon.client import MarathonClient
from envfixtures.drivers.marathon.models import Task

log = logging.getLogger(__name__)

Target = tuple[str, int]


def address_of(host: str) -> str:
    """An agent's IPv4 address (Mesos agents advertise their address or their private DNS name)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)


def task_targets(tasks: Iterable[Task]) -> set[Target]:
    """(address, first host port) of each running task."""
    return {
        (address_of(task.host), task.ports[0])
        for task in tasks
        if task.ports and (task.state in (None, "TASK_RUNNING"))
    }


def registered(elbv2: Any, target_group: str) -> set[Target]:
    """The targets the target group holds (but those already draining)."""
    found = elbv2.describe_target_health(TargetGroupArn=target_group)["TargetHealthDescriptions"]
    return {
        (d["Target"]["Id"], int(d["Target"]["Port"]))
        for d in found
        if (d.get("TargetHealth") or {}).get("State") != "draining"
    }


def sync(elbv2: Any, target_group: str, wanted: set[Target]) -> tuple[set[Target], set[Target]]:
    """Make ``target_group`` hold exactly ``wanted``; returns (registered now, deregistered now)."""
    current = registered(elbv2, target_group)
    add, remove = wanted - current, current - wanted
    if add:
        elbv2.register_targets(TargetGroupArn=target_group, Targets=[{"Id": i, "Port": p} for i, p in sorted(add)])
    if remove:
        elbv2.deregister_targets(TargetGroupArn=target_group, Targets=[{"Id": i, "Port": p} for i, p in sorted(remove)])
    return add, remove


def sync_app(client: MarathonClient, app_id: str, elbv2: Any, target_group: str) -> tuple[set[Target], set[Target]]:
    """One round: the app's running tasks into the target group."""
    return sync(elbv2, target_group, task_targets(client.app_tasks(app_id)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m envfixtures.drivers.aws.targets")
    parser.add_argument("--marathon", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--target-group", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    elbv2 = aws_clients.make_client("elbv2", endpoint_url=None, region=args.region)
    client = MarathonClient(args.marathon, timeout=5.0, auth=auth.from_environ())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            added, removed = sync_app(client, args.app_id, elbv2, args.target_group)
            for what, targets in (("registered", added), ("deregistered", removed)):
                if targets:
                    log.info("%s %s", what, ", ".join(f"{i}:{p}" for i, p in sorted(targets)))
        except Exception as exc:  # noqa: BLE001 - Marathon, DNS or AWS: keep the last state, retry next round
            log.warning("sync of %s failed: %s", args.app_id, type(exc).__name__ + ": " + str(exc)[:200])
        stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
