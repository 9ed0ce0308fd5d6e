"""Free loopback TCP ports for the processes of a local environment.

Two ways a port that was free a moment ago gets taken before its server binds it, both seen here:
the kernel hands it to an outgoing connection as its local port (``bind(0)`` picks from the same
ephemeral range that ``connect`` uses), or another build picks it too. So ports come from *below* the
kernel's ephemeral range (``connect`` never uses those), and every pick is written to the user's
registry under a file lock, so that no two builds — in any worker or environment of this user — get the
same one while its server is starting. A pick is kept out of circulation for ``HOLD_SECONDS``; after
that, a port still in use is refused by the bind check (as is a port another user's build picked).

The registry is ``ports.json`` in a directory of the user's own (:func:`registry_dir`): ``$XDG_RUNTIME_DIR/
envfixtures`` when ``XDG_RUNTIME_DIR`` is ours and ``0700``, else ``<tmp>/envfixtures-<uid>``. Anything
another user may have put in the way — a link, a FIFO, a file or directory of theirs, garbage in the file —
is never followed or trusted and never blocks: a directory that is not ours is passed over for the next
candidate (``<tmp>/envfixtures-<uid>-1`` ...; at worst a fresh private one for this process, with a warning),
an entry in our directory that is not our regular file is set aside, and garbage reads as an empty registry.
The lock is waited for at most ``LOCK_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import stat
import tempfile
import time
from pathlib import Path

from envfixtures.core import private
from envfixtures.core.errors import BuildError, EnvfixturesError

LOWEST = 20000
HOLD_SECONDS = 1800
#: seconds to wait for the registry's lock (held for milliseconds, while a port is picked)
LOCK_TIMEOUT = 30.0
#: a registry larger than this is garbage (it holds the picks of the last HOLD_SECONDS)
MAX_BYTES = 1 << 20
REGISTRY = "ports.json"
#: how many ``<tmp>/envfixtures-<uid>-N`` are tried when ``<tmp>/envfixtures-<uid>`` is not ours
ALTERNATES = 3

log = logging.getLogger(__name__)
_warned: set[str] = set()
_fallback: Path | None = None


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free, outside the ephemeral range, and handed to nobody else lately."""
    low = LOWEST
    high = ephemeral_range()[0] - 1
    if high <= low:  # an unusual ephemeral range: fall back to the kernel's choice
        return _bindable(host, 0) or 0
    fd, path = _open_registry()
    try:
        private.flock(fd, path, LOCK_TIMEOUT, "picking a free TCP port", "is a process of yours stuck (stopped)?")
        now = time.time()
        taken = _parse(os.pread(fd, MAX_BYTES + 1, 0), now)
        for _ in range(500):
            port = random.randint(low, high)
            if port in taken or not _bindable(host, port):
                continue
            taken[port] = now
            data = json.dumps(taken).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return port
    finally:
        os.close(fd)  # releases the lock
    raise BuildError(f"no free TCP port on {host} between {low} and {high} after 500 tries")


def registry_dir() -> Path:
    """The directory of this user's port registry: the first candidate that is (or could be made) a directory of
    ours, ``0700``, not a link; a fresh private one for this process if none is."""
    global _fallback
    problems = []
    for candidate in _candidates(problems):
        try:
            chosen = private.private_dir(candidate)
        except (OSError, EnvfixturesError) as exc:
            problems.append(str(exc))
            continue
        if problems:
            _warn(f"port registry in {chosen}: passed over {'; '.join(problems)}")
        return chosen
    if _fallback is None or not _usable(_fallback):
        _fallback = Path(tempfile.mkdtemp(prefix=f"envfixtures-{os.geteuid()}-"))  # 0700, ours, new
    _warn(
        f"no usable port registry directory ({'; '.join(problems)}); this process uses its own, {_fallback}: "
        "its picks are not coordinated with other processes (the bind check still applies)"
    )
    return _fallback


def _candidates(problems: list[str]) -> list[Path]:
    found = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        try:
            st = os.lstat(runtime)
        except OSError as exc:
            problems.append(f"XDG_RUNTIME_DIR={runtime}: {exc.strerror}")
        else:
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not stat.S_IMODE(st.st_mode) & 0o077:
                found.append(Path(runtime) / "envfixtures")
            else:
                problems.append(f"XDG_RUNTIME_DIR={runtime} is not a 0700 directory of ours")
    base = Path(tempfile.gettempdir()) / f"envfixtures-{os.geteuid()}"
    found += [base, *(base.with_name(f"{base.name}-{n}") for n in range(1, ALTERNATES + 1))]
    return found


def _open_registry() -> tuple[int, Path]:
    """A descriptor of the registry file (our regular file, 0600), and its path. Whatever else is in its place is
    set aside, never opened through."""
    directory = registry_dir()
    path = directory / REGISTRY
    try:
        return private.open_private(path, os.O_RDWR | os.O_CREAT), path
    except (OSError, EnvfixturesError) as exc:
        aside = directory / f".{REGISTRY}.unsafe-{time.time_ns()}"
        _warn(f"{path} is not a registry of ours ({exc}); set aside as {aside.name}", once=False)
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            pass  # gone meanwhile
        except OSError as err:
            raise BuildError(f"port registry {path} is unusable ({exc}) and cannot be set aside ({err})") from None
    try:
        return private.open_private(path, os.O_RDWR | os.O_CREAT), path
    except (OSError, EnvfixturesError) as exc:
        raise BuildError(f"port registry {path} is unusable: {exc}") from None


def _parse(raw: bytes, now: float) -> dict[int, float]:
    """The ports picked in the last ``HOLD_SECONDS``; whatever does not read as such is ignored."""
    if len(raw) > MAX_BYTES:
        return {}
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    taken = {}
    for key, when in data.items():
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            port = int(key)
            if isinstance(when, int | float) and not isinstance(when, bool) and -60 < now - when < HOLD_SECONDS:
                taken[port] = float(when)
    return taken


def _usable(path: Path) -> bool:
    try:
        private.private_dir(path)
    except (OSError, EnvfixturesError):
        return False
    return True


def _warn(message: str, *, once: bool = True) -> None:
    if once and message in _warned:
        return
    _warned.add(message)
    log.warning("%s", message)


def _bindable(host: str, port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return None
        return sock.getsockname()[1]
