"""A kept environment on a shared agent, tried by another local user (``nobody``, through ``setpriv``).

The other user gets 401 or 403 from every local API of the environment — Marathon, the AWS endpoint, RabbitMQ's
management API, the image registry — for reads and writes alike, runs no command through Marathon, reads no file of the
environment's state, and finds no generated secret in any process's command line or environment it can read, nor in
any file it can read where the container runtime and temporary files live, while the platform's apps run as podman
containers behind the ``api`` proxy. (The proxy itself fronts the app under test, as the stack's load balancer does:
it answers whoever reaches it, and passes none of the environment's credentials on.)
The probe is a stdlib-only script run by Debian's ``/usr/bin/python3`` (the gate's interpreter may live in a
private home); it prints counts and statuses, never a secret.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from envfixtures.core import config, redaction
from envfixtures.core.environment import Environment
from envfixtures.core.processes import find_marked
from envfixtures.drivers.containers import podman
from envfixtures.drivers.marathon.client import MarathonClient

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
#: where podman (as root) keeps its containers' configuration, state and logs, runc's state, and temporary files
CONTAINER_STATE_AND_TEMPORARY_FILES = ["/var/lib/containers", "/run/containers", "/run/libpod", "/run/runc", "/tmp",
                                       "/var/tmp", "/dev/shm"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not Path(PYTHON).exists(),
    reason="needs root, setpriv and /usr/bin/python3 to act as another local user",
)

PROBE = r"""
import json, os, stat, sys, urllib.request, urllib.error

job = json.load(sys.stdin)
out = {}

def status(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return f"no answer: {type(exc).__name__}"

app = json.dumps({"id": "/intruder", "cmd": "touch " + job["marker"], "instances": 1}).encode()
out["marathon"] = {
    "GET /v2/apps": status("GET", job["marathon"] + "/v2/apps"),
    "GET /v2/info": status("GET", job["marathon"] + "/v2/info"),
    "POST /v2/apps json": status("POST", job["marathon"] + "/v2/apps", app, {"Content-Type": "application/json"}),
    "POST /v2/apps text": status("POST", job["marathon"] + "/v2/apps", app, {"Content-Type": "text/plain"}),
}
out["aws"] = {
    "ListBuckets": status("GET", job["aws"] + "/"),
    "DescribeStacks": status("POST", job["aws"] + "/", b"Action=DescribeStacks&Version=2010-05-15",
                             {"Content-Type": "application/x-www-form-urlencoded"}),
    "PutObject": status("PUT", job["aws"] + "/" + job["bucket"] + "/intruder.tar.gz", b"x"),
    "moto-api reset": status("POST", job["aws"] + "/moto-api/reset"),
}
out["registry"] = {
    "GET /v2/": status("GET", job["registry"] + "/v2/"),
    "GET /v2/_catalog": status("GET", job["registry"] + "/v2/_catalog"),
    "GET manifest": status("GET", job["registry"] + "/v2/" + job["image"] + "/manifests/" + job["tag"]),
    "POST blob upload": status("POST", job["registry"] + "/v2/" + job["image"] + "/blobs/uploads/"),
}
out["rabbitmq"] = {
    "GET /api/overview": status("GET", job["management"] + "/api/overview"),
    "PUT /api/vhosts/intruder": status("PUT", job["management"] + "/api/vhosts/intruder", b"{}",
                                       {"Content-Type": "application/json"}),
}
readable, listed = [], []
for top, dirs, files in os.walk(job["state"]):
    listed.append(top)
    for name in files:
        try:
            with open(os.path.join(top, name), "rb") as fh:
                fh.read(1)
            readable.append(os.path.relpath(os.path.join(top, name), job["state"]))
        except OSError:
            pass
out["state"] = {"listed": len(listed), "readable": readable}
found, environs = [], 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    for kind in ("cmdline", "environ"):
        try:
            with open(f"/proc/{pid}/{kind}", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        environs += kind == "environ"
        found += [f"{pid}/{kind}" for secret in job["secrets"] if secret.encode() in data]
out["processes"] = {"secrets_found": found, "environs_read": environs}
holding, read = [], 0
for root in job["elsewhere"]:
    for top, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(top, name)
            try:  # regular files only (a FIFO would block), opened without following a link
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or info.st_size > 4 << 20:
                    continue
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            read += 1
            holding += [path for secret in job["secrets"] if secret.encode() in data]
out["elsewhere"] = {"holding": holding, "read": read}
out["api"] = {"GET /v2/apps through the proxy": status("GET", job["api"] + "/v2/apps")}
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environment]:
    """A kept environment whose state home another user can reach (a world-traversable /tmp directory): only the
    environment's own protections stand between the two."""
    base = Path(tempfile.mkdtemp(prefix="envfixtures-shared-", dir="/tmp"))
    base.chmod(0o755)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    env = Environment(
        name="ef-0123456-shrd", sha=sha.strip(), backend="local", root=ROOT, home=base / ".envfixtures",
        settings={"broker_nodes": "1", "quiet": "true"}, config=config.find(ROOT),
        components=["aws", "images", "database", "broker", "topology", "scheduler", "apps", "api"],
    )  # fmt: skip
    env.description = env.describe(kept=True)
    try:
        for component in ("topology", "scheduler", "aws", "database", "images", "apps", "api"):
            env.ensure(component)
        env.update_meta(kept=True, status="kept")
        yield env
    finally:
        env.teardown()
        env.forget_secrets()
        assert find_marked(env.name) == []
        shutil.rmtree(base, ignore_errors=True)


def probe(env: Environment, marker: Path) -> dict:
    aws, broker, scheduler, images = env.facts("aws"), env.facts("broker"), env.facts("scheduler"), env.facts("images")
    ((image, ref),) = images["images"].items()
    job = {
        "registry": f"http://{images['registry']}",
        "image": image,
        "tag": ref.rpartition(":")[2],
        "marathon": scheduler["url"],
        "aws": aws["endpoint_url"],
        "bucket": aws["endpoints"]["artifact_bucket"],
        "management": broker["management_url"],
        "state": str(env.home),
        "marker": str(marker),
        "secrets": [],
        "api": env.facts("api")["base_url"],
        "elsewhere": CONTAINER_STATE_AND_TEMPORARY_FILES,
    }
    secrets = env.secret_values()
    assert len(secrets) >= 6, "the generated passwords of the broker, database, topology, scheduler, aws, registry"
    # each secret as it is, and as it shows in base64 (a docker config.json's auth, a Basic Authorization header)
    job["secrets"] = secrets + sorted(form for secret in secrets for form in redaction.base64_forms(secret))
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env", PYTHON, "-c", PROBE],
        input=json.dumps(job), capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_another_local_user_can_do_nothing_with_a_kept_environment(kept: Environment, tmp_path: Path) -> None:
    marker = Path(tempfile.mkdtemp(prefix="envfixtures-probe-", dir="/tmp")) / "owned"
    marker.parent.chmod(0o777)  # the intruder could write it, if a command of theirs ran
    readable = marker.parent / "readable"  # one file the probe can read wherever it runs (a fresh root has no other)
    readable.write_text("no secret here\n")
    readable.chmod(0o644)
    try:
        seen = probe(kept, marker)
        for api in ("marathon", "aws", "rabbitmq", "registry"):
            refused = {call: code for call, code in seen[api].items() if code not in (401, 403)}
            assert not refused, f"{api} answered another user: {refused}"
        assert seen["state"]["readable"] == [], "files of the environment readable by another user"
        assert seen["state"]["listed"] <= 1, "no directory below the state home can be listed"
        assert seen["processes"]["secrets_found"] == [], "a secret readable in a process's command line or environ"
        assert seen["elsewhere"]["holding"] == [], "a secret in a file of the container runtime or a temporary file"
        assert seen["elsewhere"]["read"] > 0, "the probe read files there (this test's readable file at least)"
        assert seen["api"]["GET /v2/apps through the proxy"] != 200, "the proxy passed Marathon's API on"
        assert not marker.exists(), "a command of the other user ran"
        apps = MarathonClient.from_facts(kept.facts("scheduler")).list_apps()
        assert sorted(a.id for a in apps) == sorted(kept.facts("apps")["app_ids"]), "the other user's app was created"
        assert podman.labelled_containers(kept.name), "the apps ran as containers while the other user looked"
        overview = requests.get(
            f"{kept.facts('broker')['management_url']}/api/vhosts",
            auth=(kept.facts("broker")["admin_user"], kept.facts("broker")["admin_password"]),
            timeout=10,
        )
        assert "intruder" not in {v["name"] for v in overview.json()}
    finally:
        shutil.rmtree(marker.parent, ignore_errors=True)
