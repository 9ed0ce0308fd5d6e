"""A vhost still initialising (HTTP 500 with an Erlang charlist) is retried within the deadline, and said in words."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from envfixtures.core.errors import WaitTimeout
from envfixtures.drivers.rabbitmq.management import Management

INITIALISING = "[" + ",".join(str(ord(c)) for c in "Timed out while waiting for the vhost to initialise") + "]"


@pytest.fixture
def broker() -> Iterator[dict]:
    """A stand-in management API answering PUT /api/vhosts/<v> with 500 (charlist) ``failures`` times, then 201."""
    state = {"failures": 2, "calls": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state["calls"] += 1
            if state["calls"] <= state["failures"]:
                body = ('{"error":' + INITIALISING + "}").encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_a_vhost_still_initialising_is_retried(broker: dict) -> None:
    Management(broker["url"], "admin", "pw").put_vhost("ef-0123456-v", timeout=10)
    assert broker["calls"] == 3


def test_the_deadline_holds_and_the_error_is_in_words(broker: dict) -> None:
    broker["failures"] = 1000
    with pytest.raises(WaitTimeout, match="Timed out while waiting for the vhost to initialise"):
        Management(broker["url"], "admin", "pw").put_vhost("ef-0123456-v", timeout=1.5)
