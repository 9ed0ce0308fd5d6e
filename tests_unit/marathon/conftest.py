"""A real local scheduler process for the behaviour tests (``python -m envfixtures.drivers.marathon.server``).

Like the ``scheduler`` component, it gives the server generated credentials in its environment; ``client`` and
``http`` (a requests session for raw calls) send them.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from envfixtures.core.ports import free_port
from envfixtures.core.processes import find_marked, standalone_spawner
from envfixtures.drivers.containers import podman
from envfixtures.drivers.marathon import auth
from envfixtures.drivers.marathon.client import MarathonClient, Unavailable


class LocalMarathon:
    """One scheduler process, marked with its own ENVFIXTURES_ENV so that every task it starts can be found."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.marker = f"ef-test-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth = (f"test-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
        argv = [sys.executable, "-m", "envfixtures.drivers.marathon.server", "--port", str(self.port),
                "--workdir", str(workdir / "w")]  # fmt: skip
        env = {**os.environ, auth.CREDENTIALS_ENV: auth.join(*self.auth)}
        self.process = standalone_spawner(workdir, self.marker, component="marathon")("marathon", argv, env=env)
        self.proc = self.process.popen
        self.log = self.process.log_path
        self.client = MarathonClient(self.url, timeout=5, auth=self.auth)
        self.http = requests.Session()
        self.http.auth = self.auth
        self.process.wait_ready(self.client.ping, what="local marathon", timeout=20, retry_on=(Unavailable,))

    def marked(self) -> list[int]:
        """Live processes of this scheduler (itself and its tasks)."""
        return find_marked(self.marker)

    def task_pids(self) -> list[int]:
        return [p for p in self.marked() if p != self.proc.pid]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def pid_of_task(task_id: str) -> int | None:
    """The task's leader process, found by MESOS_TASK_ID in its environment (local scheduler only)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("MESOS_TASK_ID") == task_id:
                found.append(proc.pid)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return min(found) if found else None


def deploy(client: MarathonClient, app: dict[str, Any], timeout: float = 30) -> None:
    """PUT the app (forced) and wait for its deployment; fails fast with a task's failure."""
    result = client.update_app(app["id"], app, force=True)
    client.wait_for_deployment(result.deployment_id, timeout=timeout, app_ids=[app["id"]], since=time.time() - 1)


@pytest.fixture(scope="module")
def marathon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarathon]:
    """A scheduler of the module's own; none of its processes or containers (labelled with its marker) may
    survive its stop."""
    server = LocalMarathon(tmp_path_factory.mktemp("marathon"))
    try:
        yield server
    finally:
        server.stop()
        leftovers = server.marked()
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        containers = podman.labelled_containers(server.marker)
        podman.remove_containers(server.marker)
        assert not leftovers, f"processes left after the scheduler stopped: {leftovers}"
        assert not containers, f"containers left after the scheduler stopped: {containers}"
