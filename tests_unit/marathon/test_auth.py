"""The local Marathon API demands its credentials (Marathon's ``--http_credentials``) and JSON bodies for writes.

Against the real server process of ``conftest.LocalMarathon`` (credentials given in its environment); the
header checks of :mod:`envfixtures.drivers.marathon.auth` are unit-tested at the end.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from envfixtures.components.scheduler import StackScheduler
from envfixtures.core.config import PlatformConfig
from envfixtures.core.errors import ConfigError
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon import auth
from envfixtures.drivers.marathon.client import MarathonClient, NotFound, Unauthorized, facts_auth

from .conftest import LocalMarathon, pid_of_task

REALM = 'Basic realm="Mesosphere"'
UNAUTHORIZED = {"message": "Invalid username or password."}
APP = {"id": "/authtest/app", "cmd": "exec sleep 300", "instances": 0}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _app_exists(marathon: LocalMarathon, app_id: str) -> bool:
    try:
        marathon.client.get_app(app_id)
    except NotFound:
        return False
    return True


def _assert_401(resp: requests.Response) -> None:
    assert resp.status_code == 401, (resp.request.method, resp.request.url, resp.status_code, resp.text)
    assert resp.headers["WWW-Authenticate"] == REALM
    if resp.request.method != "HEAD":
        assert resp.json() == UNAUTHORIZED


@pytest.mark.integration
def test_every_request_without_credentials_is_401_and_changes_nothing(marathon: LocalMarathon) -> None:
    url = marathon.url
    calls = [
        ("GET", "/ping", None),
        ("HEAD", "/ping", None),
        ("GET", "/v2/info", None),
        ("GET", "/v2/apps", None),
        ("GET", "/v2/apps/authtest/app", None),
        ("GET", "/v2/nonexistent", None),  # 401 before routing, as Jetty's security handler answers first
        ("POST", "/v2/apps", APP),
        ("PUT", "/v2/apps/authtest/app", APP),
        ("PUT", "/v2/groups/authtest", {"apps": [APP]}),
        ("DELETE", "/v2/groups/authtest", None),
    ]
    for method, path, body in calls:
        _assert_401(requests.request(method, url + path, json=body, timeout=5))
    assert not _app_exists(marathon, APP["id"])
    with pytest.raises(Unauthorized) as err:
        MarathonClient(url, timeout=5).list_apps()
    assert err.value.status == 401 and err.value.message == UNAUTHORIZED["message"]


@pytest.mark.integration
def test_wrong_or_malformed_credentials_are_401(marathon: LocalMarathon) -> None:
    user, password = marathon.auth
    wrong = [
        _basic(user, password + "x"),
        _basic(user, password[:-1]),
        _basic(user + "x", password),
        _basic("", password),
        _basic(user, ""),
        {"Authorization": "Basic " + base64.b64encode(password.encode()).decode()},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Bearer " + base64.b64encode(f"{user}:{password}".encode()).decode()},
        {"Authorization": ""},
    ]
    for headers in wrong:
        _assert_401(requests.get(f"{marathon.url}/v2/apps", headers=headers, timeout=5))
        _assert_401(requests.post(f"{marathon.url}/v2/apps", json=APP, headers=headers, timeout=5))
    assert not _app_exists(marathon, APP["id"])
    # The right ones, in a header written by hand (scheme case-insensitive, as RFC 7235 says): answered.
    headers = {"Authorization": _basic(user, password)["Authorization"].replace("Basic", "basic")}
    assert requests.get(f"{marathon.url}/ping", headers=headers, timeout=5).text == "pong"


@pytest.mark.integration
def test_writes_take_json_only_a_text_plain_post_creates_nothing(marathon: LocalMarathon) -> None:
    """A page can POST text/plain cross-origin without a preflight: Marathon answers 415 and runs nothing."""
    http, url = marathon.http, f"{marathon.url}/v2/apps"
    body = '{"id": "/authtest/app", "cmd": "exec sleep 300", "instances": 0}'
    refused = [
        ("POST", url, {"Content-Type": "text/plain"}),
        ("POST", url, {"Content-Type": "text/plain; charset=utf-8"}),
        ("POST", url, {"Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", url, {"Content-Type": "multipart/form-data; boundary=x"}),
        ("POST", url, {}),  # a body without a Content-Type
        ("PUT", url + "/authtest/app", {"Content-Type": "text/plain"}),
        ("PATCH", url + "/authtest/app", {"Content-Type": "text/plain"}),
        ("PUT", f"{marathon.url}/v2/groups/authtest", {"Content-Type": "text/plain"}),
        ("POST", f"{marathon.url}/v2/groups", {"Content-Type": "text/plain"}),
    ]
    for method, target, headers in refused:
        resp = http.request(method, target, data=body.encode(), headers=headers, timeout=5)
        assert (resp.status_code, resp.json()) == (415, {"message": "Unsupported Media Type"}), (method, headers)
    assert not _app_exists(marathon, APP["id"])
    with pytest.raises(NotFound):
        marathon.client.get_group("/authtest")

    # JSON (with a charset) is taken; a write without a body (a restart) needs no Content-Type.
    resp = http.post(url, data=body.encode(), headers={"Content-Type": "application/json; charset=utf-8"}, timeout=5)
    assert resp.status_code == 201, resp.text
    assert http.post(f"{url}/authtest/app/restart?force=true", timeout=5).status_code == 200
    deleted = marathon.client.delete_app(APP["id"], force=True)
    marathon.client.wait_for_deployment(deleted.deployment_id, timeout=20)


@pytest.mark.integration
def test_the_password_is_in_no_command_line_and_reaches_no_task(marathon: LocalMarathon) -> None:
    user, password = marathon.auth
    cmdline = Path(f"/proc/{marathon.proc.pid}/cmdline").read_bytes()
    assert b"marathon.server" in cmdline and password.encode() not in cmdline
    # It is in the server's own environment (readable only by its user), and in no task's.
    assert f"{auth.CREDENTIALS_ENV}={user}:{password}".encode() in Path(
        f"/proc/{marathon.proc.pid}/environ"
    ).read_bytes().split(b"\0")
    app = {"id": "/authtest/env", "cmd": "exec sleep 300"}
    marathon.client.wait_for_deployment(marathon.client.update_app(app["id"], app).deployment_id, timeout=20)
    (task,) = marathon.client.app_tasks(app["id"])
    pid = wait_for(lambda: pid_of_task(task.id), what="the task's process", timeout=10)
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert environ and password.encode() not in environ and auth.CREDENTIALS_ENV.encode() not in environ
    marathon.client.wait_for_deployment(marathon.client.delete_app(app["id"], force=True).deployment_id, timeout=20)


@pytest.mark.integration
def test_the_client_from_the_scheduler_facts_sends_them(marathon: LocalMarathon) -> None:
    user, password = marathon.auth
    facts = {"url": marathon.url, "user": user, "password": password}
    assert facts_auth(facts) == (user, password)
    assert MarathonClient.from_facts(facts).ping()
    with pytest.raises(Unauthorized):
        MarathonClient.from_facts({**facts, "password": "********"}).ping()  # a forgotten (masked) password
    assert facts_auth({"url": marathon.url}) is None  # a Marathon without credentials (aws)


def test_the_server_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != auth.CREDENTIALS_ENV}
    argv = [sys.executable, "-m", "envfixtures.drivers.marathon.server", "--port", "0", "--workdir", str(tmp_path)]
    for extra in ({}, {auth.CREDENTIALS_ENV: "no-colon"}, {auth.CREDENTIALS_ENV: "user:"}):
        done = subprocess.run(argv, env={**env, **extra}, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and auth.CREDENTIALS_ENV in done.stderr, (extra, done.stderr)


def test_check_compares_the_decoded_credentials() -> None:
    expected = ("u-1", "p:with:colons")
    assert auth.check(auth.header(*expected), expected)
    assert auth.parse(auth.join(*expected)) == expected
    assert auth.check("BASIC " + auth.header(*expected).split(" ", 1)[1], expected)
    token = auth.header(*expected).split(" ", 1)[1]
    wrong = [auth.header("u-1", "p:with:colon"), auth.header("u-2", "p:with:colons"), "Digest " + token]
    for header in (None, "", "Basic", "Basic =", "Basic " + "A" * 7, *wrong):
        assert not auth.check(header, expected), header
    with pytest.raises(ValueError):
        auth.join("a:b", "p")
    with pytest.raises(ValueError):
        auth.parse(":p")


class _StackContext:
    """What StackScheduler.build reads of its BuildContext: the aws facts, its settings, secrets, progress."""

    def __init__(self, url: str, **settings: str) -> None:
        self._aws = {"endpoints": {"marathon_url": url}}
        self.settings = StackScheduler.Settings(marathon_timeout=5.0, **settings)
        self.secrets: list[str] = []
        self.platform = PlatformConfig("", {})

    def facts(self, name: str) -> dict:
        assert name == "aws"
        return self._aws

    def add_secret(self, label: str, value: str) -> None:
        self.secrets.append(value)

    def progress(self, message: str) -> None:
        pass


@pytest.mark.integration
def test_the_stack_scheduler_takes_credentials_from_settings_or_variables(
    marathon: LocalMarathon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On aws a Marathon may demand credentials: from the settings, or $ENVFIXTURES_MARATHON_USER / _PASSWORD."""
    user, password = marathon.auth
    monkeypatch.delenv("ENVFIXTURES_MARATHON_USER", raising=False)
    monkeypatch.delenv("ENVFIXTURES_MARATHON_PASSWORD", raising=False)
    with pytest.raises(Unauthorized):  # none given: this Marathon refuses, at once (not retried until the timeout)
        StackScheduler().build(_StackContext(marathon.url))
    with pytest.raises(ConfigError, match="ENVFIXTURES_MARATHON_PASSWORD"):
        StackScheduler().build(_StackContext(marathon.url, marathon_user=user))

    ctx = _StackContext(marathon.url, marathon_user=user, marathon_password=password)
    facts = StackScheduler().build(ctx)
    assert (facts["user"], facts["password"], facts.secret_keys) == (user, password, frozenset({"password"}))
    assert ctx.secrets == [password] and MarathonClient.from_facts(facts).ping()

    monkeypatch.setenv("ENVFIXTURES_MARATHON_USER", user)
    monkeypatch.setenv("ENVFIXTURES_MARATHON_PASSWORD", password)
    assert facts_auth(StackScheduler().build(_StackContext(marathon.url))) == (user, password)
