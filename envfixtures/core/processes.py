"""Processes of an environment: started in their own session, recorded before they exist, stopped by group.

One executor for every server, in the manner of mirakuru's: :func:`spawn` (and the spawners built on it,
``Environment.spawn``, ``BuildContext.spawn``, :func:`standalone_spawner`) starts a command and returns a
:class:`Process`; the caller supplies only its readiness check to :meth:`Process.wait_ready`, which fails at
once, with the tail of the process's log, when the process exits during the wait. :meth:`Process.stop`
returns when every member of its process group has exited.

Every process gets ``ENVFIXTURES_ENV=<env name>`` in its environment. Children inherit it, so even a
process whose PID never reached the journal (a run killed by SIGKILL between fork and write) is found
by :func:`find_marked` and stopped by ``envfixtures reap``.

Nothing is signalled before its identity is checked, on one path for every component
(:meth:`ProcessRecord.identity_problem`, used by :meth:`Process.stop`, :func:`stop_groups` and :func:`kill_pids`):
the PID must still have the kernel start time that was recorded *and* carry this environment's marker. A PID
reused after a crash or a reboot fails the first check; a process that happens to have the right start time but
is not one of the environment's fails the second. Where the process's environment cannot be read — a zombie
(its memory is gone), or a process of another user (PostgreSQL runs as ``postgres`` when the gate runs as root)
read without the privilege to (``CAP_SYS_PTRACE``; root in a container may lack it) — the check falls back to
the start time and the uid it was started as (journaled with it).

A spawned process gets a minimal environment (:func:`minimal_environ`), not the gate's: the gate's credentials
(AWS keys, tokens) never reach a server. Its log file is created ``0600`` by one ``open`` (``O_CREAT|O_EXCL``),
so it is never readable by others, not even for an instant.

The process table is read with psutil. A process's start time is kept in the kernel's clock ticks since
boot: it never changes and does not depend on the wall clock, so a record journaled by one process
compares equal in another.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
import stat
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import psutil

from envfixtures.core.errors import WaitTimeout
from envfixtures.core.journal import Journal
from envfixtures.core.waiting import wait_for

log = logging.getLogger(__name__)

MARKER = "ENVFIXTURES_ENV"
#: What a spawned process inherits of the gate's environment: the program search path, home, locale, time zone,
#: temporary directory, and where Python finds envfixtures (a checkout's ``PYTHONPATH``, the virtualenv; the
#: local scheduler's tasks run the gate's interpreter). Nothing else: a caller passes what its server needs.
INHERITED = ("PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
INHERITED_PREFIXES = ("LC_",)
#: Lines of a process's log quoted when it exits during a readiness wait.
TAIL_LINES = 20
#: Seconds to wait for a group to disappear after SIGKILL (only a process stuck in the kernel takes long).
KILL_WAIT = 10.0

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_DEAD = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies a started process: its PID (also its group id), its kernel start time, the environment
    marker it carries and the uid it runs as.

    ``marker`` None (not known): the record can tell whether the process is alive, but it is never signalled.
    ``uid`` None (not recorded): when the process's environment cannot be read it is never signalled either.
    """

    pid: int
    start_time: int
    marker: str | None = None
    uid: int | None = None

    @classmethod
    def current(cls, pid: int, marker: str) -> ProcessRecord | None:
        """The record of what runs as ``pid`` now (None when nothing does), to be checked against ``marker``."""
        try:
            uid = psutil.Process(pid).uids().real
        except psutil.Error:
            return None
        started = start_time(pid)
        return None if started is None else cls(pid, started, marker, uid)

    def alive(self) -> bool:
        """Still the process that was started (same start time), and running (not a zombie)."""
        return self.is_same() and not _zombie(self.pid)

    def is_same(self) -> bool:
        """The PID still has the recorded start time (a zombie still holds it). Not enough to signal it: see
        :meth:`identity_problem`."""
        return start_time(self.pid) == self.start_time

    def identity_problem(self) -> str | None:
        """None when the PID still belongs to the process that was started, else why it may not be signalled.

        Same kernel start time, and this environment's marker in its environment. When the environment cannot
        be read (a zombie; another user's process without ``CAP_SYS_PTRACE``): same start time and same uid.
        """
        try:
            proc = psutil.Process(self.pid)
            started = _ticks(proc)
        except psutil.Error:
            return GONE
        if started != self.start_time:
            return GONE
        if self.marker is None:
            return "no environment marker was recorded for it"
        try:
            if proc.status() in _DEAD:
                raise psutil.ZombieProcess(self.pid)
            environ = proc.environ()
        except (psutil.AccessDenied, psutil.ZombieProcess, PermissionError):
            return self._uid_problem(proc)
        except psutil.Error:
            return GONE
        if environ.get(MARKER) == self.marker:
            return None
        return f"{UNMARKED} {MARKER}={self.marker}"

    def _uid_problem(self, proc: psutil.Process) -> str | None:
        if self.uid is None:
            return "its environment cannot be read and its uid was not recorded"
        try:
            uid = proc.uids().real
        except psutil.Error:
            return GONE
        return None if uid == self.uid else f"its environment cannot be read and it runs as uid {uid}, not {self.uid}"


#: :meth:`ProcessRecord.identity_problem` of a process that exited or whose PID now has another start time.
GONE = "gone, or its PID now belongs to another process"
#: How :meth:`ProcessRecord.identity_problem` begins for a live process without this environment's marker.
UNMARKED = "it does not carry"
#: Seconds :func:`spawn` waits until its child shows its marker (the kernel shows the new environment from the exec).
MARKED_WAIT = 2.0


def may_signal(record: ProcessRecord, what: str) -> bool:
    """Whether ``record`` may be signalled (:meth:`ProcessRecord.identity_problem`); logs why not."""
    problem = record.identity_problem()
    if problem is None:
        return True
    level = logging.DEBUG if problem == GONE else logging.WARNING
    log.log(level, "%s (pid %d) not signalled: %s", what, record.pid, problem)
    return False


@dataclass
class Process:
    """A process started by :func:`spawn`: its key (``component/name``), Popen, record and log file.

    ``popen`` is None for a process known only from a journal (another process started it): then its exit code
    is unknown, and :meth:`exit_reason` says that it is gone.
    """

    key: str
    popen: subprocess.Popen | None
    record: ProcessRecord
    log_path: Path | None = None

    @classmethod
    def from_record(
        cls,
        key: str,
        pid: int,
        start_time: int,
        log_path: Path | None = None,
        *,
        marker: str | None,
        uid: int | None = None,
    ) -> Process:
        """A journaled process (see :meth:`Journal.started_processes`) of the environment whose marker is
        ``marker``, to watch or stop (None: to watch only, it is never signalled)."""
        return cls(key, None, ProcessRecord(int(pid), int(start_time), marker, uid), log_path)

    @property
    def pid(self) -> int:
        return self.record.pid

    @property
    def name(self) -> str:
        """The process's name within its component (the key without the component)."""
        return self.key.rsplit("/", 1)[-1]

    def returncode(self) -> int | None:
        """The exit code when it exited (and we are its parent), else None."""
        return None if self.popen is None else self.popen.poll()

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.record.alive()

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the process's output ("" when there is none)."""
        return log_tail(self.log_path, lines)

    def exit_reason(self, lines: int = TAIL_LINES) -> str | None:
        """None while the process runs; else which process exited, its code and the last lines of its log."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            what = f"{self.key} exited with code {code}"
        elif self.record.alive():
            return None
        else:
            what = f"{self.key} (pid {self.pid}) is no longer running"
        if self.log_path is None:
            return what
        tail = self.log_tail(lines)
        return f"{what}; last lines of {self.log_path}:\n{tail}" if tail else f"{what}; {self.log_path} is empty"

    def wait_ready(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        timeout: float,
        retry_on: tuple[type[BaseException], ...] = (),
        first_delay: float = 0.05,
        max_delay: float = 1.0,
    ) -> T:
        """Call ``check`` until it returns something truthy (see :func:`~envfixtures.core.waiting.wait_for`);
        fails at once with :class:`~envfixtures.core.errors.FailedState` and the log's tail if the process exits."""
        return wait_for(
            check,
            what=what,
            timeout=timeout,
            retry_on=retry_on,
            failed=self.exit_reason,
            first_delay=first_delay,
            max_delay=max_delay,
        )

    def stop(self, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> bool:
        """Send ``sig`` to the process's group, SIGKILL what is left after ``timeout``; return when every member
        of the group has exited. True when there was something to stop.

        Nothing is signalled unless the PID still belongs to the process that was started (same kernel start
        time and the environment's marker: :meth:`ProcessRecord.identity_problem`), so a reused PID is never hit.
        A leader that already exited but is not reaped yet (a zombie) still holds its PID, and with it its group
        id: the rest of its group is stopped.
        """
        if not may_signal(self.record, self.key):
            self._reap()
            return False
        stopped = _stop_group(self.record, timeout=timeout, sig=sig, what=self.key)
        self._reap()
        return stopped

    def _reap(self) -> None:
        """Collect the leader's exit status when it is our child, so that it does not linger as a zombie."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=1)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not exit", self.key, self.pid)
        else:
            _reap(self.pid)


class Spawner(Protocol):
    """``spawn(name, argv, *, env=None, cwd=None, user=None) -> Process``: how a driver starts a server.

    The process gets :func:`minimal_environ` (``env`` added to it) and the marker; ``user`` runs the
    process as that user (for servers that refuse root). ``BuildContext.spawn`` is one; outside an environment
    :func:`standalone_spawner` makes one.
    """

    def __call__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> Process: ...


def minimal_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process the environment starts: :data:`INHERITED` of the gate's, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}
    env.update(extra or {})
    return env


def open_log(path: Path) -> int:
    """A descriptor appending to ``path``, created ``0600`` with ``O_CREAT|O_EXCL`` in one call (never readable by
    others, not for an instant); an existing log of ours (a process started again under its name) is appended to
    and made ``0600``. A symlink or a file of another owner is refused."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = os.open(path, flags)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise PermissionError(f"{path}: not a regular file of ours; no log is written to it")
    os.fchmod(fd, 0o600)
    return fd


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
) -> Process:
    """Start ``argv`` in a new session with the journal's marker; journal intent, then PID, start time and uid.

    Output goes to ``log_path`` (created ``0600``: :func:`open_log`). The process's environment is
    :func:`minimal_environ` with ``env`` added, and the marker. ``user`` runs the process as that user (for
    servers that refuse root).
    """
    full_env = minimal_environ(env)
    full_env[MARKER] = journal.env_name
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = f"{component}/{name}"
    journal.append({"kind": "process", "key": key, "state": "intent", "argv": list(argv)})
    out = open_log(log_path)
    try:
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
    finally:
        os.close(out)
    # Our child: until we reap it, its PID (and start time) stay even if it exits at once.
    uid = os.getuid() if user is None else pwd.getpwnam(user).pw_uid
    record = ProcessRecord(proc.pid, start_time(proc.pid) or 0, journal.env_name, uid)
    journal.append(
        {"kind": "process", "key": key, "state": "started", "pid": record.pid, "start_time": record.start_time,
         "uid": uid}
    )  # fmt: skip
    log.debug("started %s as pid %d", key, proc.pid)
    _until_marked(record)
    return Process(key, proc, record, log_path)


def _until_marked(record: ProcessRecord) -> None:
    """Until the new process shows its marker, so that every identity check from now on recognises it (seen once,
    on a fresh Debian root: a group checked at once after the spawn did not carry it yet, and was not stopped).
    Bounded; a process that exits first, or cannot be read, ends the wait."""
    deadline = time.monotonic() + MARKED_WAIT
    while (problem := record.identity_problem()) is not None and problem.startswith(UNMARKED):
        if time.monotonic() > deadline:
            log.warning("pid %d does not show %s after %.0fs: %s", record.pid, MARKER, MARKED_WAIT, problem)
            return
        time.sleep(0.001)


def standalone_spawner(directory: Path, marker: str, *, component: str = "standalone") -> Spawner:
    """A :class:`Spawner` outside any environment (fault tests, benches, the services' integration tests).

    Processes are journaled in ``directory/journal.jsonl`` (intent, then PID and start time), log to
    ``directory/logs/<name>.log`` and carry ``ENVFIXTURES_ENV=marker``, so ``find_marked(marker)`` finds any
    that survive.
    """
    directory = Path(directory)
    journal = Journal(directory / "journal.jsonl", marker)

    def _spawn(
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> Process:
        return spawn(
            journal, component=component, name=name, argv=argv, log_path=directory / "logs" / f"{name}.log",
            env=env, cwd=cwd, user=user,
        )  # fmt: skip

    return _spawn


def stop_groups(records: Sequence[ProcessRecord], *, grace: float = 15.0) -> float:
    """Stop the process groups of ``records`` together: SIGTERM, SIGKILL after ``grace`` (0: SIGKILL at once).

    Only groups whose leader is still the recorded process (start time and marker:
    :meth:`ProcessRecord.identity_problem`) are signalled, so a reused PID is never hit. Returns the seconds
    until every member of every group was gone.
    """
    t0 = time.monotonic()
    live = [r for r in records if may_signal(r, f"process group {r.pid}")]

    def all_gone() -> bool:
        return not any(group_members(r.pid) for r in live)

    if grace > 0:
        for rec in live:
            _killpg(rec.pid, signal.SIGTERM)
        try:
            wait_for(all_gone, what="process groups to stop", timeout=grace, first_delay=0.05, max_delay=0.2)
        except WaitTimeout:
            log.warning(
                "process groups %s still alive %.0fs after SIGTERM; killing them",
                [r.pid for r in live if group_members(r.pid)],
                grace,
            )
    for rec in live:
        if group_members(rec.pid) and _group_still_ours(rec, f"process group {rec.pid}"):
            _killpg(rec.pid, signal.SIGKILL)
    wait_for(all_gone, what="process groups to die after SIGKILL", timeout=KILL_WAIT, first_delay=0.02, max_delay=0.1)
    for rec in live:
        _reap(rec.pid)
    return time.monotonic() - t0


def _group_still_ours(record: ProcessRecord, what: str) -> bool:
    """Before a follow-up signal to a group checked earlier: its leader is still the process (checked again), or
    gone, its group left behind (a group id is not given to a new process while a member of the group lives)."""
    return start_time(record.pid) is None or may_signal(record, what)


def _stop_group(record: ProcessRecord, *, timeout: float, sig: int, what: str) -> bool:
    pgid = record.pid
    if not group_members(pgid):
        return False
    _killpg(pgid, sig)
    if sig != signal.SIGKILL:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        if group_members(pgid) and _group_still_ours(record, what):
            log.warning("%s (group %d) did not stop within %.0fs of signal %d; killing it", what, pgid, timeout, sig)
            _killpg(pgid, signal.SIGKILL)
    wait_for(
        lambda: not group_members(pgid),
        what=f"{what} (group {pgid}) to die after SIGKILL",
        timeout=KILL_WAIT,
        first_delay=0.02,
        max_delay=0.1,
    )
    return True


def kill_pids(pids: Sequence[int], *, marker: str, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, a set of processes of the environment ``marker`` and their groups (the backstop of
    a teardown, after :func:`find_marked`). Each is checked (:meth:`ProcessRecord.identity_problem`) before each
    signal: one that no longer carries the marker, or whose PID was reused meanwhile, is left alone."""
    records = [r for r in (ProcessRecord.current(pid, marker) for pid in pids) if r is not None]
    live = [r for r in records if may_signal(r, f"marked process {r.pid}")]
    for rec in live:
        for kill in (_killpg, _kill):
            kill(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(r.alive() for r in live) and time.monotonic() < deadline:
        time.sleep(0.05)
    for rec in live:
        if rec.alive() and may_signal(rec, f"marked process {rec.pid}"):
            for kill in (_killpg, _kill):
                kill(rec.pid, signal.SIGKILL)
    _reap_children()


def find_marked(env_name: str) -> list[int]:
    """PIDs of every live process whose environment carries this environment's marker."""
    found = []
    me = os.getpid()
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            proc = psutil.Process(pid)
            if proc.environ().get(MARKER) == env_name and proc.status() not in _DEAD:
                found.append(pid)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return sorted(found)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() not in _DEAD:
                members.append(pid)
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return members


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` in clock ticks since boot, or None when it does not exist."""
    if pid <= 0:
        return None
    try:
        return _ticks(psutil.Process(pid))
    except psutil.Error:
        return None


def _ticks(proc: psutil.Process) -> int:
    # create_time() is boot time + ticks / CLK_TCK; the ticks never change, the boot time follows the clock.
    return round((proc.create_time() - psutil.boot_time()) * _CLOCK_TICKS)


def _zombie(pid: int) -> bool:
    """A zombie, or no such process."""
    try:
        return psutil.Process(pid).status() in _DEAD
    except psutil.Error:
        return True


def log_tail(path: Path | None, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ("" when it does not exist)."""
    if path is None:
        return ""
    try:
        with open(path, errors="replace") as fh:
            return "\n".join(line.rstrip("\n") for line in deque(fh, maxlen=lines))
    except OSError:
        return ""


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is a finished child of ours (else nothing)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
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
