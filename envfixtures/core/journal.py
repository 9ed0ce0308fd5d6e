"""The environment's resource journal: an append-only JSON-lines file, written before a resource exists.

Appends of one short line with O_APPEND are atomic between processes, so xdist workers and the
controller write to it without a lock. A run killed with SIGKILL leaves the journal behind, and
``envfixtures reap`` (or the next teardown) reads it to clean up.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Journal:
    """Records of the resources of one environment."""

    def __init__(self, path: Path, env_name: str) -> None:
        self.path = path
        self.env_name = env_name

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"t": round(time.time(), 3), "writer": os.getpid(), **record}, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        try:
            with open(self.path) as fh:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
        except FileNotFoundError:
            return

    def processes(self) -> list[tuple[str, int, int]]:
        """(key, pid, start_time) of every process the journal says was started and not yet stopped."""
        live: dict[str, tuple[int, int]] = {}
        for rec in self.records():
            if rec.get("kind") != "process":
                continue
            if rec["state"] == "started":
                live[rec["key"]] = (rec["pid"], rec["start_time"])
            elif rec["state"] == "stopped":
                live.pop(rec["key"], None)
        return [(key, pid, st) for key, (pid, st) in live.items()]

    def directories(self) -> list[str]:
        """Paths of the directories the journal says were created outside the state directory, not yet removed."""
        live: dict[str, bool] = {}
        for rec in self.records():
            if rec.get("kind") == "directory":
                live[rec["path"]] = rec["state"] == "created"
        return [path for path, alive in live.items() if alive]
