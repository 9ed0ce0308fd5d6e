"""A way into the stack's VPC: with ``aws_way_in=ssm`` the runner reaches a service of the VPC through an SSM
port-forwarding session (``aws ssm start-session --document-name AWS-StartPortForwardingSessionToRemoteHost``)
through one of the environment's instances, started as a journaled process of the component and stopped with it;
its facts point at the loopback port. Without Amazon's session-manager-plugin it is refused at configure time.

No SSM here: the ``aws`` on PATH is a stand-in that checks the command it is given and forwards the loopback port
itself, as the plugin does; the instance is found in a moto server standing in for the account."""

from __future__ import annotations

import http.server
import json
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_cloudformation import REFERENCE, ROOT, SHA, Moto, fresh, point_boto3_at

from envfixtures.components import aws as aws_component
from envfixtures.components.scheduler import StackScheduler
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ConfigError
from envfixtures.core.facts import Facts

__all__ = ["fresh"]

FAKE_AWS = """#!{python}
# Stands in for `aws ssm start-session` with the port-forwarding document: checks its command, forwards the port.
import json, socket, sys, threading
args = sys.argv[1:]
open({record!r}, "a").write(json.dumps(args) + "\\n")
assert args[:2] == ["ssm", "start-session"], args
opts = dict(zip(args[2::2], args[3::2]))
assert opts["--document-name"] == "AWS-StartPortForwardingSessionToRemoteHost", opts
params = json.loads(opts["--parameters"])
host, port, local = params["host"][0], int(params["portNumber"][0]), int(params["localPortNumber"][0])
server = socket.create_server(("127.0.0.1", local))
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    finally:
        b.close()
while True:
    client, _ = server.accept()
    remote = socket.create_connection((host, port))
    threading.Thread(target=pipe, args=(client, remote), daemon=True).start()
    threading.Thread(target=pipe, args=(remote, client), daemon=True).start()
"""


def fake_bin(tmp_path: Path, *, plugin: bool) -> tuple[Path, Path]:
    """A PATH directory with the stand-in ``aws`` (and a ``session-manager-plugin`` if ``plugin``); the file that
    records each command."""
    bin_dir, record = tmp_path / "bin", tmp_path / "aws-commands.jsonl"
    bin_dir.mkdir(exist_ok=True)
    names = {"aws": FAKE_AWS.format(python=sys.executable, record=str(record))}
    if plugin:
        names["session-manager-plugin"] = "#!/bin/sh\nexit 0\n"
    for name, text in names.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    return bin_dir, record


def scheduler_env(tmp_path: Path) -> Environment:
    return Environment(
        name="ef-0123456-ssm1", sha=SHA, backend="aws", root=ROOT, home=tmp_path / "home",
        settings={"quiet": "true", "aws_way_in": "ssm"}, components=["aws", "scheduler"], config=REFERENCE,
    )  # fmt: skip


@pytest.fixture
def service() -> Iterator[int]:
    """A service "inside the VPC": an HTTP server on loopback."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"inside-the-vpc"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def test_ssm_without_the_session_manager_plugin_is_refused_at_configure_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, _ = fake_bin(tmp_path, plugin=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_PROFILE", "ENVFIXTURES_MARATHON_USER",
                "ENVFIXTURES_MARATHON_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    env = scheduler_env(tmp_path)
    with pytest.raises(ConfigError) as caught:
        StackScheduler.check(env.context("scheduler", StackScheduler))
    message = str(caught.value)
    assert message.startswith("scheduler (aws): aws_way_in=ssm, and session-manager-plugin is not installed"), message
    assert "\n" not in message
    fake_bin(tmp_path, plugin=True)
    StackScheduler.check(env.context("scheduler", StackScheduler))  # with it: nothing refused


@pytest.mark.integration
def test_a_service_of_the_vpc_is_reached_through_a_journaled_ssm_session_on_loopback(
    fresh: Moto, service: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_boto3_at(fresh, monkeypatch)
    monkeypatch.setenv("SOME_TOOL_TOKEN", "not-for-the-session")
    bin_dir, record = fake_bin(tmp_path, plugin=True)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    env = scheduler_env(tmp_path)
    ec2 = fresh.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ids = {}
    for role in ("mesos-agent", "mesos-master"):  # the session goes through the component's own hosts
        tags = [{"Key": "EnvName", "Value": env.name}, {"Key": "Role", "Value": role}]
        ids[role] = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1,
                                      TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0][
            "InstanceId"
        ]  # fmt: skip
    env.description = env.describe()
    env.materialize()
    env._set_state(
        "aws", status="built", facts=Facts({"backend": "aws", "endpoint_url": None, "region": "us-east-1"}).to_json()
    )
    ctx = env.context("scheduler", StackScheduler)

    try:
        host, port = aws_component.reach(ctx, "127.0.0.1", service, what="unit", roles=("mesos-master",))

        assert host == "127.0.0.1" and port != service
        assert requests.get(f"http://{host}:{port}/", timeout=5).text == "inside-the-vpc"
        [command] = [json.loads(line) for line in record.read_text().splitlines()]
        opts = dict(zip(command[2::2], command[3::2], strict=False))
        assert opts["--target"] == ids["mesos-master"] and opts["--region"] == "us-east-1"
        assert json.loads(opts["--parameters"]) == {
            "host": ["127.0.0.1"], "portNumber": [str(service)], "localPortNumber": [str(port)]
        }  # fmt: skip
        assert len(ctx.processes()) == 1, "the session is a journaled process of the component"
        environ = Path(f"/proc/{ctx.processes()[0].pid}/environ").read_bytes().split(b"\0")
        names = {line.split(b"=", 1)[0] for line in environ}
        assert b"AWS_ACCESS_KEY_ID" in names, "the session signs with the runner's credentials"
        assert b"SOME_TOOL_TOKEN" not in names, "and gets nothing else of the gate's environment"

    finally:
        ctx.stop_processes()  # what the environment's teardown does (also when an assertion failed)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert ctx.processes() == []
