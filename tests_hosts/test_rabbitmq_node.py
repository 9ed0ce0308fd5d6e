"""templates/hosts/rabbitmq-node.sh run for real (issue 18): three nodes in a fresh Debian 12 root form one cluster.

The root comes from ``scripts/fresh-root.sh`` (the debootstrap cache of ``scripts/fresh-debian.sh``); the script
installs Debian's rabbitmq-server and awscli there itself, and reads the cookie and the administrator from a moto
server on this machine's loopback (the project's authenticated one), as a host reads them from Secrets Manager.
Discovery is the static node list (``EF_DISCOVERY=static:...``): the aws mode needs an auto-scaling group.

Run by ``make hosts-test`` / ``tox -e hosts`` (needs root: mount and chroot). That the script parses and passes
shellcheck is checked with every host script in ``tests_unit/test_hosts_boot.py``. ``FRESH_ROOT_APT_CACHE`` keeps the
downloaded packages for the next run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from envfixtures.core.ports import free_port
from envfixtures.core.processes import standalone_spawner
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.aws import moto_server

pytestmark = pytest.mark.hosts

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "templates" / "hosts" / "rabbitmq-node.sh"
FRESH_ROOT = REPO / "scripts" / "fresh-root.sh"
REGION = "us-east-1"
NODES = 3
INSTALL_AND_FORM_TIMEOUT = 1200  # apt downloads (awscli pulls ~100 packages) and three boots on two cores

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("chroot") is None,
    reason="runs the script in a chroot of a fresh Debian root: needs root (mount, chroot)",
)


@dataclass
class Secrets:
    url: str
    credentials: aws_clients.LocalCredentials
    cookie_arn: str
    admin_arn: str
    cookie: str
    admin_user: str
    admin_password: str


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secrets]:
    """A moto server on loopback, closed to all but its key, holding the stack's two secrets."""
    directory = tmp_path_factory.mktemp("moto")
    spawn = standalone_spawner(directory, f"ef-test-hosts-{uuid.uuid4().hex[:8]}", component="aws")
    credentials = aws_clients.LocalCredentials.new()
    url, process = moto_server.start(spawn, workdir=directory / "work", credentials=credentials)
    try:
        sm = aws_clients.make_client("secretsmanager", endpoint_url=url, region=REGION, credentials=credentials)
        cookie = secrets.token_hex(20)
        user, password = "ef-admin", secrets.token_urlsafe(24)
        cookie_arn = sm.create_secret(Name="broker-cookie", SecretString=cookie)["ARN"]
        admin = json.dumps({"username": user, "password": password})
        admin_arn = sm.create_secret(Name="broker-admin", SecretString=admin)["ARN"]
        yield Secrets(url, credentials, cookie_arn, admin_arn, cookie, user, password)
    finally:
        process.stop()


@dataclass
class Root:
    path: Path

    def run(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FRESH_ROOT), "run", str(self.path), *argv],
            env={"PATH": os.environ["PATH"], **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_gone(self, name: str | None = None, *, timeout: float) -> list[str]:
        """Wait until no process (named ``name``) runs in the root; return those still there at the end."""
        deadline = time.monotonic() + timeout
        while (left := [p for p in self.processes() if name is None or p.endswith(f":{name}")]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.5)
        return left

    def processes(self) -> list[str]:
        """``pid:name`` of every process whose root is this root."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.readlink(proc / "root") == str(self.path):
                    found.append(f"{proc.name}:{(proc / 'comm').read_text().strip()}")
            except OSError:
                continue
        return found


@pytest.fixture(scope="module")
def root() -> Iterator[Root]:
    """A fresh Debian 12 root; afterwards nothing of it runs and none of its mounts is left."""
    made = subprocess.run([str(FRESH_ROOT), "create"], capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stderr
    path = Path(made.stdout.strip().splitlines()[-1])
    shutil.copy(SCRIPT, path / "root" / SCRIPT.name)
    try:
        yield Root(path)
    finally:
        gone = subprocess.run([str(FRESH_ROOT), "destroy", str(path)], capture_output=True, text=True, timeout=120)
        assert gone.returncode == 0, gone.stderr
        assert gone.stdout.strip() == "0", f"destroy had to kill {gone.stdout.strip()} process(es) left in the root"
        assert not path.exists()
        assert str(path) not in Path("/proc/mounts").read_text(), "mounts of the root are left"


def node_env(aws: Secrets, index: int, ports: dict[str, int], names: list[str]) -> dict[str, str]:
    """The contract's environment for node ``index`` (1-based), with its own ports and config directory."""
    return {
        "EF_REGION": REGION,
        "EF_ADMIN_SECRET_ARN": aws.admin_arn,
        "EF_COOKIE_SECRET_ARN": aws.cookie_arn,
        "EF_NODE_COUNT": str(NODES),
        "EF_DISCOVERY": "static:" + ",".join(names),
        "EF_AWS_ENDPOINT_URL": aws.url,
        "AWS_ACCESS_KEY_ID": aws.credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": aws.credentials.secret_access_key,
        "EF_NODE_NAME": names[index - 1],
        "EF_LISTEN_ADDRESS": "127.0.0.1",
        "EF_AMQP_PORT": str(ports[f"amqp{index}"]),
        "EF_MANAGEMENT_PORT": str(ports[f"management{index}"]),
        "EF_DIST_PORT": str(ports[f"dist{index}"]),
        "EF_EPMD_PORT": str(ports["epmd"]),
        "EF_CONFIG_DIR": f"/etc/rabbitmq/node-{index}",
        "EF_START": "background",
    }


def status(url: str, user: str, password: str) -> int:
    """The management API's answer to ``GET /api/whoami`` as ``user``."""
    request = urllib.request.Request(f"{url}/api/whoami")
    request.add_unredirected_header("Authorization", _basic(user, password))
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ctl(root: Root, index: int, *args: str) -> subprocess.CompletedProcess:
    """rabbitmqctl against node ``index`` inside the root, as the rabbitmq user (the cookie's owner)."""
    conf = f"/etc/rabbitmq/node-{index}/rabbitmq-env.conf"
    argv = ["runuser", "-u", "rabbitmq", "--", "env", f"RABBITMQ_CONF_ENV_FILE={conf}"]
    return root.run(*argv, "/usr/lib/rabbitmq/bin/rabbitmqctl", *args)


@needs_root
def test_three_nodes_form_a_cluster_from_the_secrets(aws: Secrets, root: Root) -> None:
    ports = {f"{kind}{i}": free_port() for kind in ("amqp", "management", "dist") for i in range(1, NODES + 1)}
    ports["epmd"] = free_port()
    names = [f"rabbit-{i}@localhost" for i in range(1, NODES + 1)]
    script = f"/root/{SCRIPT.name}"
    started = time.monotonic()
    runs = [
        subprocess.Popen(
            [str(FRESH_ROOT), "run", str(root.path), "/bin/bash", script],
            env={"PATH": os.environ["PATH"], **node_env(aws, i, ports, names)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(1, NODES + 1)
    ]
    try:
        outputs = [run.communicate(timeout=INSTALL_AND_FORM_TIMEOUT) for run in runs]
        formed = time.monotonic() - started
        print(f"\nrabbitmq-node.sh: {NODES} nodes installed, started and clustered in {formed:.1f} s")
        for out, _ in outputs:
            print(out.strip().splitlines()[-1] if out.strip() else "(no output)")
        for run, (out, err) in zip(runs, outputs, strict=True):
            assert run.returncode == 0, f"rabbitmq-node.sh exited {run.returncode}: {err.strip()}"
            assert err.strip() == "", err
            for secret in (aws.cookie, aws.admin_password, aws.credentials.secret_access_key):
                assert secret not in out + err

        # one cluster of three running nodes, as the first node sees it
        cluster = ctl(root, 1, "cluster_status", "--formatter", "json")
        assert cluster.returncode == 0, cluster.stderr
        assert sorted(json.loads(cluster.stdout)["running_nodes"]) == names

        # the administrator of the secret authenticates against the management API of every node; guest does not
        for i in range(1, NODES + 1):
            url = f"http://127.0.0.1:{ports[f'management{i}']}"
            assert status(url, aws.admin_user, aws.admin_password) == 200
            assert status(url, aws.admin_user, aws.admin_password + "x") == 401
            assert status(url, "guest", "guest") == 401
        users = ctl(root, 1, "list_users", "--formatter", "json")
        assert [u["user"] for u in json.loads(users.stdout)] == [aws.admin_user]

        # the cookie is the secret's, 0400, the rabbitmq user's
        cookie = root.path / "var/lib/rabbitmq/.erlang.cookie"
        info = cookie.stat()
        rabbitmq_uid = next(
            int(line.split(":")[2])
            for line in (root.path / "etc/passwd").read_text().splitlines()
            if line.startswith("rabbitmq:")
        )
        assert (oct(info.st_mode & 0o777), info.st_uid) == ("0o400", rabbitmq_uid)
        assert cookie.read_text() == aws.cookie

        # a second run on a running node finds everything in place and says so
        again = root.run("/bin/bash", script, env=node_env(aws, 2, ports, names), timeout=300)
        assert again.returncode == 0, again.stderr
        assert "already runs" in again.stdout
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.communicate()
        stopped = [ctl(root, i, "stop") for i in range(1, NODES + 1)]
        # epmd refuses -kill while a node is registered: the nodes' VMs go first
        root.wait_gone("beam.smp", timeout=90)
        root.run("env", f"ERL_EPMD_PORT={ports['epmd']}", "epmd", "-kill")
    # everything the root started is stopped: no beam.smp, epmd or anything else left running in it
    assert [r.returncode for r in stopped] == [0] * NODES, [r.stderr for r in stopped]
    assert root.wait_gone(timeout=30) == []


@needs_root
def test_a_missing_secret_fails_in_one_line(aws: Secrets, root: Root) -> None:
    """An ARN the account does not hold: exit non-zero with one line naming it (the packages are installed by then
    or installed here)."""
    env = node_env(aws, 1, {"amqp1": 1, "management1": 1, "dist1": 1, "epmd": 1}, ["rabbit-1@localhost"])
    env["EF_COOKIE_SECRET_ARN"] = missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nope-AbCdEf"
    result = root.run("/bin/bash", f"/root/{SCRIPT.name}", env=env, timeout=INSTALL_AND_FORM_TIMEOUT)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rabbitmq-node: reading secret {missing}: "), lines[0]
    assert aws.credentials.secret_access_key not in result.stdout + result.stderr
