"""The ``topology`` component: the environment's vhost, its application user, and the queue definitions.

The same on both backends (it talks to the broker's management API): a vhost named like the
environment; an application user with a generated password and permissions on that vhost only;
the definitions file configured as ``[tool.envfixtures.topology] definitions`` (RabbitMQ's own export format)
imported into the vhost. :meth:`Topology.check` validates the
definitions before anything is built, so a binding to a missing exchange fails the run before any
node starts.

Facts: ``vhost``, ``app_user``, ``app_password`` (secret), ``amqp`` (host/port of each node, from the
broker), ``amqp_url`` (without the password), ``definitions`` (path of the imported file).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from envfixtures import rules
from envfixtures.core.component import Component
from envfixtures.core.config import path_field
from envfixtures.core.errors import ConfigError, TeardownError
from envfixtures.core.facts import Facts
from envfixtures.drivers.rabbitmq import definitions as defs
from envfixtures.drivers.rabbitmq import topology
from envfixtures.drivers.rabbitmq.management import Management, ManagementError
from envfixtures.rules import policy
from envfixtures.rules import rabbitmq as rabbitmq_rules

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TopologyConfig:
    """The broker's definitions."""

    #: a RabbitMQ definitions file (as ``rabbitmqctl export_definitions`` writes it), relative to the checkout
    definitions: str = path_field()


def definitions_path(ctx: "BuildContext") -> Path:
    if not ctx.config.definitions:
        raise ConfigError(f"{ctx.platform.where('definitions', 'topology')}: not set (the RabbitMQ definitions file)")
    return ctx.path(ctx.config.definitions)


def admin_client(broker: Facts, timeout: float = 60.0) -> Management:
    return Management(broker["management_url"], broker["admin_user"], broker["admin_password"], timeout=timeout)


class Topology(Component):
    """A vhost per environment with the platform's exchanges, queues, bindings and policies."""

    name = "topology"
    requires = ("broker",)
    Config = TopologyConfig

    @classmethod
    def inputs(cls, ctx: "BuildContext") -> list[Path]:
        return [definitions_path(ctx)]

    @classmethod
    def lint(cls, ctx: "BuildContext", *, thorough: bool = False) -> list[rules.Finding]:
        return policy.of_context(ctx).without(rabbitmq_rules.check_file(definitions_path(ctx)))

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        rules.refuse(cls.lint(ctx))

    def build(self, ctx: "BuildContext") -> Facts:
        desired = defs.load(definitions_path(ctx), disabled=policy.of_context(ctx).off)
        broker = ctx.facts("broker")
        vhost = ctx.name
        app_user = f"app-{ctx.name}"
        app_password = ctx.new_secret("broker application password")
        ctx.record("rabbitmq_vhost", vhost=vhost, user=app_user)
        mgmt = admin_client(broker)
        try:
            mgmt.put_vhost(vhost)
            mgmt.put_user(app_user, app_password)
            mgmt.put_permissions(vhost, app_user)
            ctx.progress(f"importing {len(desired.queues)} queues into vhost {vhost}")
            topology.import_definitions(mgmt, vhost, desired)
            topology.wait_policies_applied(mgmt, vhost, desired)
        finally:
            mgmt.close()
        first = broker["amqp"][0]
        return Facts(
            {
                "vhost": vhost,
                "app_user": app_user,
                "app_password": app_password,
                "amqp": broker["amqp"],
                "amqp_url": f"amqp://{quote(app_user, safe='')}@{first['host']}:{first['port']}/"
                f"{quote(vhost, safe='')}",
                "definitions": str(definitions_path(ctx)),
            },
            secrets=["app_password"],
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Delete the vhost and the user (on ``local`` the cluster goes away next anyway)."""
        # From the facts, or, when the build died after creating them (no facts), from the journal: the vhost and
        # the user were recorded before they were created.
        created = (
            [{"vhost": facts["vhost"], "user": facts["app_user"]}]
            if facts.get("vhost")
            else ctx.records("rabbitmq_vhost")
        )
        if not created:
            return
        try:
            broker = ctx.facts("broker")
        except Exception:  # noqa: BLE001 - no broker facts: nothing was created on it
            return
        mgmt = admin_client(broker, timeout=30)
        try:
            for record in created:
                mgmt.delete_vhost(record["vhost"])
                mgmt.delete_user(record["user"])
        except ManagementError as exc:
            if ctx.backend != "local":
                raise TeardownError(f"vhost or user of {ctx.name} not deleted: {exc}") from None
            log.warning("topology teardown skipped (%s)", exc)
        finally:
            mgmt.close()
