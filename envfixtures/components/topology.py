"""The ``topology`` component: the environment's vhost, its application user, and the queue definitions.

The same on both backends (it talks to the broker's management API): a vhost named like the
environment; an application user with a generated password and permissions on that vhost only;
``templates/rabbitmq/definitions.json`` imported into the vhost. :meth:`Topology.check` validates the
definitions before anything is built, so a binding to a missing exchange fails the run before any
node starts.

Facts: ``vhost``, ``app_user``, ``app_password`` (secret), ``amqp`` (host/port of each node, from the
broker), ``amqp_url`` (without the password), ``definitions`` (path of the imported file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from envfixtures.core.component import Component
from envfixtures.core.errors import TeardownError
from envfixtures.core.facts import Facts
from envfixtures.drivers.rabbitmq import definitions as defs
from envfixtures.drivers.rabbitmq import topology
from envfixtures.drivers.rabbitmq.management import Management, ManagementError

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

log = logging.getLogger(__name__)

DEFINITIONS = Path("templates") / "rabbitmq" / "definitions.json"


def definitions_path(ctx: "BuildContext") -> Path:
    return Path(ctx.root) / DEFINITIONS


def admin_client(broker: Facts, timeout: float = 60.0) -> Management:
    return Management(broker["management_url"], broker["admin_user"], broker["admin_password"], timeout=timeout)


class Topology(Component):
    """A vhost per environment with the platform's exchanges, queues, bindings and policies."""

    name = "topology"
    requires = ("broker",)

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        from envfixtures import rules
        from envfixtures.rules import policy
        from envfixtures.rules import rabbitmq as rabbitmq_rules

        rules.refuse(
            policy.without(
                rabbitmq_rules.check_file(definitions_path(ctx)), policy.disabled(ctx.environment_settings.rules_off)
            )
        )

    def build(self, ctx: "BuildContext") -> Facts:
        from envfixtures.rules import policy

        desired = defs.load(definitions_path(ctx), disabled=policy.disabled(ctx.environment_settings.rules_off))
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
