"""The local scheduler, a server the environment starts, gets a minimal environment: its credentials and what podman
reads, never the gate's whole environment (a Jenkins job's AWS keys, tokens of other tools)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envfixtures.core.config import PlatformConfig
from envfixtures.core.environment import Environment
from envfixtures.drivers.marathon import auth

CANARY = "canary-secret-of-the-gate-0123456789"


@pytest.mark.integration
def test_the_scheduler_gets_its_credentials_not_the_gates_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CANARY)
    monkeypatch.setenv("SOME_TOOL_TOKEN", CANARY)
    monkeypatch.setenv("ENVFIXTURES_PODMAN_ARGS", "--runtime runc --cgroup-manager cgroupfs --events-backend file")
    env = Environment(
        name="ef-0123456-senv", sha="0" * 40, backend="local", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["scheduler"], config=PlatformConfig("", {}),
    )  # fmt: skip
    env.description = env.describe()
    try:
        facts = env.ensure("scheduler")
        (server,) = env.journaled_processes("scheduler")
        environ = dict(
            line.split(b"=", 1) for line in Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0") if line
        )
        assert CANARY.encode() not in b"".join(environ.values()), sorted(environ)
        assert environ[auth.CREDENTIALS_ENV.encode()] == f"{facts['user']}:{facts['password']}".encode()
        assert b"ENVFIXTURES_PODMAN_ARGS" in environ and b"PATH" in environ
    finally:
        assert env.teardown() == []
