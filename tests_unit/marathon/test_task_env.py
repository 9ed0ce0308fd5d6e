"""The environment a local task gets (no server needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from envfixtures.drivers.marathon import tasks


def _task(tmp_path: Path) -> tasks.TaskRun:
    task_id, instance_id = tasks.new_task_id("/g/app")
    return tasks.TaskRun(task_id, instance_id, "/g/app", "v1", "v1", [31001], tmp_path, 0.0)


def test_a_task_runs_on_the_gates_interpreter_whatever_the_shells_path(tmp_path: Path) -> None:
    """`python3` in a task's command resolves to the gate's interpreter even from a shell with no venv on PATH."""
    env = tasks.task_env({"cmd": "python3 -m app"}, _task(tmp_path), base={"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep) == [os.path.dirname(sys.executable), "/usr/bin", "/bin"]


def test_only_listed_variables_of_the_scheduler_reach_a_task(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x" * 20, "ENVFIXTURES_ENV": "ef-1"}
    env = tasks.task_env({"env": {"MODE": "test"}}, _task(tmp_path), base=base)
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["ENVFIXTURES_ENV"] == "ef-1" and env["MODE"] == "test" and env["PORT0"] == "31001"
