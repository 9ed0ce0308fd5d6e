"""A vhost still initialising (HTTP 500 with an Erlang charlist) is retried within the deadline, and said in words."""

from __future__ import annotations

import pytest

from envfixtures.core.errors import WaitTimeout
from envfixtures.drivers.rabbitmq.management import Management

INITIALISING = "[" + ",".join(str(ord(c)) for c in "Timed out while waiting for the vhost to initialise") + "]"


def initialising(failures: int):  # noqa: ANN201
    """Answers PUT with 500 (a charlist body) ``failures`` times, then 201."""
    calls = []

    def answer(method: str, path: str) -> tuple[int, bytes]:
        calls.append(path)
        return (500, ('{"error":' + INITIALISING + "}").encode()) if len(calls) <= failures else (201, b"")

    return answer


def test_a_vhost_still_initialising_is_retried(stub_http) -> None:  # noqa: ANN001
    broker = stub_http(initialising(2))
    Management(broker.url, "admin", "pw").put_vhost("ef-0123456-v", timeout=10)
    assert broker.requests == [("PUT", "/api/vhosts/ef-0123456-v")] * 3


def test_the_deadline_holds_and_the_error_is_in_words(stub_http) -> None:  # noqa: ANN001
    broker = stub_http(initialising(1000))
    with pytest.raises(WaitTimeout, match="Timed out while waiting for the vhost to initialise"):
        Management(broker.url, "admin", "pw").put_vhost("ef-0123456-v", timeout=1.5)
