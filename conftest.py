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
    """Held, across xdist workers, by a test that takes messages off the platform's live work queues, by those that
    stop their consumer (the worker-kill and self-healing tests), and by one that asserts their consumer was not
    restarted: they must not overlap. A message
    taken and put back counts as a delivery, and the queues' policy dead-letters a message past its delivery limit,
    so orders waiting for a stopped worker would be lost to the other test's looking."""
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


# --- the broker's fault window ---------------------------------------------------------------------------------
#: The fixture of the test that SIGKILLs a node of the environment's own broker (and restores it): it holds the
#: lock ``broker-in-use`` exclusively, every other test that needs the broker (directly or through a component that
#: requires it) holds it shared, so no such test runs while a node is down, on any xdist worker.
BROKER_FAULT = "broker_fault_window"
BROKER_LOCK = "broker-in-use"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The broker's fault test last: xdist hands items out in order, so it starts once every other test has been
    handed out, and its exclusive lock waits only for the tests still running (the end of the broker's use)."""
    last = [item for item in items if BROKER_FAULT in getattr(item, "fixturenames", ())]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.fixture(autouse=True)
def _broker_in_use(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shared hold of the broker, for a test that needs it (see BROKER_FAULT); nothing for any other test."""
    names = set(request.fixturenames)
    if BROKER_FAULT in names or "envfixtures_env" not in names:  # every component's fixture requests the env
        yield
        return
    env = request.getfixturevalue("envfixtures_env")
    users = {n for n in env.components if "broker" in env.required_closure([n])}
    if not names & users:
        yield
        return
    with env.lock(BROKER_LOCK, timeout=900, what="a test that needs the broker", shared=True):
        yield
