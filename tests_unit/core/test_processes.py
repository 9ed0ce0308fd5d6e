"""The process executor (envfixtures.core.processes) on real, tiny processes: no server, no environment."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
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
        processes.kill_pids(leftovers)
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


def test_a_reused_pid_is_never_signalled(spawn: Spawner) -> None:
    live = spawn("bystander", ["sleep", "60"])
    try:
        # The record of an earlier process that had this PID: same pid, another start time.
        stale = Process("other/old", None, ProcessRecord(live.pid, live.record.start_time - 1))
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


def test_a_journaled_process_is_stopped_through_its_record(spawn: Spawner) -> None:
    started = spawn("server", ["sleep", "60"])
    journaled = Process.from_record(started.key, started.pid, started.record.start_time)
    assert journaled.exit_reason() is None
    assert journaled.stop(timeout=5, sig=signal.SIGINT)
    assert processes.group_members(started.pid) == []
    assert started.popen.wait(timeout=5) is not None
    assert journaled.stop(timeout=5) is False  # gone: nothing to signal


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
