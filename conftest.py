"""Suite-level fixtures that ``tests_infra/`` and ``tests_api/`` share.

Only fixtures of the suites live here; the plugin (components, lifecycle, reports) is loaded by its ``pytest11``
entry point, so a platform's own repository gets it by installing envfixtures, without this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pika
import pytest
import requests

from envfixtures.core.facts import Facts


@pytest.fixture
def amqp_parameters(topology: Facts) -> pika.ConnectionParameters:
    """The application user's connection to the environment's vhost (first node), as the platform's apps use it."""
    node = topology["amqp"][0]
    return pika.ConnectionParameters(
        host=node["host"],
        port=int(node["port"]),
        virtual_host=topology["vhost"],
        credentials=pika.PlainCredentials(topology["app_user"], topology["app_password"]),
        connection_attempts=3,
        retry_delay=0.5,
        blocked_connection_timeout=30,
    )


@pytest.fixture
def live_work_queues(envfixtures_env: Any) -> Iterator[None]:
    """Held, across xdist workers, by a test that takes messages off the platform's live work queues and by one that
    stops their consumer: the two must not overlap. A message taken and put back counts as a delivery, and the
    queues' policy dead-letters a message past its delivery limit, so orders waiting for a stopped worker would
    be lost to the other test's looking."""
    with envfixtures_env.lock("live-work-queues", timeout=600, what="using the platform's live work queues"):
        yield


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A requests session for one test."""
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="session")
def passwords(database: Facts, topology: Facts) -> list[str]:
    """The database and broker passwords (secret facts), which no response, log or report may contain."""
    values = [v for v in database.secret_values() + topology.secret_values() if v]
    assert values, "the database and topology facts carry no secret value to look for"
    return values
