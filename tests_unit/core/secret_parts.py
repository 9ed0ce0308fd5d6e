"""Components for the tests of forgetting secrets: each generates a password, writes it into a config file of its
work directory and into its log, as servers do; ``standing``'s teardown fails while the state directory holds a file
``fail-teardown``, and ``leaky``'s build fails after writing its config."""

from __future__ import annotations

from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError, TeardownError
from envfixtures.core.facts import Facts


class Secretive(Component):
    name = "base"

    def build(self, ctx):  # noqa: ANN001, ANN201
        password = ctx.new_secret(f"{ctx.component} password")
        (ctx.workdir() / "server.conf").write_text(f"listen = 127.0.0.1\npassword = {password}\n")
        with open(ctx.log_path("server"), "a") as fh:
            fh.write(f"started with password {password}\n")  # a server that logs what it should not
        return Facts({"user": ctx.component, "password": password}, secrets=["password"])


class Base(Secretive):
    name = "base"


class Other(Secretive):
    name = "other"


class Standing(Secretive):
    name = "standing"
    requires = ("base",)

    def teardown(self, ctx, facts):  # noqa: ANN001, ANN201
        if (ctx.state_dir / "fail-teardown").exists():
            raise TeardownError("its server would not stop")


class Leaky(Secretive):
    name = "leaky"

    def build(self, ctx):  # noqa: ANN001, ANN201
        super().build(ctx)
        raise BuildError("leaky: its server did not start")
