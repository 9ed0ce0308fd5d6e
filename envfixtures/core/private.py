"""Private files on disk and bounded file locks: what an environment's state and the port registry are made of.

A directory is ``0700`` and a file ``0600`` from the system call that creates it (the mode is given to ``mkdir`` and
``open``; a umask can only narrow it), so nothing is readable by another local user even for a moment, and a file
is never written first and restricted after. What already exists with a wider mode (left by an older version) is
tightened; a symbolic link is never followed (``O_NOFOLLOW``), and something that is not a directory or a regular
file of ours where one is expected (a link, a FIFO, another user's file) is refused with a one-line error.

A :class:`Lock` is an exclusive ``flock`` on a private file, waited for at most ``timeout`` seconds: a lock that
stays held gives a :class:`~envfixtures.core.errors.WaitTimeout` naming the lock file and who may hold it (from
``/proc/locks`` and the note its holder leaves in the file), never a hang.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import stat
import time
from pathlib import Path
from types import TracebackType

from envfixtures.core.errors import ConfigError, WaitTimeout

DIR_MODE = 0o700
FILE_MODE = 0o600
#: never through a symbolic link, never inherited by a child, and never blocking on a FIFO
_SAFE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def private_dir(path: Path) -> Path:
    """``path`` as a directory of our own with mode ``0700``: created so (missing parents too, ``0700``), or, if it
    exists, checked (a real directory, not a link, owned by us) and tightened to ``0700``. Existing parents are left
    as they are."""
    path = Path(path)
    _mkdirs(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _SAFE)
    except OSError as exc:  # ELOOP: a symbolic link; ENOTDIR: a file, a FIFO
        raise ConfigError(f"{path}: expected a private directory, found {_kind(path)} ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{path}: expected a private directory of uid {os.geteuid()}, it belongs to {st.st_uid}")
        if stat.S_IMODE(st.st_mode) != DIR_MODE:
            os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)
    return path


def private_dirs(base: Path, *parts: str) -> Path:
    """``base/parts...``, each of ``parts`` a :func:`private_dir`; ``base`` is created (``0700``) if missing, never
    changed if it exists."""
    path = Path(base)
    _mkdirs(path)
    for part in parts:
        path = private_dir(path / part)
    return path


def open_private(path: Path, flags: int) -> int:
    """A descriptor of the regular file ``path`` of ours, created ``0600`` if ``flags`` has ``O_CREAT``; never
    through a link, never blocking on a FIFO. A file of ours with a wider mode is tightened; anything else that is
    there is refused (:class:`ConfigError`), and an :class:`OSError` (``ELOOP`` for a link, ``EISDIR`` for a
    directory) passes through."""
    fd = os.open(path, flags | _SAFE, FILE_MODE)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: expected a regular file, found {_kind_of(st.st_mode)}")
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{path}: expected a file of uid {os.geteuid()}, it belongs to {st.st_uid}")
        if st.st_nlink != 1:  # a hard link to a file elsewhere (/etc/passwd, when root) is not ours to write
            raise ConfigError(f"{path}: expected a file of its own, it has {st.st_nlink} links")
        if stat.S_IMODE(st.st_mode) & ~FILE_MODE:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` atomically with ``data``, through a new file created ``0600`` (``O_EXCL``) beside it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _SAFE, FILE_MODE)
    try:
        try:
            _write_all(fd, data.encode() if isinstance(data, str) else data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_private(path: Path, data: str | bytes) -> None:
    """Append ``data`` to ``path`` (created ``0600`` if missing) in one ``write`` with ``O_APPEND``."""
    fd = open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        _write_all(fd, data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)


def flock(fd: int, path: Path, timeout: float, what: str, hint: str = "", *, shared: bool = False) -> None:
    """Take the exclusive (``shared``: the shared) ``flock`` of ``fd`` (the file ``path``), waiting at most
    ``timeout`` seconds; :class:`WaitTimeout` naming the file and who may hold it after that (``what`` says what
    waited, ``hint`` what to do about it)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"{what}: gave up after {timeout:g}s waiting for the lock {path}, held by {holder(fd, what)}"
                    + (f"; {hint}" if hint else "")
                ) from None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)


def holder(fd: int, what: str = "") -> str:
    """Who holds the ``flock`` of ``fd``, as far as ``/proc/locks`` and the holder's note in the file say (what
    the holder does, if not ``what``)."""
    st = os.fstat(fd)
    pids = _lock_pids(st)
    who = [f"pid {pid} ({_comm(pid)})" for pid in pids]
    try:
        note = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError, RecursionError):
        note = None
    if isinstance(note, dict) and note.get("pid") not in pids:
        who.append(f"pid {note.get('pid')}")
    text = " or ".join(who) or "a process /proc/locks does not show"
    if isinstance(note, dict):
        since = note.get("since")
        when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
        text += f" on {note.get('host')} since {when}" + (f" ({note.get('what')})" if note.get("what") != what else "")
    return text


class Lock:
    """An exclusive lock on the private file ``path``, waited for at most ``timeout`` seconds (see :func:`flock`);
    ``shared=True``: a shared one (any number of shared holders together, none while an exclusive one is held).

    Not reentrant; every acquisition is a new open file, so threads of one process exclude each other as processes
    do. Its holder leaves a note in the file (pid, host, ``what``, since when) for the message of whoever times out.
    """

    def __init__(self, path: Path, *, timeout: float, what: str = "", hint: str = "", shared: bool = False) -> None:
        self.path = Path(path)
        self.shared = shared
        self.timeout = timeout
        self.what = what or f"taking {self.path.name}"
        self.hint = hint
        self._fd: int | None = None

    def __enter__(self) -> "Lock":
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        try:
            flock(fd, self.path, self.timeout, self.what, self.hint, shared=self.shared)
            if self.shared:  # the note is the one exclusive holder's
                self._fd = fd
                return self
            note = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what, "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(note).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not self.shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # no stale note for the next holder's waiters
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _mkdirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each ``0700`` (``Path.mkdir`` gives parents the default mode)."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        if path.parent == path:
            raise
        _mkdirs(path.parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, DIR_MODE)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _lock_pids(st: os.stat_result) -> list[int]:
    """Pids ``/proc/locks`` shows holding a lock on the file of ``st`` (device and inode; inode alone if no line
    names its device, as on some overlay file systems)."""
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    exact: list[int] = []
    loose: list[int] = []
    try:
        with open("/proc/locks") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 6 or fields[1] == "->":  # "->": a waiter, not a holder
                    continue
                pid, where = fields[4], fields[5]
                if not pid.isdigit():
                    continue
                if where == device:
                    exact.append(int(pid))
                elif where.rsplit(":", 1)[-1] == str(st.st_ino):
                    loose.append(int(pid))
    except OSError:
        return []
    return list(dict.fromkeys(exact or loose))


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "gone"


def _kind(path: Path) -> str:
    try:
        return _kind_of(os.lstat(path).st_mode)
    except OSError:
        return "nothing"


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "something else"
