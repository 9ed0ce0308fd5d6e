"""The ``database`` component: the platform's PostgreSQL, then its schema migrations.

``local``: a real PostgreSQL 15 server started by :mod:`envfixtures.drivers.postgres.server` in the component's
work directory, loopback only, scram-sha-256 with generated passwords, an application role and database.
``aws``: the RDS instance of the stack (endpoint and port from the stack's outputs, the master password
from the ``aws`` component's secret facts).

Configured in ``[tool.envfixtures.database]``: ``name`` and ``role`` of the application's database, and
``migrations``, the directory of its schema migrations. On both, the migrations committed at the SHA are applied
at the end of the build: the migrations are the last deploy step of the database, so everything that
requires ``database`` (the apps) finds the schema in place, and no separate component is needed.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from envfixtures.components.aws import refuse_on_stand_in, require_outputs, stack_output, wait_resolves
from envfixtures.core import processes
from envfixtures.core.component import Component
from envfixtures.core.config import path_field
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.drivers.postgres import migrations
from envfixtures.drivers.postgres import server as postgres

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    """The application's database."""

    #: the database's name (local; on aws, the stack's output ``database_name``)
    name: str = "app"
    #: the application's role (local; on aws, the stack's output ``database_user``)
    role: str = "app"
    #: the directory of NNNN_name.sql migrations, applied as committed at the SHA ("" for none)
    migrations: str = path_field(kind="dir")


def database_facts(
    *, host: str, port: int, dbname: str, user: str, password: str, migrations_applied: list[str], **extra: object
) -> Facts:
    """The facts every backend gives: connection parts, a DSN without the password, the password as a secret."""
    dsn = f"postgresql://{quote(user, safe='')}@{host}:{port}/{quote(dbname, safe='')}"
    return Facts(
        {
            "host": host,
            "port": int(port),
            "dbname": dbname,
            "user": user,
            "password": password,
            "dsn": dsn,
            "migrations": migrations_applied,
            **extra,
        },
        secrets=["password"] + [k for k in extra if k.endswith("password")],
    )


def conninfo_of(facts: Facts) -> str:
    """A libpq connection string with the password, for code that connects (never log it)."""
    return postgres.conninfo(
        host=facts["host"], port=facts["port"], user=facts["user"], password=facts["password"], dbname=facts["dbname"]
    )


def _migrations(ctx: "BuildContext") -> list[migrations.Migration]:
    if not ctx.config.migrations:
        return []
    return migrations.from_git(ctx.root, ctx.sha, ctx.config.migrations)


class LocalDatabase(Component):
    """A PostgreSQL server as a child process of the environment (runs as user ``postgres`` from root)."""

    name = "database"
    requires = ()
    Config = DatabaseConfig

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        _migrations(ctx)

    def build(self, ctx: "BuildContext") -> Facts:
        workdir = ctx.workdir()
        if postgres.blocking_directory(workdir, may_change_under=ctx.state_dir) is not None:
            # The server runs as `postgres`, which cannot reach the state directory (a checkout under a
            # private home, such as /root on Debian): its files go to a private directory of the system's
            # temporary directory instead, journaled and removed by the teardown.
            workdir = ctx.scratch_dir()

        port = free_port()
        ctx.progress(f"database: initdb and start PostgreSQL on 127.0.0.1:{port}")
        server = postgres.start(workdir=workdir, port=port, spawn=ctx.spawn, may_change_under=ctx.state_dir)
        ctx.add_secret("database superuser password", server.admin_password)
        password = ctx.new_secret("database application password")
        role, dbname = ctx.config.role, ctx.config.name
        postgres.create_app_database(
            port=port, admin_password=server.admin_password, role=role, password=password, dbname=dbname
        )
        facts = database_facts(
            host=postgres.HOST, port=port, dbname=dbname, user=role, password=password, migrations_applied=[],
            admin_password=server.admin_password, pid=server.pid, server_version=server.version,
            timings=server.timings, versions={"postgresql": server.version},
        )  # fmt: skip
        facts["migrations"] = migrations.apply(conninfo_of(facts), _migrations(ctx))
        ctx.progress(f"database: applied {len(facts['migrations'])} migration(s)")
        return facts

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        # The journaled server, SIGINT first (PostgreSQL's fast shutdown; SIGTERM would wait for every client to
        # leave), and only while its PID is still the server that was started: same kernel start time and this
        # environment's marker, or, when its environment cannot be read (it runs as `postgres`; root without
        # CAP_SYS_PTRACE), the uid it was started as (see core.processes). A process that merely has its PID after
        # a crash or a reboot is never signalled.
        for process in ctx.processes():
            if process.name == "postgres":
                postgres.stop(process)
        ctx.stop_processes()

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        path = ctx.log_path("postgres")
        tail = processes.log_tail(path, 15)
        return f"PostgreSQL on {facts.get('host')}:{facts.get('port')}; last lines of {path}:\n{tail}"


class StackDatabase(Component):
    """The stack's RDS instance; the build only applies the migrations to it."""

    name = "database"
    requires = ("aws",)
    Config = DatabaseConfig

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """The migrations; then, before the stack exists: a stand-in for AWS runs no database; the outputs the build
        reads and the generated master password are configured."""
        _migrations(ctx)
        refuse_on_stand_in(
            ctx, "a moto server records the RDS instance but runs no PostgreSQL: its endpoint address does not resolve"
        )
        require_outputs(ctx, "database_host", "database_port", "database_name")
        if "database_password" not in (ctx.platform.section("aws").get("parameters") or {}).values():
            raise ConfigError(
                'database (aws): no stack parameter is given "database_password" (the master password envfixtures '
                f"generates and the build connects with): map one in {ctx.platform.where(section='aws.parameters')}"
            )

    def build(self, ctx: "BuildContext") -> Facts:
        aws = ctx.facts("aws")
        password = aws.get("database_password")
        if not password:
            raise BuildError(
                'the aws component gave no database password: map a stack parameter to "database_password" in '
                "[tool.envfixtures.aws.parameters]"
            )
        facts = database_facts(
            host=stack_output(aws, "database_host"),
            port=int(stack_output(aws, "database_port")),
            dbname=stack_output(aws, "database_name"),
            user=(aws.get("endpoints") or {}).get("database_user") or ctx.config.role,
            password=password,
            migrations_applied=[],
        )
        wait_resolves(facts["host"], what="database (aws): the stack's database endpoint")
        postgres.wait_ready_app(conninfo_of(facts), timeout=600)
        facts["migrations"] = migrations.apply(conninfo_of(facts), _migrations(ctx))
        return facts

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Nothing to do: the instance goes with the stack."""
