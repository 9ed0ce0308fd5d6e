"""The environment's resource journal: an append-only JSON-lines file, written before a resource exists.

Appends of one short line with O_APPEND are atomic between processes, so xdist workers and the
controller write to it without a lock. A run killed with SIGKILL leaves the journal behind, and
``envfixtures reap`` (or the next teardown) reads it to clean up.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from envfixtures.core import private

log = logging.getLogger(__name__)


class Journal:
    """Records of the resources of one environment."""

    def __init__(self, path: Path, env_name: str) -> None:
        self.path = path
        self.env_name = env_name
        #: lines of the last read that did not parse
        self.torn = 0

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"t": round(time.time(), 3), "writer": os.getpid(), **record}, sort_keys=True) + "\n"
        private.private_dir(self.path.parent)
        fd = private.open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)  # 0600, never through a link
        try:
            if os.fstat(fd).st_size and os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
                line = "\n" + line  # after a torn line, start a line of our own rather than finish that one
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record. A torn line (a SIGKILL or a full disk in the middle of a write) is skipped and counted in
        :attr:`torn`: what it would have said is covered by the marker backstop, and teardown must go on."""
        self.torn = 0
        try:
            with open(self.path, errors="replace") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        record = None
                    if isinstance(record, dict):
                        yield record
                    else:
                        self.torn += 1
                        log.warning("%s: skipped a torn line: %r", self.path, line[:80])
        except FileNotFoundError:
            return

    def processes(self) -> list[tuple[str, int, int]]:
        """(key, pid, start_time) of every process the journal says was started and not yet stopped."""
        return [(rec["key"], rec["pid"], rec["start_time"]) for rec in self.started_processes()]

    def started_processes(self) -> list[dict[str, Any]]:
        """The ``started`` record (``key``, ``pid``, ``start_time``, ``uid``: None in a journal written before uids
        were recorded) of every process the journal says was started and not yet stopped."""
        live: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            if rec.get("kind") != "process":
                continue
            if rec["state"] == "started":
                live[rec["key"]] = {"uid": None, **rec}
            elif rec["state"] == "stopped":
                live.pop(rec["key"], None)
        return list(live.values())

    def directories(self) -> list[str]:
        """Paths of the directories the journal says were created outside the state directory, not yet removed."""
        live: dict[str, bool] = {}
        for rec in self.records():
            if rec.get("kind") == "directory":
                live[rec["path"]] = rec["state"] == "created"
        return [path for path, alive in live.items() if alive]
