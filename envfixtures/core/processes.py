"""Processes of an environment: started in their own session, recorded before they exist, stopped by group.

Every process gets ``ENVFIXTURES_ENV=<env name>`` in its environment. Children inherit it, so even a
process whose PID never reached the journal (a run killed by SIGKILL between fork and write) is found
by :func:`find_marked` and stopped by ``envfixtures reap``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envfixtures.core.journal import Journal

log = logging.getLogger(__name__)

MARKER = "ENVFIXTURES_ENV"


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies a started process: its PID (also its group id) and its kernel start time."""

    pid: int
    start_time: int

    def alive(self) -> bool:
        return start_time(self.pid) == self.start_time and not _zombie(self.pid)


def spawn(
    journal: Journal,
    *,
    component: str,
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> tuple[subprocess.Popen, ProcessRecord]:
    """Start ``argv`` in a new session with the environment's marker; journal intent, then PID.

    Output goes to ``log_path``. ``env`` replaces the inherited environment when given (the marker
    is always added). ``user`` runs the process as that user (for servers that refuse root).
    """
    full_env = dict(os.environ if env is None else env)
    full_env[MARKER] = journal.env_name
    log_path.parent.mkdir(parents=True, exist_ok=True)
    key = f"{component}/{name}"
    journal.append({"kind": "process", "key": key, "state": "intent", "argv": list(argv)})
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    record = ProcessRecord(proc.pid, start_time(proc.pid) or 0)
    journal.append(
        {"kind": "process", "key": key, "state": "started", "pid": record.pid, "start_time": record.start_time}
    )
    log.debug("started %s as pid %d", key, proc.pid)
    return proc, record


def stop_group(pgid: int, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to process group ``pgid``, wait up to ``timeout``, then SIGKILL what is left.

    Returns True when the group had members. Works for groups this process did not start.
    """
    members = group_members(pgid)
    if not members:
        return False
    _killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    delay = 0.02
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    if group_members(pgid):
        log.warning("process group %d did not stop within %.0fs of signal %d; killing it", pgid, timeout, sig)
        _killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
    _reap_children()
    return True


def kill_pids(pids: Sequence[int], *, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, a set of processes and their groups (the backstop of a teardown)."""
    for pid in pids:
        for kill in (_killpg, os.kill):
            try:
                kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _running(pid):
            for kill in (_killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    _reap_children()


def find_marked(env_name: str) -> list[int]:
    """PIDs of every live process whose environment carries this environment's marker."""
    needle = f"{MARKER}={env_name}".encode()
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in environ and not _zombie(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat and stat[2] != "Z" and int(stat[4]) == pgid:
            members.append(int(entry.name))
    return members


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when it does not exist."""
    stat = _stat(pid)
    return int(stat[21]) if stat else None


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields after it are plain.
    head, _, tail = raw.rpartition(")")
    return [head.split(" (", 1)[0], head.split(" (", 1)[-1]] + tail.split()


def _zombie(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[2] in ("Z", "X")


def _running(pid: int) -> bool:
    return not _zombie(pid)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_children() -> None:
    """Collect exit statuses of our own finished children so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
