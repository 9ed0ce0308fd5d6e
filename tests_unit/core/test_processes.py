"""The process executor (envfixtures.core.processes) on real, tiny processes: no server, no environment."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from envfixtures.core import processes
from envfixtures.core.errors import FailedState, WaitTimeout
from envfixtures.core.processes import Process, ProcessRecord, Spawner
from envfixtures.core.waiting import wait_for


@pytest.fixture
def marker() -> str:
    return f"ef-unit-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def spawn(tmp_path: Path, marker: str) -> Iterator[Spawner]:
    """A standalone spawner; whatever a test leaves running is killed (and reported) afterwards."""
    yield processes.standalone_spawner(tmp_path, marker)
    leftovers = processes.find_marked(marker)
    if leftovers:
        processes.kill_pids(leftovers, marker=marker)
    assert not leftovers, f"processes left running: {leftovers}"


def test_wait_ready_returns_the_check_result_once_it_passes(spawn: Spawner, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    process = spawn("touch", ["sh", "-c", f"sleep 0.3; touch {flag}; exec sleep 60"])
    try:
        assert process.wait_ready(lambda: flag.exists() and "ready", what="the flag", timeout=10) == "ready"
        assert process.exit_reason() is None
    finally:
        assert process.stop(timeout=5)


def test_wait_ready_times_out_while_the_process_runs(spawn: Spawner) -> None:
    process = spawn("sleep", ["sleep", "60"])
    try:
        with pytest.raises(WaitTimeout, match="never: not ready after"):
            process.wait_ready(lambda: False, what="never", timeout=0.3)
    finally:
        process.stop(timeout=5)


def test_a_process_that_exits_during_the_wait_fails_it_at_once_with_its_log_tail(spawn: Spawner) -> None:
    process = spawn("crash", ["sh", "-c", "echo starting; echo 'fatal: no config' >&2; sleep 0.2; exit 3"])
    started = time.monotonic()
    with pytest.raises(FailedState) as caught:
        process.wait_ready(lambda: False, what="the crashing server", timeout=60)
    assert time.monotonic() - started < 10, "the wait did not notice the exit"
    message = str(caught.value)
    assert message.startswith("the crashing server: standalone/crash exited with code 3")
    assert f"last lines of {process.log_path}" in message
    assert "starting" in message and "fatal: no config" in message
    assert process.exit_reason() == message.split(": ", 1)[1]


def test_log_tail_is_the_last_lines(spawn: Spawner) -> None:
    process = spawn("count", ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done"])
    process.popen.wait(timeout=10)
    assert process.log_tail(2) == "line-4\nline-5"
    assert process.exit_reason().startswith("standalone/count exited with code 0")


def test_stop_returns_only_when_every_member_of_the_group_has_exited(spawn: Spawner) -> None:
    process = spawn("pair", ["sh", "-c", "sleep 60 & sleep 60"])
    wait_for(lambda: len(processes.group_members(process.pid)) == 3, what="sh and its sleeps", timeout=10)
    members = processes.group_members(process.pid)
    assert process.stop(timeout=5)
    assert processes.group_members(process.pid) == []
    assert len(members) == 3 and not [pid for pid in members if _running(pid)]
    assert process.popen.returncode is not None  # reaped: no zombie left behind


def test_stop_kills_a_group_that_ignores_the_signal(spawn: Spawner) -> None:
    process = spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & trap '' TERM; wait"])
    wait_for(lambda: len(processes.group_members(process.pid)) == 2, what="sh and its sleep", timeout=10)
    started = time.monotonic()
    assert process.stop(timeout=0.5)
    assert processes.group_members(process.pid) == []
    assert time.monotonic() - started < 10


def test_a_reused_pid_is_never_signalled(spawn: Spawner, marker: str) -> None:
    live = spawn("bystander", ["sleep", "60"])
    try:
        # The record of an earlier process that had this PID: same pid and marker, another start time.
        stale = Process("other/old", None, ProcessRecord(live.pid, live.record.start_time - 1, marker, os.getuid()))
        assert stale.exit_reason() == f"other/old (pid {live.pid}) is no longer running"
        assert stale.stop(timeout=1, sig=signal.SIGKILL) is False
        time.sleep(0.2)
        assert live.popen.poll() is None and live.record.alive()
        assert processes.stop_groups([stale.record], grace=0) >= 0
        time.sleep(0.2)
        assert live.popen.poll() is None and live.record.alive()
    finally:
        live.stop(timeout=5)
    assert not live.record.alive()


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen]:
    """A process of no environment (no marker), leading a group of its own: what a PID may belong to after a
    crash or a reboot."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True, env={"PATH": os.environ["PATH"]})
    yield proc
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda p, m: ProcessRecord(p.pid, processes.start_time(p.pid) - 1, m, os.getuid()), id="start"),
        pytest.param(lambda p, m: ProcessRecord(p.pid, processes.start_time(p.pid), m, os.getuid()), id="marker"),
        pytest.param(lambda p, m: ProcessRecord(p.pid, processes.start_time(p.pid), None, os.getuid()), id="none"),
    ],
)
def test_a_record_whose_pid_another_process_has_now_is_never_signalled(
    stranger: subprocess.Popen, marker: str, forged: Callable[[subprocess.Popen, str], ProcessRecord]
) -> None:
    """Same PID, and another start time; or the right start time but not the environment's marker; or no marker
    recorded at all: Process.stop, stop_groups and kill_pids leave it alone."""
    record = forged(stranger, marker)
    assert record.identity_problem() is not None
    assert Process("database/postgres", None, record).stop(timeout=1, sig=signal.SIGKILL) is False
    assert Process.from_record("database/postgres", record.pid, record.start_time, marker=marker).stop() is False
    processes.stop_groups([record], grace=0)
    processes.kill_pids([stranger.pid], marker=marker, timeout=0.5)
    time.sleep(0.2)
    assert stranger.poll() is None, "a process that is not the recorded one was signalled"


def test_the_identity_check_falls_back_to_the_uid_when_the_environment_cannot_be_read(
    spawn: Spawner, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's process read without CAP_SYS_PTRACE: start time and uid decide."""
    process = spawn("server", ["sleep", "60"])
    try:

        def denied(self: psutil.Process) -> dict[str, str]:
            raise psutil.AccessDenied(self.pid)

        monkeypatch.setattr(psutil.Process, "environ", denied)
        other_uid = ProcessRecord(process.pid, process.record.start_time, marker, os.getuid() + 1)
        assert "runs as uid" in other_uid.identity_problem()
        assert Process("standalone/server", None, other_uid).stop(timeout=1) is False
        assert process.popen.poll() is None
        unknown_uid = ProcessRecord(process.pid, process.record.start_time, marker, None)
        assert Process("standalone/server", None, unknown_uid).stop(timeout=1) is False
        assert process.popen.poll() is None
        assert process.record.uid == os.getuid() and process.record.identity_problem() is None
        assert process.stop(timeout=5)
    finally:
        monkeypatch.undo()
        process.stop(timeout=5)
    assert process.popen.returncode is not None


def test_a_zombie_leader_s_group_is_stopped_on_its_start_time_and_uid(spawn: Spawner) -> None:
    """A leader that exited (its environment is gone with its memory) but is not reaped yet still holds its PID
    and group: the rest of the group is stopped."""
    process = spawn("leader", ["sh", "-c", "sleep 60 & exit 0"])
    wait_for(lambda: psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE, what="a zombie", timeout=10)
    [member] = processes.group_members(process.pid)
    assert process.record.identity_problem() is None
    assert process.stop(timeout=5)
    assert not _running(member)


def test_kill_pids_kills_what_carries_the_marker(spawn: Spawner, marker: str, stranger: subprocess.Popen) -> None:
    marked = spawn("marked", ["sh", "-c", "trap '' TERM; sleep 60 & wait"])
    wait_for(lambda: len(processes.group_members(marked.pid)) == 2, what="sh and its sleep", timeout=10)
    processes.kill_pids([marked.pid, stranger.pid], marker=marker, timeout=0.5)
    wait_for(lambda: not processes.group_members(marked.pid), what="the marked group gone", timeout=10)
    assert stranger.poll() is None


def test_stop_groups_stops_several_groups_together(spawn: Spawner) -> None:
    started = [spawn(f"node-{i}", ["sh", "-c", "sleep 60 & sleep 60"]) for i in range(3)]
    took = processes.stop_groups([p.record for p in started], grace=5)
    assert took < 5
    assert all(processes.group_members(p.pid) == [] for p in started)
    for p in started:
        p.popen.wait(timeout=5)


def test_a_standalone_spawner_journals_intent_then_start_and_marks_the_process(
    spawn: Spawner, tmp_path: Path, marker: str
) -> None:
    process = spawn("marked", ["sleep", "60"], env={"PATH": os.environ["PATH"], "OWN": "1"})
    try:
        records = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
        assert [r["state"] for r in records] == ["intent", "started"]
        assert {k: records[0][k] for k in ("kind", "key", "argv")} == {
            "kind": "process",
            "key": "standalone/marked",
            "argv": ["sleep", "60"],
        }
        assert records[1]["pid"] == process.pid and records[1]["start_time"] == process.record.start_time
        assert records[1]["uid"] == os.getuid() == psutil.Process(process.pid).uids().real
        assert process.record.start_time == processes.start_time(process.pid)
        environ = psutil.Process(process.pid).environ()
        assert environ[processes.MARKER] == marker and environ["OWN"] == "1"
        assert processes.find_marked(marker) == [process.pid]
        assert process.log_path == tmp_path / "logs" / "marked.log"
    finally:
        process.stop(timeout=5)
    assert processes.find_marked(marker) == []


def test_start_time_is_the_same_seen_from_another_process(spawn: Spawner, tmp_path: Path) -> None:
    """The journal written by one process is compared by another: the start time must not depend on who reads."""
    import subprocess
    import sys

    process = spawn("sleep", ["sleep", "60"])
    try:
        code = f"from envfixtures.core import processes; print(processes.start_time({process.pid}))"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
        assert int(other.stdout) == process.record.start_time
    finally:
        process.stop(timeout=5)
    assert processes.start_time(process.pid) is None
    assert processes.start_time(0) is None and processes.start_time(999_999_999) is None


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


# --- what a spawned process gets: a minimal environment, a private log ------------------------------------------


def test_a_spawned_process_gets_a_minimal_environment_not_the_gate_s_secrets(
    spawn: Spawner, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"aws-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("GITHUB_TOKEN", secret)
    monkeypatch.setenv("LC_TIME", "C")
    process = spawn("server", ["sleep", "60"], env={"OWN": "1", processes.MARKER: "forged"})
    try:
        raw = Path(f"/proc/{process.pid}/environ").read_bytes()
        environ = dict(item.split("=", 1) for item in raw.decode().split("\0") if item)
    finally:
        process.stop(timeout=5)
    assert secret not in raw.decode()
    assert "AWS_SECRET_ACCESS_KEY" not in environ and "GITHUB_TOKEN" not in environ
    assert environ["PATH"] == os.environ["PATH"] and environ["HOME"] == os.environ["HOME"]
    assert environ["LC_TIME"] == "C" and environ["OWN"] == "1"
    assert environ[processes.MARKER] == marker  # the caller cannot take another environment's marker
    assert set(environ) <= {*processes.INHERITED, "LC_TIME", "LC_ALL", "LC_CTYPE", "OWN", processes.MARKER}


def test_a_log_is_created_0600_in_one_call_whatever_the_umask(spawn: Spawner, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        process = spawn("server", ["sh", "-c", "echo started"])
        process.popen.wait(timeout=10)
    finally:
        os.umask(old)
    assert stat.S_IMODE(process.log_path.stat().st_mode) == 0o600
    assert process.log_tail() == "started"


def test_an_existing_log_is_appended_to_and_made_0600(spawn: Spawner, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "again.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("first run\n")
    log.chmod(0o644)
    process = spawn("again", ["sh", "-c", "echo second run"])
    process.popen.wait(timeout=10)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert log.read_text() == "first run\nsecond run\n"


def test_a_log_path_that_is_a_symlink_is_refused(spawn: Spawner, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    log = tmp_path / "logs" / "linked.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.symlink_to(target)
    with pytest.raises(OSError):
        spawn("linked", ["sh", "-c", "echo written"])
    assert target.read_text() == ""


def test_open_log_creates_with_o_excl_and_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One open() creates the file with its final mode: no chmod after, no window where others may read it."""
    calls: list[tuple[int, int]] = []
    real_open = os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append((flags, mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("a log is never chmod-ed after its creation"))
    fd = processes.open_log(tmp_path / "new.log")
    os.close(fd)
    [(flags, mode)] = calls
    assert flags & os.O_CREAT and flags & os.O_EXCL and flags & os.O_NOFOLLOW and mode == 0o600
