"""The static stage's per-file summary (the policy rules a platform turns off left out), and a stub HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

from envfixtures import rules
from envfixtures.rules import policy


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line per template: its errors and warnings (cfn-lint aside: tox -e lint runs it)."""
    from envfixtures.rules import cloudformation, marathon, rabbitmq

    base = config.rootpath / "templates"
    files = [base / "cloudformation" / "environment.yaml", *sorted((base / "marathon").glob("*.json"))]
    files.append(base / "rabbitmq" / "definitions.json")
    try:
        held = policy.from_pytest(config)
        found = cloudformation.check_file(files[0], policy=held) + marathon.check_dir(base / "marathon")
        found += rabbitmq.check_file(files[-1])
        lines = rules.summary(held.without(found), files)
    except Exception as exc:  # the summary never hides the tests' own verdict
        lines = [f"(no summary: {exc})"]
    terminalreporter.write_sep("-", "static rules, per template")
    for line in lines:
        terminalreporter.write_line(line)


class StubHTTP:
    """A loopback HTTP server whose answers a test supplies, recording every request as (method, path)."""

    def __init__(self, answer: Callable[[str, str], tuple[int, bytes]]) -> None:
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests.append((self.command, self.path))
                status, body = answer(self.command, self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_http() -> Iterator[Callable[[Callable[[str, str], tuple[int, bytes]]], StubHTTP]]:
    """``stub_http(answer)``: a running :class:`StubHTTP`; ``answer(method, path) -> (status, body)``."""
    servers: list[StubHTTP] = []

    def serve(answer: Callable[[str, str], tuple[int, bytes]]) -> StubHTTP:
        servers.append(StubHTTP(answer))
        return servers[-1]

    yield serve
    for server in servers:
        server.close()
