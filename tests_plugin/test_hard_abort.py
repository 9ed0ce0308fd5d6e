"""A hard abort (SIGKILL to the whole job) followed at once by `envfixtures reap`, as a Jenkins `post { always }`
step runs it: the killed controller may still be a zombie, and the fault test's own cluster must go too."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
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


def test_the_fault_tests_own_cluster_is_reaped_after_sigkill(project: Project) -> None:
    shutil.copy(ROOT / "tests_infra" / "test_broker_faults.py", project.path / "test_faults.py")
    project.pytester.makeini(
        "[pytest]\nenv_components = sleeper\nmarkers =\n    fault: destroys part of an environment on purpose\n"
    )
    proc = project.popen("test_faults.py")
    env = project.wait_for_started("broker-faults/faults-3", timeout=120)  # the third node of its own cluster
    os.killpg(proc.pid, signal.SIGKILL)
    assert project.alive(env), "the cluster outlives the killed run until something reaps it"
    reap = _reap(project)
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert project.alive(env) == [], "epmd and the three nodes are gone"
    proc.wait(timeout=10)
