"""Where podman is missing, a docker app is refused when the environment is checked, before anything is built,
saying what is missing and how to install it, in the user's terms (it used to fail every launch until the timeout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envfixtures.core.config import PlatformConfig
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ConfigError

SHA = "0123456789abcdef0123456789abcdef01234567"
#: the project's own policy for apps (image tagged with the SHA, health checks...), not what this test is about
OUR_RULES = ["marathon-image-sha", "marathon-health", "marathon-resources", "marathon-secret-literal"]


def app(image: str | None) -> dict:
    body = {"id": "web", "cmd": "exec serve", "instances": 1, "cpus": 0.1, "mem": 64}
    if image:
        body["container"] = {"type": "DOCKER", "docker": {"image": image}}
    return body


def environment(tmp_path: Path, image: str | None) -> Environment:
    root = tmp_path / "root"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "web.json").write_text(json.dumps(app(image)))
    return Environment(
        name="ef-0123456-podm", sha=SHA, backend="local", root=root, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["scheduler", "apps"],
        config=PlatformConfig("", {"apps": {"templates": "apps"}, "rules": {"off": OUR_RULES}}),
    )  # fmt: skip


def test_a_docker_app_without_podman_is_refused_at_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    env = environment(tmp_path, "registry.example/web:" + SHA)
    with pytest.raises(ConfigError) as caught:
        env.check(["apps"])
    message = str(caught.value)
    assert "web.json" in message and "podman is not installed" in message, message
    assert "apt-get install -y podman runc docker-registry" in message, message
    assert "scripts/" not in message and "tox" not in message, "no script or command of envfixtures' own repository"
    assert env.journal.processes() == [], "nothing started"


def test_a_cmd_app_needs_no_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    environment(tmp_path, None).check(["apps"])  # no error: it runs as a process
