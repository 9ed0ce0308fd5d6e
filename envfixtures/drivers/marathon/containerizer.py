"""Docker apps of the local scheduler, run with podman the way Mesos' docker containerizer runs them.

- The image is pulled before launch (after the fetch, so a ``docker.tar.gz`` fetched into the sandbox gives the
  credentials, as Marathon documents for private registries); a pull that fails fails the task at once with
  podman's reason. A registry on loopback is spoken to over plain HTTP (no TLS on 127.0.0.1).
- ``cmd`` runs as ``/bin/sh -c cmd`` in place of the image's entrypoint; ``args`` are the arguments to the image's
  entrypoint; neither: the image's own entrypoint and command (Docker's semantics, as Mesos applies them).
- ``HOST`` networking shares the machine's network (ports from ``portDefinitions``, ``$PORT0``...); ``BRIDGE``
  (``container/bridge``) maps each ``portMappings`` entry to ``127.0.0.1:<host port>`` (a port from the
  environment's allocator when ``hostPort`` is 0), never to another address.
- The sandbox is mounted at ``/mnt/mesos/sandbox`` (``$MESOS_SANDBOX``); ``container.volumes`` are bind mounts
  whose ``hostPath`` is inside the sandbox (relative) or inside the environment's directory (absolute).
- The environment reaches the container through ``-e NAME`` (values from podman's own environment, never on
  its command line, where ``ps`` would show secrets).
- Each container carries the environment's name as a label: teardown and reap remove what a killed scheduler
  left (:func:`envfixtures.drivers.containers.podman.remove_containers`).

Where it falls short of Mesos: no ``cpus``/``mem`` limits are applied, no ``USER``/``container`` networks, no
persistent or external volumes (refused), and ``forcePullImage`` is implied (every launch pulls).
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envfixtures.drivers.containers import images, podman
from envfixtures.drivers.marathon.validation import network_mode

SANDBOX_IN_CONTAINER = "/mnt/mesos/sandbox"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

#: variables of the task's environment that belong to the agent, not to the container
AGENT_ONLY = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "HOME")


class LaunchError(Exception):
    """The container cannot be launched as defined (a volume outside the sandbox, a network mode not run here)."""


def image_of(app: Mapping[str, Any]) -> str | None:
    """The app's image, if it runs one (a DOCKER container, or a MESOS one with a docker image)."""
    container = app.get("container") or {}
    docker = container.get("docker") or {}
    return docker.get("image") if container.get("type", "DOCKER") in ("DOCKER", "MESOS") else None


def bridged(app: Mapping[str, Any]) -> bool:
    return network_mode(app) == "container/bridge"


def port_mappings(app: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    container = app.get("container") or {}
    mappings = container.get("portMappings")
    if mappings is None:
        mappings = (container.get("docker") or {}).get("portMappings")
    return list(mappings or [])


def mapping_env(app: Mapping[str, Any], ports: Sequence[int]) -> dict[str, str]:
    """Marathon's variables for a bridged task: ``PORT_<containerPort>`` and ``PORT_<NAME>`` = the host port."""
    env = {}
    for i, mapping in enumerate(port_mappings(app)):
        if i < len(ports):
            if mapping.get("containerPort"):
                env[f"PORT_{mapping['containerPort']}"] = str(ports[i])
            if mapping.get("name"):
                env[f"PORT_{mapping['name'].upper().replace('-', '_')}"] = str(ports[i])
    return env


def container_name(task_id: str) -> str:
    return f"mesos-{task_id}"


def pull(image: str, sandbox: Path) -> None:
    """Pull ``image`` with the credentials fetched into the sandbox (``.docker/config.json``), if any."""
    authfile = sandbox / ".docker" / "config.json"
    loopback = image.split("/", 1)[0].rsplit(":", 1)[0] in LOOPBACK_HOSTS
    images.pull(image, authfile if authfile.is_file() else None, tls_verify=not loopback)


def argv(
    app: Mapping[str, Any],
    *,
    task_id: str,
    sandbox: Path,
    env: Mapping[str, str],
    ports: Sequence[int],
    env_name: str,
    roots: Sequence[Path] = (),
) -> list[str]:
    """The ``podman run`` command of a task (attached: it exits with the container's status)."""
    image = image_of(app)
    if not image:
        raise LaunchError("the app has no container.docker.image")
    args = [
        "run", "--rm", "--name", container_name(task_id), "--pull", "never", "--log-driver", "k8s-file",
        "--label", f"{podman.ENV_LABEL}={env_name}", "--label", f"envfixtures.task={task_id}",
        *ulimit_args(),
        "--volume", f"{sandbox}:{SANDBOX_IN_CONTAINER}",
    ]  # fmt: skip
    mode = network_mode(app)
    if mode == "host":
        args += ["--network", "host"]
    elif mode == "container/bridge":
        args += ["--network", "bridge"]
        for mapping, host_port in zip(port_mappings(app), ports, strict=False):
            container_port = int(mapping.get("containerPort") or host_port)
            for protocol in str(mapping.get("protocol") or "tcp").split(","):
                args += ["--publish", f"127.0.0.1:{host_port}:{container_port}/{protocol}"]
    else:
        raise LaunchError(f"network mode {mode!r} is not run by the local scheduler (HOST and BRIDGE are)")
    for volume in (app.get("container") or {}).get("volumes") or []:
        args += ["--volume", _volume(volume, sandbox, roots)]
    for name in env:
        args += ["--env", name]
    if app.get("cmd"):
        args += ["--entrypoint", "/bin/sh", image, "-c", str(app["cmd"])]
    else:
        args += [image, *[str(a) for a in app.get("args") or []]]
    return podman.command(*args)


def container_env(task_env: Mapping[str, str]) -> dict[str, str]:
    """The task's environment as the container sees it: the agent's own variables left out, the sandbox where
    it is mounted."""
    env = {k: v for k, v in task_env.items() if k not in AGENT_ONLY and k != "ENVFIXTURES_ENV"}
    env["MESOS_SANDBOX"] = env["MESOS_DIRECTORY"] = SANDBOX_IN_CONTAINER
    return env


def client_env(task_env: Mapping[str, str]) -> dict[str, str]:
    """podman's own environment: what podman needs (``PATH``, the marker), and the values its ``-e NAME`` read."""
    env = container_env(task_env)
    for name in ("PATH", "LANG", "ENVFIXTURES_ENV"):
        value = task_env.get(name) or os.environ.get(name)
        if value:
            env[name] = value
    return env


def remove(task_id: str) -> subprocess.Popen:
    """Remove the task's container (SIGKILL, no grace), without waiting: the caller reaps the returned process."""
    return subprocess.Popen(  # noqa: S603 - podman with arguments of our own
        podman.command("rm", "--force", "--time", "0", "--ignore", container_name(task_id)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ulimit_args() -> list[str]:
    """The scheduler's own open-files limits and a process limit runc accepts, given explicitly: podman's defaults
    (nofile 1048576) are refused here ("error setting rlimit ... operation not permitted", measured)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = _nproc_limit()
    return ["--ulimit", f"nofile={_limit(soft)}:{_limit(hard)}", "--ulimit", f"nproc={nproc}:{nproc}"]


def _nproc_limit() -> int:
    """The scheduler's own RLIMIT_NPROC, at most ``kernel.pid_max``: podman's default and higher values are refused
    by runc ("error setting rlimit type 6: operation not permitted", measured on this project's machines)."""
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768
    return pid_max if hard == resource.RLIM_INFINITY else min(hard, pid_max)


def _limit(value: int) -> str:
    return "-1" if value == resource.RLIM_INFINITY else str(value)


def _volume(volume: Mapping[str, Any], sandbox: Path, roots: Sequence[Path]) -> str:
    if volume.get("persistent") or volume.get("external") or volume.get("secret"):
        raise LaunchError(f"volume {volume.get('containerPath')}: persistent, external and secret volumes are not run")
    host_path, container_path = volume.get("hostPath"), volume.get("containerPath")
    if not host_path or not container_path:
        raise LaunchError(f"volume {volume!r}: a bind mount needs hostPath and containerPath")
    path = Path(host_path) if os.path.isabs(host_path) else sandbox / host_path
    real = os.path.realpath(path)
    allowed = [os.path.realpath(r) for r in (sandbox, *roots)]
    if not any(real == r or real.startswith(r + os.sep) for r in allowed):
        raise LaunchError(f"volume hostPath {host_path!r} is outside the task's sandbox and the environment's dir")
    os.makedirs(real, exist_ok=True)
    mode = "ro" if str(volume.get("mode", "RW")).upper() == "RO" else "rw"
    return f"{real}:{container_path}:{mode}"
