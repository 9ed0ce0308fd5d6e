"""A real local scheduler process for the behaviour tests (``python -m envfixtures.drivers.marathon.server``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envfixtures.core.ports import free_port
from envfixtures.core.processes import MARKER, find_marked
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon.client import MarathonClient, Unavailable


class LocalMarathon:
    """One scheduler process, marked with its own ENVFIXTURES_ENV so that every task it starts can be found."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.marker = f"ef-test-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "marathon.log"
        env = dict(os.environ, **{MARKER: self.marker})
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "envfixtures.drivers.marathon.server",
                    "--port",
                    str(self.port),
                    "--workdir",
                    str(workdir / "w"),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = MarathonClient(self.url, timeout=5)
        wait_for(
            self.client.ping,
            what="local marathon",
            timeout=20,
            retry_on=(Unavailable,),
            failed=lambda: None if self.proc.poll() is None else f"exited: {self.log.read_text()[-2000:]}",
        )

    def marked(self) -> list[int]:
        """Live processes of this scheduler (itself and its tasks)."""
        return find_marked(self.marker)

    def task_pids(self) -> list[int]:
        return [p for p in self.marked() if p != self.proc.pid]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def pid_of_task(task_id: str) -> int | None:
    """The task's leader process, found by MESOS_TASK_ID in /proc/*/environ (local scheduler only)."""
    needle = f"MESOS_TASK_ID={task_id}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return min(found) if found else None


@pytest.fixture(scope="module")
def marathon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMarathon]:
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
        assert not leftovers, f"processes left after the scheduler stopped: {leftovers}"
