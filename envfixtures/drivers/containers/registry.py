"""A Docker registry (Debian's ``docker-registry``, distribution 2.8) on loopback, closed by a password.

The server is started by the ``images`` component like any other server of the environment; this module writes
its configuration (storage under the environment's directory, ``htpasswd`` authentication with a bcrypt hash,
listening on 127.0.0.1 only, no debug listener), says when it answers, and writes the credentials the way
each client reads them: podman's ``--authfile`` and, for tasks, the ``docker.tar.gz`` holding
``.docker/config.json`` that Marathon's documentation has apps fetch to pull from a private registry.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tarfile
from pathlib import Path

import bcrypt
import requests

from envfixtures.core.private import write_private

EXECUTABLE = "docker-registry"


def executable() -> str | None:
    return shutil.which(EXECUTABLE)


def configure(workdir: Path, port: int, user: str, password: str) -> Path:
    """Write the server's configuration and password file into ``workdir``; returns the configuration's path."""
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    htpasswd = workdir / "htpasswd"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    write_private(htpasswd, f"{user}:{hashed}\n")
    config = workdir / "config.yml"
    # JSON is YAML: no YAML writer needed.
    settings = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {"htpasswd": {"realm": "envfixtures", "path": str(htpasswd)}},
    }
    write_private(config, json.dumps(settings, indent=2) + "\n")
    return config


def argv(config: Path) -> list[str]:
    return [executable() or EXECUTABLE, "serve", str(config)]


def answers(address: str, user: str, password: str) -> bool:
    """The registry's API answers with those credentials (and refuses without)."""
    url = f"http://{address}/v2/"
    if requests.get(url, timeout=2).status_code != 401:
        return False
    return requests.get(url, auth=(user, password), timeout=2).status_code == 200


def docker_config(address: str, user: str, password: str) -> str:
    """The ``config.json`` of docker and podman (``--authfile``) with the registry's credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {address: {"auth": token}}}, indent=2) + "\n"


def write_auth_file(path: Path, address: str, user: str, password: str) -> Path:
    write_private(path, docker_config(address, user, password))
    return path


def write_docker_tarball(path: Path, address: str, user: str, password: str) -> Path:
    """``docker.tar.gz`` with ``.docker/config.json``, as Marathon's documentation has apps fetch it."""
    return write_config_tarball(path, docker_config(address, user, password))


def write_config_tarball(path: Path, config: str) -> Path:
    """``docker.tar.gz`` holding ``config`` as ``.docker/config.json``."""
    data = config.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(".docker")
        info.type, info.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(info)
        info = tarfile.TarInfo(".docker/config.json")
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
    write_private(path, buffer.getvalue())
    return path
