"""A topology build that died after creating its vhost and user (no facts written): the teardown still deletes
them, from what the journal recorded before they were created."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envfixtures.components.topology import Topology
from envfixtures.core.environment import Environment
from envfixtures.core.facts import Facts


@pytest.fixture
def management() -> Iterator[dict]:
    """A stand-in management API that records the DELETEs it is sent."""
    seen: dict = {"deletes": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:  # noqa: N802
            seen["deletes"].append(self.path)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield seen
    server.shutdown()
    server.server_close()


def test_the_journal_brings_back_what_a_dead_build_created(tmp_path: Path, management: dict) -> None:
    env = Environment(
        name="ef-0123456-rply", sha="0" * 40, backend="aws", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["broker", "topology"],
    )  # fmt: skip
    env.description = env.describe()
    env.materialize()
    broker = Facts({"management_url": management["url"], "admin_user": "a", "admin_password": "p"})
    env._set_state("broker", status="built", facts=broker.to_json())
    env.context("topology").record("rabbitmq_vhost", vhost=env.name, user=f"app-{env.name}")  # then the build died
    Topology().teardown(env.context("topology"), Facts())
    assert management["deletes"] == [f"/api/vhosts/{env.name}", f"/api/users/app-{env.name}"]
