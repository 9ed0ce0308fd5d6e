"""Acme's suite-level fixtures: clients for what the environment's facts describe.

The component fixtures (``aws``, ``database``, ``broker``, ``topology``, ``scheduler``, ``apps``, ``api``,
``webroot``) and ``envfixtures_env`` come from the envfixtures plugin; each component fixture returns that
component's facts, building it (and what it requires) on first use.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pika
import psycopg
import pytest
import requests


@pytest.fixture(scope="session")
def revision(envfixtures_env: Any) -> str:
    """The git SHA the environment was built from."""
    return str(envfixtures_env.sha)


@pytest.fixture
def ledger(database: Any) -> Iterator[psycopg.Connection]:
    """A connection to the ledger as the application role; whatever a test writes is rolled back."""
    conn = psycopg.connect(
        host=database["host"],
        port=database["port"],
        dbname=database["dbname"],
        user=database["user"],
        password=database["password"],
        connect_timeout=10,
    )
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def channel(topology: Any) -> Iterator[Any]:
    """An AMQP channel of the application user on the environment's vhost, with publisher confirms."""
    node = topology["amqp"][0]
    params = pika.ConnectionParameters(
        host=node["host"],
        port=int(node["port"]),
        virtual_host=topology["vhost"],
        credentials=pika.PlainCredentials(topology["app_user"], topology["app_password"]),
        connection_attempts=3,
        retry_delay=0.5,
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    yield ch
    conn.close()


@pytest.fixture
def management(broker: Any, topology: Any) -> Iterator[Callable[[str], Any]]:
    """``management(path)``: GET on the broker's management API as its administrator (``{vhost}`` in ``path``
    is the environment's vhost, quoted); the answer's JSON."""
    vhost = urllib.parse.quote(topology["vhost"], safe="")
    with requests.Session() as session:
        session.auth = (broker["admin_user"], broker["admin_password"])

        def get(path: str) -> Any:
            answer = session.get(broker["management_url"].rstrip("/") + path.format(vhost=vhost), timeout=10)
            answer.raise_for_status()
            return answer.json()

        yield get


@pytest.fixture
def marathon(scheduler: Any) -> Iterator[Callable[[str], Any]]:
    """``marathon(path)``: GET on the scheduler's Marathon API with the credentials of its facts (a Marathon
    without credentials has none); the answer's JSON."""
    with requests.Session() as session:
        if scheduler.get("password"):
            session.auth = (scheduler["user"], scheduler["password"])

        def get(path: str) -> Any:
            answer = session.get(scheduler["url"].rstrip("/") + path, timeout=10)
            answer.raise_for_status()
            return answer.json()

        yield get
