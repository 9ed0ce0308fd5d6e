"""The database teardown signals the journaled PostgreSQL server's group only while its PID is still that server:
same kernel start time and the environment's marker (or, when its environment cannot be read, the uid it was
started as). After a crash or a reboot the PID may belong to anything: that process is never signalled."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from envfixtures.components.database import LocalDatabase
from envfixtures.core import config, processes
from envfixtures.core.environment import Environment
from envfixtures.core.facts import Facts

ROOT = Path(__file__).resolve().parents[1]


def make_env(tmp_path: Path, name: str) -> Environment:
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return Environment(
        name=name, sha=sha.strip(), backend="local", root=ROOT, home=tmp_path / ".envfixtures",
        settings={"quiet": "true"}, components=["database"], config=config.find(ROOT),
    )  # fmt: skip


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen]:
    """A process of no environment leading a group of its own: what the PID may belong to after a reboot."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True, env={"PATH": os.environ["PATH"]})
    yield proc
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.parametrize("start_time_off_by", [1, 0], ids=["another-start-time", "right-start-time-no-marker"])
def test_the_teardown_never_signals_a_process_that_has_the_recorded_pid_now(
    tmp_path: Path, stranger: subprocess.Popen, start_time_off_by: int
) -> None:
    env = make_env(tmp_path, f"ef-0123456-pid{start_time_off_by}")
    env.description = env.describe()
    env.materialize()
    # What the journal of a server that died with the machine says, its PID now the stranger's.
    st = processes.start_time(stranger.pid) - start_time_off_by
    env.journal.append({"kind": "process", "key": "database/postgres", "state": "intent", "argv": ["postgres"]})
    env.journal.append(
        {"kind": "process", "key": "database/postgres", "state": "started", "pid": stranger.pid, "start_time": st,
         "uid": os.getuid()}
    )  # fmt: skip
    env._set_state("database", status="built", facts=Facts({"pid": stranger.pid}).to_json(), impl=None)

    LocalDatabase().teardown(env.context("database", LocalDatabase), Facts({"pid": stranger.pid}))
    problems = env.teardown()  # the whole teardown (what `envfixtures reap` runs) and its backstop
    time.sleep(0.2)
    assert stranger.poll() is None, "the process that has the recorded PID now was signalled"
    assert problems == []


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when the gate runs as root")
def test_a_server_of_another_user_whose_environment_cannot_be_read_is_stopped_on_start_time_and_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root without CAP_SYS_PTRACE cannot read the environment of a process of ``postgres``: the uid journaled with
    the server stands in for the marker, and the teardown still stops it (and nothing else)."""
    env = make_env(tmp_path, "ef-0123456-uidf")
    try:
        facts = env.ensure("database")
        [started] = [r for r in env.journal.started_processes() if r["key"] == "database/postgres"]
        assert started["uid"] == pwd.getpwnam("postgres").pw_uid == psutil.Process(facts["pid"]).uids().real

        def denied(self: psutil.Process) -> dict[str, str]:
            raise psutil.AccessDenied(self.pid)

        monkeypatch.setattr(psutil.Process, "environ", denied)
        wrong_uid = processes.Process.from_record(
            "database/postgres", started["pid"], started["start_time"], marker=env.name, uid=os.getuid()
        )
        assert wrong_uid.stop(timeout=1) is False and wrong_uid.running()
    finally:
        problems = env.teardown()
        monkeypatch.undo()
    assert problems == []
    assert not psutil.pid_exists(facts["pid"]) or psutil.Process(facts["pid"]).status() == psutil.STATUS_ZOMBIE
