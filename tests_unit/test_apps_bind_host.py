"""The platform's API and worker listen where each backend needs them (their ``HOST``, from the scheduler's
``bind_host`` fact): on loopback locally, where every task shares this machine; on every interface of an agent on
aws, where the masters' health checks and the load balancer reach them."""

from __future__ import annotations

from pathlib import Path

import pytest

from envfixtures.components import scheduler
from envfixtures.core.facts import Facts
from envfixtures.drivers.marathon import render

ROOT = Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef0123456789abcdef01234567"


def rendered_hosts(bind_host: str) -> dict[str, str]:
    facts = {
        "scheduler": Facts({"url": "http://m", "bind_host": bind_host}),
        "images": Facts({"registry": "r.example/ef", "docker_config": "https://b.example/docker.tar.gz"}),
        "database": Facts({"dsn": "postgresql://db/platform", "password": "pw-unit-0123456789"}, secrets=["password"]),
        "topology": Facts({"amqp_url": "amqp://b/ef", "app_password": "pw-unit-9876543210"}, secrets=["app_password"]),
    }
    context = render.build_context(render.placeholders(SHA, "ef-0123456-host", ROOT), facts)
    return {app["id"]: app["env"]["HOST"] for _, app in render.render_dir(ROOT / "templates" / "marathon", context)}


@pytest.mark.parametrize(
    ("bind_host", "expected"),
    [(scheduler.LOCAL_BIND_HOST, "127.0.0.1"), (scheduler.STACK_BIND_HOST, "0.0.0.0")],  # noqa: S104
    ids=["local", "aws"],
)
def test_the_apps_listen_where_the_backend_needs_them(bind_host: str, expected: str) -> None:
    assert rendered_hosts(bind_host) == {"orders-api": expected, "fulfilment-worker": expected}
