"""A topology build that died after creating its vhost and user (no facts written): the teardown still deletes
them, from what the journal recorded before they were created."""

from __future__ import annotations

from pathlib import Path

from envfixtures.components.topology import Topology
from envfixtures.core.environment import Environment
from envfixtures.core.facts import Facts


def test_the_journal_brings_back_what_a_dead_build_created(tmp_path: Path, stub_http) -> None:  # noqa: ANN001
    management = stub_http(lambda method, path: (204, b""))
    env = Environment(
        name="ef-0123456-rply", sha="0" * 40, backend="aws", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["broker", "topology"],
    )  # fmt: skip
    env.description = env.describe()
    env.materialize()
    broker = Facts({"management_url": management.url, "admin_user": "a", "admin_password": "p"})
    env._set_state("broker", status="built", facts=broker.to_json())
    env.context("topology").record("rabbitmq_vhost", vhost=env.name, user=f"app-{env.name}")  # then the build died
    Topology().teardown(env.context("topology"), Facts())
    assert management.requests == [("DELETE", f"/api/vhosts/{env.name}"), ("DELETE", f"/api/users/app-{env.name}")]
