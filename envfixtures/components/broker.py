"""The ``broker`` component: a RabbitMQ cluster and the administrator's credentials.

``local`` (:class:`LocalBroker`): ``broker_nodes`` (default 3) real nodes started by
:mod:`envfixtures.drivers.rabbitmq.cluster` in the component's work directory, loopback only, own epmd, random
cookie, management plugin, an administrator with a generated password and no ``guest`` user.
``aws`` (:class:`StackBroker`): the stack's outputs configured as ``broker_amqp`` and ``broker_management``; the
administrator is the Secrets Manager secret the stack generates (output configured as ``broker_admin_secret``,
JSON ``{"username", "password"}``; the broker nodes create that user at boot), read with the aws component's
credentials: nothing to set by hand. The outputs are checked at configure time, before the stack is created. Against
a stand-in for AWS (a moto server), which boots no broker, the component is refused then (``docs/aws.md``).

Facts (both backends): ``nodes`` (node names), ``amqp`` (list of ``{"node", "host", "port"}``),
``management_url``, ``admin_user``, ``admin_password`` (secret).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from envfixtures.components.aws import refuse_on_stand_in, require_outputs, stack_output, wait_resolves
from envfixtures.core import processes
from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import Facts
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.rabbitmq import cluster as rmq

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

log = logging.getLogger(__name__)

DEFAULT_NODES = 3


def broker_facts(
    *,
    nodes: list[str],
    amqp: list[dict[str, object]],
    management_url: str,
    admin_user: str,
    admin_password: str,
    **extra: object,
) -> Facts:
    return Facts(
        {
            "nodes": nodes,
            "amqp": amqp,
            "management_url": management_url,
            "admin_user": admin_user,
            "admin_password": admin_password,
            **extra,
        },
        secrets=["admin_password"],
    )


def node_count(ctx: "BuildContext") -> int:
    count = ctx.settings.broker_nodes
    if count < 1:
        raise ConfigError(f"setting broker_nodes={count!r}: must be a whole number of nodes, at least 1")
    return count


def versions(management_url: str, user: str, password: str) -> dict[str, str]:
    """RabbitMQ's and Erlang's versions, as the broker reports them (for the promotion record)."""
    mgmt = rmq.Management(management_url, user, password, timeout=10)
    try:
        overview = mgmt.overview()
    finally:
        mgmt.close()
    return {"rabbitmq": str(overview.get("rabbitmq_version")), "erlang": str(overview.get("erlang_version"))}


class LocalBroker(Component):
    """A real RabbitMQ cluster of ``broker_nodes`` nodes on loopback, formed at boot."""

    name = "broker"
    requires: tuple[str, ...] = ()

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """How many RabbitMQ nodes form the cluster."""

        broker_nodes: int = DEFAULT_NODES

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        node_count(ctx)
        server = rmq.RABBITMQ_BIN / "rabbitmq-server"
        if not server.exists():
            raise ConfigError(f"{server} not found: install RabbitMQ (apt-get install -y rabbitmq-server)")

    def build(self, ctx: "BuildContext") -> Facts:
        count = node_count(ctx)
        spec = rmq.plan(ctx.workdir() / "cluster", count)
        ctx.add_secret("broker administrator password", spec.admin_password)
        # The cookie lets whoever knows it run code on the nodes: redacted, and scrubbed from a kept work/.
        ctx.add_secret("Erlang cookie", (spec.dir / "home" / ".erlang.cookie").read_text().strip())

        ctx.progress(f"starting {count} RabbitMQ node(s)")
        cluster = rmq.Cluster(spec, ctx.spawn)
        cluster.start()
        return broker_facts(
            versions=versions(spec.nodes[0].management_url, spec.admin_user, spec.admin_password),
            nodes=[n.name for n in spec.nodes],
            amqp=[{"node": n.name, "host": rmq.LOOPBACK, "port": n.amqp_port} for n in spec.nodes],
            management_url=spec.nodes[0].management_url,
            management_urls=[n.management_url for n in spec.nodes if spec.has_management(n)],
            admin_user=spec.admin_user,
            admin_password=spec.admin_password,
            cluster_dir=str(spec.dir),
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """SIGKILL every node's group at once (the data is thrown away), then epmd; see cluster.stop."""
        records = [p.record for p in ctx.processes() if p.name != "epmd"]
        took = processes.stop_groups(records, grace=0.0)  # only groups still led by the recorded node
        log.info("stopped %d RabbitMQ node(s) in %.2fs", len(records), took)
        ctx.stop_processes(timeout=5.0)

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        if not facts.get("management_url"):
            return "broker has no facts (its build did not finish)"
        lines = []
        mgmt = rmq.Management(facts["management_url"], facts["admin_user"], facts["admin_password"], timeout=5)
        try:
            problems = rmq.health_problems(mgmt.nodes(), facts["nodes"])
            lines.append("cluster health: " + ("; ".join(problems) or "all nodes running, no partition, no alarm"))
        except Exception as exc:  # noqa: BLE001 - diagnosis must not raise
            lines.append(f"cluster health unavailable: {exc}")
        finally:
            mgmt.close()
        cluster_dir = Path(facts.get("cluster_dir", ""))
        for node in facts["nodes"]:
            log_file = cluster_dir / f"node-{node.split('@')[0].rsplit('-', 1)[-1]}" / "log" / f"{node}.log"
            if log_file.exists():
                tail = processes.log_tail(log_file, 5).splitlines()
                lines.append(f"{log_file} (last lines):\n  " + "\n  ".join(tail))
        return "\n".join(lines)


class StackBroker(Component):
    """The stack's broker: endpoints and the administrator's secret from the ``aws`` component's outputs."""

    name = "broker"
    requires: tuple[str, ...] = ("aws",)

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """Before the stack exists: a stand-in for AWS boots no broker; the endpoints' and the administrator's
        secret's outputs are configured."""
        refuse_on_stand_in(ctx, "a moto server boots no instance: no RabbitMQ answers at the stack's broker endpoints")
        require_outputs(ctx, "broker_amqp", "broker_management", "broker_admin_secret")

    def build(self, ctx: "BuildContext") -> Facts:
        aws = ctx.facts("aws")
        amqp_endpoint = stack_output(aws, "broker_amqp")
        management_url = stack_output(aws, "broker_management")
        secret = stack_output(aws, "broker_admin_secret")
        parts = urlsplit(amqp_endpoint)
        hosts = [urlsplit(management_url).hostname or management_url, parts.hostname or amqp_endpoint]
        for host in dict.fromkeys(hosts):
            wait_resolves(host, what="broker (aws): the stack's broker endpoint")
        user, password = admin_from_secret(aws, secret)
        ctx.add_secret("broker administrator password", password)
        mgmt = rmq.Management(management_url, user, password)
        try:
            nodes = [n["name"] for n in mgmt.nodes()]
        finally:
            mgmt.close()
        return broker_facts(
            versions=versions(management_url, user, password),
            nodes=nodes,
            amqp=[{"node": None, "host": parts.hostname, "port": parts.port or 5672}],
            management_url=management_url,
            management_urls=[management_url],
            admin_user=user,
            admin_password=password,
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Nothing: the broker belongs to the stack, which the ``aws`` component deletes."""


def admin_from_secret(aws: Facts, secret_id: str) -> tuple[str, str]:
    """The stack broker's administrator: the Secrets Manager secret ``secret_id`` (JSON ``username``,
    ``password``), read in the AWS the ``aws`` facts describe. Its value is never in a message."""
    client = aws_clients.client(aws, "secretsmanager")
    try:
        text = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (ClientError, BotoCoreError) as exc:
        code = (exc.response.get("Error") or {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        raise BuildError(f"broker (aws): the administrator's secret {secret_id} could not be read: {code}") from None
    try:
        value = json.loads(text)
        user, password = str(value["username"]), str(value["password"])
    except (ValueError, TypeError, KeyError):
        raise BuildError(
            f"broker (aws): the administrator's secret {secret_id} is not JSON with a username and a password"
        ) from None
    if not user or not password:
        raise BuildError(f"broker (aws): the administrator's secret {secret_id} has an empty username or password")
    return user, password
