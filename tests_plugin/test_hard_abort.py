"""A hard abort (SIGKILL to the whole job) followed at once by `envfixtures reap`, as a Jenkins `post { always }`
step runs it: the killed controller may still be a zombie, and a node the fault test started again must go too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Project

ROOT = Path(__file__).resolve().parents[1]


def _reap(project: Project) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envfixtures.cli", "reap"], cwd=project.path, capture_output=True, text=True, timeout=120
    )


def test_sigkill_to_the_group_then_reap_at_once(project: Project) -> None:
    project.pytester.makepyfile(test_x="def test_a(sleeper):\n    pass\n")
    proc = project.popen("--env-set", "sleeper_build_seconds=60")
    env = project.wait_for_started("sleeper/sleep")
    os.killpg(proc.pid, signal.SIGKILL)  # not waited for: the controller stays a zombie while reap runs
    reap = _reap(project)
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert f"{env.name}: reaped" in reap.stdout
    assert project.alive(env) == []
    proc.wait(timeout=10)


#: Appended to the fault test's module: its fixture's window on the environment's own broker, one node killed and
#: started again as the fault test does (the quorum-queue checks, which are the fault test's own, left out), then a
#: run that is still going when the job is killed.
RESTART_THEN_WAIT = """

def test_restart_then_wait(broker_fault_window):
    import time

    name = broker_fault_window.spec.nodes[-1].name
    broker_fault_window.kill_node(name)
    broker_fault_window.restart_node(name, timeout=120)
    time.sleep(600)
"""


def test_a_node_the_fault_test_restarted_is_reaped_after_sigkill(project: Project) -> None:
    """The fault test kills a node of the environment's own broker and starts it again, journaled as the broker's:
    a SIGKILL to the whole job once that node is back leaves it running until ``reap``, which stops it with the rest."""
    faults = (ROOT / "tests_infra" / "test_broker_faults.py").read_text()
    (project.path / "test_faults.py").write_text(faults + RESTART_THEN_WAIT)
    project.pytester.makeini(
        "[pytest]\nenv_components = broker\nenv_settings =\n    broker_nodes=3\n"
        "markers =\n    fault: destroys part of an environment on purpose\n"
    )
    proc = project.popen("test_faults.py", "-k", "restart_then_wait")
    env = project.wait_for_started("broker/epmd", timeout=120)
    deadline = time.monotonic() + 240
    while not _restarted(project, env) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    restarted = _restarted(project, env)
    if not restarted:  # the run's own words, for why not
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate(timeout=30)[0].decode(errors="replace")[-3000:]
        _reap(project)
        raise AssertionError(f"no node of the broker was started again (exit {proc.returncode}):\n{output}")
    os.killpg(proc.pid, signal.SIGKILL)
    assert project.alive(env), "the broker, the restarted node with it, outlives the killed run until reaped"
    reap = _reap(project)
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert project.alive(env) == [], f"every node, {restarted} restarted too, is gone"
    proc.wait(timeout=10)


def _restarted(project: Project, env: Path) -> list[str]:
    """The processes journaled as started more than once (a node the fault test started again)."""
    started = [r["key"] for r in project.journal(env) if r.get("kind") == "process" and r.get("state") == "started"]
    return sorted({key for key in started if started.count(key) > 1})
