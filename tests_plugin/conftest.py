"""Fixtures for testing the plugin itself with pytester, on the test components of envfixtures.testing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envfixtures.core import processes

pytest_plugins = ["pytester"]

SHA = "0123456789abcdef0123456789abcdef01234567"

CONFTEST = """
from envfixtures.core import registry
registry.register("sleeper", "envfixtures.testing:Sleeper")
registry.register("dependent", "envfixtures.testing:Dependent")
registry.register("templated", "envfixtures.testing:Templated")
"""

INI = """
[pytest]
env_components = sleeper dependent templated
env_settings =
    quiet=false
"""


class Project:
    """A pytester project using the test components, with helpers to run it and read its state."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = Path(pytester.path)
        pytester.makeconftest(CONFTEST)
        pytester.makeini(INI)
        (self.path / "templates").mkdir()
        (self.path / "templates" / "templated.json").write_text('{"ok": true}\n')
        #: the ``--env-sha`` of each run; None: none, the run builds git's HEAD. The project is no git checkout
        #: until :meth:`commit`: a run of ``SHA`` builds and verifies, but is not promotable.
        self.sha: str | None = SHA

    def args(self, *extra: str) -> list[str]:
        sha = [f"--env-sha={self.sha}"] if self.sha else []
        return ["-p", "no:cacheprovider", "-p", "no:benchmark", *sha, *extra]

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True, check=True).stdout.strip()

    def commit(self, message: str = "a commit") -> str:
        """Make the project a git checkout (state and reports ignored, as a platform's .gitignore does), commit all
        of it; returns HEAD."""
        if not (self.path / ".git").exists():
            self.git("init", "-q")
            (self.path / ".gitignore").write_text(".envfixtures/\nreports/\n__pycache__/\n")
        self.git("add", "-A")
        self.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
        return self.git("rev-parse", "HEAD")

    def run(self, *extra: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(*self.args(*extra), timeout=120)

    def popen(self, *extra: str) -> subprocess.Popen:
        """pytest in its own process group, as a terminal or Jenkins would run it."""
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", *self.args(*extra)],
            cwd=self.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def envs(self) -> list[Path]:
        root = self.path / ".envfixtures" / "envs"
        return sorted(root.iterdir()) if root.exists() else []

    def env(self) -> Path:
        envs = self.envs()
        assert len(envs) == 1, envs
        return envs[0]

    def meta(self, env: Path | None = None) -> dict:
        return json.loads(((env or self.env()) / "env.json").read_text())

    def journal(self, env: Path | None = None) -> list[dict]:
        path = (env or self.env()) / "resources.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def intents(self, key: str, env: Path | None = None) -> int:
        return sum(1 for r in self.journal(env) if r.get("key") == key and r["state"] == "intent")

    def started_pids(self, env: Path | None = None) -> list[int]:
        return [r["pid"] for r in self.journal(env) if r.get("state") == "started"]

    def alive(self, env: Path | None = None) -> list[int]:
        """Processes of the environment still alive: journaled ones, and any carrying its marker."""
        env = env or self.env()
        journaled = [
            r["pid"]
            for r in self.journal(env)
            if r.get("state") == "started"
            and processes.start_time(r["pid"]) == r["start_time"]
            and processes.group_members(r["pid"])
        ]
        return sorted(set(journaled) | set(processes.find_marked(env.name)))

    def wait_for_started(self, key: str, timeout: float = 60) -> Path:
        """Wait until the journal of the (only) environment says process ``key`` was started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for env in self.envs():
                if any(r.get("key") == key and r["state"] == "started" for r in self.journal(env)):
                    return env
            time.sleep(0.1)
        raise AssertionError(f"process {key!r} was not journaled as started within {timeout}s")


@pytest.fixture
def project(pytester: pytest.Pytester):
    proj = Project(pytester)
    yield proj
    # Whatever a test of the plugin leaves behind is killed here, so one failure cannot leak processes.
    for env in proj.envs():
        leftovers = processes.find_marked(env.name)
        if leftovers:
            processes.kill_pids(leftovers, marker=env.name)


def interrupt(proc: subprocess.Popen, sig: int, *, group: bool) -> str:
    """Send ``sig`` to pytest (or its whole process group) and return its output once it exited."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=90)
    return out.decode(errors="replace")


__all__ = ["SHA", "Project", "interrupt", "signal"]
