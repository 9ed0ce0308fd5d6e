"""Task processes of the local scheduler: sandbox, fetch, environment, launch, kill — what a Mesos agent does.

A task runs ``/bin/sh -c <cmd>`` (or ``args`` directly) in a sandbox directory of its own (its fetches confined
to it, digests checked: :func:`fetch_all`), in its own session (so it is stopped by process group), with
``stdout`` / ``stderr`` files in the sandbox like Mesos. A docker app's task is its ``podman run`` (attached:
it exits with the container's status; :mod:`envfixtures.drivers.marathon.containerizer`).
Its leader gets ``PR_SET_PDEATHSIG``: if the scheduler dies, even by SIGKILL, the kernel kills it (a container
outlives its ``podman run``: teardown and reap remove it by its label).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from envfixtures.core.archives import UnsafeArchive, extract_tar, extract_zip
from envfixtures.drivers.marathon import containerizer

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

#: Variables of the scheduler's own environment that tasks inherit (a Mesos agent passes few of its own).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "ENVFIXTURES_ENV", "PYTHONPATH", "VIRTUAL_ENV")

#: Mesos' fetcher extracts these archive types when ``extract`` is true.
ARCHIVES = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip")

DEFAULT_KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL when the app sets no taskKillGracePeriodSeconds

_PR_SET_PDEATHSIG = 1


class FetchError(Exception):
    """A fetch URI could not be downloaded or extracted into the sandbox."""


def new_task_id(app_id: str) -> tuple[str, str]:
    """A Marathon-style task id and its instance id: ``group_app.<uuid>`` / ``group_app.marathon-<uuid>``."""
    base = app_id.strip("/").replace("/", "_")
    uid = str(uuid.uuid1())
    return f"{base}.{uid}", f"{base}.marathon-{uid}"


@dataclass
class TaskRun:
    """One task: its identity, ports, sandbox, process and Mesos-like state."""

    id: str
    instance_id: str
    app_id: str
    version: str  # the app's version when launched (Marathon's task.version)
    config_version: str  # the app's versionInfo.lastConfigChangeAt when launched
    ports: list[int]
    sandbox: Path
    staged_at: float  # epoch
    state: str = "TASK_STAGING"
    started_at: float | None = None  # epoch, when the command started
    started_mono: float | None = None
    proc: subprocess.Popen | None = None
    kill_reason: str | None = None  # set when the scheduler decided to kill it
    kill_deadline: float | None = None  # monotonic time of SIGKILL escalation
    health: list[Any] = field(default_factory=list)  # health.HealthState per health check
    env: dict[str, str] = field(default_factory=dict)
    fetch_done: bool = False
    fetch_error: str | None = None  # why it could not be launched (a fetch, a pull)
    image: str | None = None  # a docker app's image (the task runs as a container)

    @property
    def alive(self) -> bool:
        return self.state in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING")


def task_env(app: Mapping[str, Any], task: TaskRun, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Marathon/Mesos give a task, then the app's own ``env`` (string values)."""
    source = os.environ if base is None else base
    env = {k: source[k] for k in INHERITED if k in source}
    # Locally a task runs on the gate's own interpreter, whatever shell started the gate (an activated venv,
    # tox, or the console script from a plain shell): its bin directory comes first on PATH, as on an agent
    # whose image provides the runtime.
    env["PATH"] = os.pathsep.join(p for p in (os.path.dirname(sys.executable), env.get("PATH")) if p)
    ports = task.ports
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(map(str, ports))
    if containerizer.bridged(app):
        env.update(containerizer.mapping_env(app, ports))
    else:
        for i, pd in enumerate(app.get("portDefinitions") or []):
            if i < len(ports) and pd.get("name"):
                env[f"PORT_{pd['name'].upper().replace('-', '_')}"] = str(ports[i])
    labels = app.get("labels") or {}
    env.update(
        HOST=HOST,
        MARATHON_APP_ID=task.app_id,
        MARATHON_APP_VERSION=task.version,
        MARATHON_APP_RESOURCE_CPUS=str(app.get("cpus", 1)),
        MARATHON_APP_RESOURCE_MEM=str(app.get("mem", 128)),
        MARATHON_APP_RESOURCE_DISK=str(app.get("disk", 0)),
        MARATHON_APP_RESOURCE_GPUS=str(app.get("gpus", 0)),
        MARATHON_APP_LABELS=" ".join(labels),
        MESOS_TASK_ID=task.id,
        MESOS_SANDBOX=str(task.sandbox),
        MESOS_DIRECTORY=str(task.sandbox),
        HOME=str(task.sandbox),
    )
    for name, value in labels.items():
        env[f"MARATHON_APP_LABEL_{name.upper()}"] = str(value)
    image = ((app.get("container") or {}).get("docker") or {}).get("image")
    if image:
        env["MARATHON_APP_DOCKER_IMAGE"] = image
    for name, value in (app.get("env") or {}).items():
        if isinstance(value, str):  # {"secret": ...} needs a secret store, which the local scheduler lacks
            env[name] = value
    return env


def fetch_all(app: Mapping[str, Any], sandbox: Path, *, timeout: float = 60.0, file_roots: Sequence[Path] = ()) -> None:
    """Download the app's ``fetch`` (and legacy ``uris``) into ``sandbox`` like the Mesos fetcher, and stricter:

    - a URI whose fragment carries ``sha256=<hex>`` must download to exactly that digest (the fragment is never
      sent, so presigned URLs and a real Mesos fetcher, which ignores it, are unaffected); a mismatch is refused
      and the file removed before anything is extracted or run;
    - ``destPath`` stays inside the sandbox: absolute, ``..`` and paths that a symlink leads out of are refused;
    - ``file://`` URIs (and bare paths) are read only from inside ``file_roots``, the environment's own
      directories (none given: every local file is refused).

    Raises :class:`FetchError` saying which rule a URI broke; nothing is written outside the sandbox."""
    items = [dict(f) for f in app.get("fetch") or []] + [{"uri": u} for u in app.get("uris") or []]
    for item in items:
        uri = item["uri"]
        parsed = urllib.parse.urlparse(uri)
        shown = _shown(parsed)
        expected = _expected_sha256(parsed.fragment, shown)
        name = item.get("destPath") or os.path.basename(parsed.path) or "download"
        dest = _destination(sandbox, name)
        try:
            if parsed.scheme in ("http", "https", "ftp"):
                with urllib.request.urlopen(uri, timeout=timeout) as resp:  # noqa: S310 - the fragment is not sent
                    digest = _write_new(dest, resp)
            elif parsed.scheme in ("file", ""):
                source = _local_source(parsed, shown, file_roots)
                with open(source, "rb", opener=_open_no_follow) as resp:
                    if not stat.S_ISREG(os.fstat(resp.fileno()).st_mode):
                        raise FetchError(f"failed to fetch {shown}: not a regular file")
                    digest = _write_new(dest, resp)
            else:
                raise FetchError(f"unsupported URI scheme {parsed.scheme!r} in {shown}")
        except (OSError, ValueError) as exc:
            raise FetchError(f"failed to fetch {shown}: {exc}") from exc
        if expected is not None and digest != expected:
            dest.unlink(missing_ok=True)
            raise FetchError(
                f"{shown}: sha256 mismatch: the URI names {expected}, the download is {digest}; refused (not "
                "extracted, not run)"
            )
        if item.get("executable", False):
            dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        elif item.get("extract", True) and dest.name.endswith(ARCHIVES):
            _extract(dest, sandbox)


def _shown(parsed: urllib.parse.ParseResult) -> str:
    """The URI for a message: no query (a presigned URL's signature), no fragment."""
    return urllib.parse.urlunparse(parsed._replace(query="…" if parsed.query else "", fragment=""))


def _expected_sha256(fragment: str, shown: str) -> str | None:
    """The digest a ``#sha256=<hex>`` fragment names (``None`` without one)."""
    values = urllib.parse.parse_qs(fragment, keep_blank_values=True).get("sha256") if fragment else None
    if not values:
        return None
    value = values[-1].strip().lower()
    if len(values) != 1 or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise FetchError(f"{shown}: the fragment's sha256 is not one hex SHA-256 digest; refused")
    return value


def _inside(path: str, root: str) -> bool:
    return path != root and os.path.commonpath([path, root]) == root


def _destination(sandbox: Path, dest_path: str) -> Path:
    """Where ``dest_path`` lands in ``sandbox``, its directories made; refused when it would land outside."""
    relative = PurePosixPath(dest_path)
    where = f"destPath {dest_path!r}"
    if relative.is_absolute():
        raise FetchError(f"{where} is an absolute path: a fetch writes only inside the task's sandbox")
    if ".." in relative.parts:
        raise FetchError(f"{where} goes up ('..'): a fetch writes only inside the task's sandbox")
    if not relative.parts or relative.name in ("", "."):
        raise FetchError(f"{where} names no file in the task's sandbox")
    root = os.path.realpath(sandbox)
    parent = os.path.realpath(os.path.join(root, *relative.parts[:-1]))
    if parent != root and not _inside(parent, root):
        raise FetchError(f"{where} leads out of the task's sandbox through a symlink; refused")
    os.makedirs(parent, exist_ok=True)
    target = os.path.realpath(os.path.join(parent, relative.name))
    if not _inside(target, root):
        raise FetchError(f"{where} leads out of the task's sandbox through a symlink; refused")
    return Path(target)


def _local_source(parsed: urllib.parse.ParseResult, shown: str, roots: Sequence[Path]) -> str:
    """The real path of a ``file://`` URI (or bare path), if it is inside one of ``roots``."""
    if parsed.netloc not in ("", "localhost"):
        raise FetchError(f"{shown}: a file:// URI of another host is refused")
    path = urllib.parse.unquote(parsed.path)
    if not os.path.isabs(path):
        raise FetchError(f"{shown}: a local path must be absolute")
    real = os.path.realpath(path)
    if not any(_inside(real, os.path.realpath(root)) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        raise FetchError(f"{shown}: file:// is refused outside the environment's own directories (allowed: {allowed})")
    return real


def _open_no_follow(path: str, flags: int) -> int:
    # O_NONBLOCK: a FIFO would block the open until a writer came; it is refused as not a regular file instead
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


def _write_new(dest: Path, source: Any) -> str:
    """Copy ``source`` into ``dest`` (never through a symlink) and return the sha256 of what was written."""
    digest = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _extract(archive: Path, into: Path) -> None:
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                extract_zip(zf, into)
        else:
            with tarfile.open(archive) as tf:
                extract_tar(tf, into)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, UnsafeArchive) as exc:
        raise FetchError(f"failed to extract {archive.name}: {exc}") from exc


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL this task when its parent thread (the scheduler loop) dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def launch(
    app: Mapping[str, Any], task: TaskRun, *, env_name: str = "", roots: Sequence[Path] = ()
) -> subprocess.Popen:
    """Start the task's command (or its container: ``env_name`` labels it, ``roots`` bound its volumes) in its
    sandbox and session. Must run on the long-lived loop thread: PR_SET_PDEATHSIG fires when the *thread* that
    forked the task exits. :class:`~envfixtures.drivers.marathon.containerizer.LaunchError` for a container that
    cannot run as defined."""
    env = task.env
    if task.image:
        argv = containerizer.argv(
            app, task_id=task.id, sandbox=task.sandbox, env=containerizer.container_env(task.env), ports=task.ports,
            env_name=env_name, roots=roots,
        )  # fmt: skip
        env = containerizer.client_env(task.env)
    elif app.get("cmd"):
        argv = ["/bin/sh", "-c", app["cmd"]]
    else:
        argv = [str(a) for a in app.get("args") or []]
        if not argv:
            raise containerizer.LaunchError("the app has neither cmd nor args, nor an image to run")
    with open(task.sandbox / "stdout", "ab") as out, open(task.sandbox / "stderr", "ab") as err:
        return subprocess.Popen(  # noqa: S603 - the app's command is what the scheduler exists to run
            argv,
            cwd=task.sandbox,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl call, safe after fork
        )


def signal_group(task: TaskRun, sig: int) -> None:
    """Send ``sig`` to the task's process group (the task leader is the group leader). A container's ``podman run``
    passes SIGTERM on to the container; SIGKILL, which it cannot pass on, also removes the container."""
    if task.proc is None:
        return
    if task.image and sig == signal.SIGKILL:
        _reap_removals()
        _removals.append(containerizer.remove(task.id))
    try:
        os.killpg(task.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def exit_message(returncode: int, *, container: bool = False) -> str:
    """Mesos' wording for how a task ended (its command executor's, or its docker executor's)."""
    what = "Container" if container else "Command"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"{what} terminated with signal {name}"
    return f"{what} exited with status {returncode}"


def failure_message(task: TaskRun, returncode: int) -> str:
    """Mesos' wording for how a task ended, then the last lines of its stderr (of its stdout if it wrote no
    stderr): a container's log tail.

    Real Mesos keeps stderr in the sandbox (read through the agent's files API); the local scheduler puts its
    tail in the message so that a failed deployment says why wherever the message is shown.
    """
    message = exit_message(returncode, container=task.image is not None)
    for stream in ("stderr", "stdout"):
        tail = output_tail(task, stream, lines=10)
        if tail:
            return f"{message}; {stream} (last lines):\n{tail}"
    return message


def stderr_tail(task: TaskRun, lines: int = 5) -> str:
    """The last lines the task wrote to stderr (for diagnostics)."""
    return output_tail(task, "stderr", lines)


def output_tail(task: TaskRun, stream: str, lines: int = 5) -> str:
    try:
        data = (task.sandbox / stream).read_bytes()[-4000:]
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


#: container removals under way (reaped by the next one)
_removals: list[subprocess.Popen] = []


def _reap_removals() -> None:
    _removals[:] = [p for p in _removals if p.poll() is None]


def now_mono() -> float:
    return time.monotonic()
