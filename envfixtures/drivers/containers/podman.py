"""The podman command line, as the local scheduler and the image build use it.

Written by hand over podman's CLI: podman's Python bindings (podman-py) talk to its REST service, a long-lived
socket service that would be one more server to start, secure and stop; the CLI is what Debian's package
ships. Every call passes the global options that make podman 4 work on the machines this runs on
(:data:`GLOBAL`): ``runc`` (Debian's ``crun`` refuses hybrid cgroup hierarchies), the ``cgroupfs`` manager (no
systemd session needed) and file events (no journald needed). ``ENVFIXTURES_PODMAN_ARGS`` replaces them.

Registry credentials travel in an auth file (``--authfile``, mode 0600), never on a command line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

#: the options given before every podman command
GLOBAL = ("--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file")

#: the label every container and image of an environment carries: its name (teardown and reap remove by it)
ENV_LABEL = "envfixtures.env"

#: how to install what is missing, for the messages that say so: in the user's terms (their machine's packages), never
#: a script of envfixtures' own repository, which a platform's checkout does not have
INSTALL_HINT = "install podman, runc and docker-registry: apt-get install -y podman runc docker-registry"

TIMEOUT = 600.0


class PodmanError(Exception):
    """A podman command failed; the message has its command (without secrets) and the tail of its stderr."""


def executable() -> str | None:
    """The podman binary, or ``None`` where it is not installed."""
    return shutil.which("podman")


def missing() -> str | None:
    """Why containers cannot run here (``None``: they can)."""
    if executable() is None:
        return f"podman is not installed ({INSTALL_HINT})"
    options = _global()
    runtime = options[options.index("--runtime") + 1] if "--runtime" in options[:-1] else None
    if runtime and not os.path.isabs(runtime) and shutil.which(runtime) is None:
        return f"the OCI runtime {runtime} is not installed ({INSTALL_HINT})"
    return None


def environ() -> dict[str, str]:
    """What podman reads of the gate's environment (a process that runs podman gets these, not the gate's whole
    environment): the rootless runtime directory, containers.conf overrides, our global options."""
    wanted = ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "ENVFIXTURES_PODMAN_ARGS")
    return {k: v for k, v in os.environ.items() if k in wanted or k.startswith("CONTAINERS_")}


def _global() -> list[str]:
    override = os.environ.get("ENVFIXTURES_PODMAN_ARGS")
    return shlex.split(override) if override is not None else list(GLOBAL)


def command(*args: str) -> list[str]:
    """The full argv of ``podman <global options> <args>``."""
    return [executable() or "podman", *_global(), *args]


def run(*args: str, timeout: float = TIMEOUT, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run ``podman args`` and return its stdout; :class:`PodmanError` when it exits non-zero (``check``)."""
    argv = command(*args)
    try:
        result = subprocess.run(  # noqa: S603 - podman with arguments of our own
            argv, capture_output=True, text=True, timeout=timeout, env=dict(env) if env is not None else None
        )
    except FileNotFoundError:
        raise PodmanError(f"podman is not installed ({INSTALL_HINT})") from None
    except subprocess.TimeoutExpired:
        raise PodmanError(f"podman {args[0]} did not finish in {timeout:.0f}s") from None
    if check and result.returncode != 0:
        shown = f"podman {' '.join(args[:1])} {_shown(args[1:])}"
        raise PodmanError(f"{shown} exited {result.returncode}: {tail(result.stderr)}")
    return result.stdout


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _shown(args: Sequence[str]) -> str:
    return " ".join(a for a in args if not a.startswith("-"))[:200]


def image_exists(ref: str) -> bool:
    return subprocess.run(command("image", "exists", ref), capture_output=True).returncode == 0  # noqa: S603


def labelled_containers(label_value: str, *, label: str = ENV_LABEL) -> list[str]:
    """The names of the containers (running or not) labelled ``label=label_value``."""
    if executable() is None:
        return []
    return sorted(run("ps", "-a", "--filter", f"label={label}={label_value}", "--format", "{{.Names}}").split())


def remove_containers(label_value: str, *, label: str = ENV_LABEL) -> list[str]:
    """Remove (killing first) every container labelled ``label=label_value``; returns their names."""
    names = labelled_containers(label_value, label=label)
    if names:
        run("rm", "--force", "--time", "0", "--ignore", *names, check=False)
    return names


def remove_images(label_value: str, *, label: str = ENV_LABEL) -> list[str]:
    """Untag and remove the images labelled ``label=label_value`` (layers other images share stay)."""
    if executable() is None:
        return []
    ids = sorted(set(run("images", "--filter", f"label={label}={label_value}", "--format", "{{.ID}}").split()))
    if ids:
        run("rmi", "--force", "--ignore", *ids, check=False)
    return ids
