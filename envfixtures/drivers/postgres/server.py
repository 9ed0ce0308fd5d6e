"""A real PostgreSQL 15 server as a child process: initdb, run in the foreground, connect, stop.

Written here rather than with pytest-postgresql / mirakuru because those fail as root and manage the
server through ``pg_ctl`` (a daemon we would not own); here ``postgres`` itself is the managed process.

From a root process the server binaries run as the ``postgres`` user (``initdb`` and ``postgres``
refuse root), so the data directory is owned by that user and every directory above it must be
traversable by it (:func:`grant_traverse`). Password authentication (scram-sha-256) everywhere, TCP on
127.0.0.1 only. Passwords never reach a log line, an argv or an SQL text: initdb reads the superuser's
from a 0600 file that is deleted right after, and role passwords are hashed on the client side.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.processes import Process, Spawner
from envfixtures.core.waiting import wait_for

log = logging.getLogger(__name__)

BIN_DIR = Path(os.environ.get("ENVFIXTURES_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
#: A Unix socket path is limited to 107 bytes; longer socket directories are replaced by "TCP only".
_MAX_SOCKDIR = 90

#: Settings for a throw-away server: durability traded for speed (the data dies with the environment).
FAST_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_connections": "off",
    "log_min_messages": "warning",
}


def generate_password() -> str:
    """A random password (URL-safe, so that it also fits a connection URL without quoting)."""
    return secrets.token_urlsafe(24)


def running_as_root() -> bool:
    return os.geteuid() == 0


def server_user() -> str | None:
    """The user the server binaries must run as: ``postgres`` when we are root, else ourselves."""
    return SERVER_USER if running_as_root() else None


def _traverse_plan(path: Path, may_change_under: Path | None) -> tuple[list[Path], Path | None]:
    """The directories above ``path`` the server user cannot traverse: those we may open (at or under
    ``may_change_under``), and the first one outside it that blocks the way (or None)."""
    user = server_user()
    if user is None:
        return [], None
    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))
    path = Path(path).resolve()
    limit = Path(may_change_under).resolve() if may_change_under else None
    to_open: list[Path] = []
    for directory in [path, *path.parents]:
        if not directory.exists():
            continue
        st = directory.stat()
        if st.st_uid == pw.pw_uid and st.st_mode & stat.S_IXUSR:
            continue
        if st.st_gid in groups and st.st_mode & stat.S_IXGRP:
            continue
        if st.st_mode & stat.S_IXOTH:
            continue
        if limit is not None and (directory == limit or limit in directory.parents):
            to_open.append(directory)
            continue
        return to_open, directory
    return to_open, None


def blocking_directory(path: Path, *, may_change_under: Path | None = None) -> Path | None:
    """The first directory above ``path``, outside ``may_change_under``, that the server user cannot traverse.

    None when nothing blocks it (or when the server runs as ourselves). A checkout under ``/root`` (0700 on
    Debian) is the usual case: then the server's files must live elsewhere.
    """
    return _traverse_plan(path, may_change_under)[1]


def grant_traverse(path: Path, *, may_change_under: Path | None = None) -> None:
    """Make sure the server user can reach ``path`` (search permission on every directory above it).

    Directories at or under ``may_change_under`` (the environment's own state directory) get the
    "others may traverse" bit (x only: their listing stays private); any other directory that blocks
    the way is refused with :class:`ConfigError` naming it.
    """
    to_open, blocked = _traverse_plan(path, may_change_under)
    if blocked is not None:
        raise ConfigError(
            f"{blocked}: user {server_user()!r} cannot traverse it, so PostgreSQL cannot reach {path}; "
            f"give others search permission (chmod o+x {blocked}) or use another state directory"
        )
    for directory in to_open:
        os.chmod(directory, stat.S_IMODE(directory.stat().st_mode) | stat.S_IXOTH)


def _chown_to_server(path: Path) -> None:
    user = server_user()
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def initdb(data_dir: Path, *, password: str, scratch_dir: Path, timeout: float = 120.0) -> float:
    """Create a cluster in ``data_dir`` (must not exist or be empty); returns the seconds it took.

    The superuser ``postgres`` gets ``password`` (scram-sha-256 for local and host connections).
    ``scratch_dir`` (reachable by the server user) briefly holds the password file.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _chown_to_server(data_dir)
    pwfile = Path(scratch_dir) / f".pwfile-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        _chown_to_server(pwfile)
        argv = [
            str(BIN_DIR / "initdb"),
            "-D", str(data_dir),
            "-U", SUPERUSER,
            "-A", "scram-sha-256",
            f"--pwfile={pwfile}",
            "-E", "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        user = server_user()
        started = time.monotonic()
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        elapsed = time.monotonic() - started
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise BuildError(f"initdb -D {data_dir} failed with exit code {result.returncode}: {tail}")
    log.info("initdb %s took %.2fs", data_dir, elapsed)
    return elapsed


def server_argv(data_dir: Path, port: int, socket_dir: Path | None) -> list[str]:
    """The command line of a foreground ``postgres`` on 127.0.0.1:``port`` (no password in it)."""
    argv = [str(BIN_DIR / "postgres"), "-D", str(data_dir), "-p", str(port)]
    argv += ["-k", str(socket_dir) if socket_dir is not None else ""]
    for key, value in FAST_SETTINGS.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def socket_dir_for(workdir: Path) -> Path | None:
    """A socket directory in ``workdir`` (owned by the server user), or None (TCP only) when too long."""
    path = Path(workdir) / "sock"
    if len(str(path)) > _MAX_SOCKDIR:
        log.info("socket directory %s is too long for a Unix socket; the server listens on TCP only", path)
        return None
    path.mkdir(mode=0o700, exist_ok=True)
    _chown_to_server(path)
    return path


def conninfo(*, port: int, user: str, password: str, dbname: str, host: str = HOST) -> str:
    """A libpq keyword/value string (never logged: it holds the password)."""
    return psycopg.conninfo.make_conninfo(
        host=host, port=port, user=user, password=password, dbname=dbname, connect_timeout=5,
        application_name="envfixtures",
    )  # fmt: skip


def wait_ready(
    *, port: int, password: str, process: Process | None = None, timeout: float = 60.0, host: str = HOST
) -> str:
    """Wait until a real, authenticated connection succeeds; return the server's version string.

    Fails fast, with the tail of its log, when ``process`` (the server) exits meanwhile.
    """

    def probe() -> str | None:
        with psycopg.connect(conninfo(port=port, user=SUPERUSER, password=password, dbname="postgres", host=host)) as c:
            return c.execute("SHOW server_version").fetchone()[0]

    what = f"PostgreSQL on {host}:{port}"
    if process is None:
        return wait_for(probe, what=what, timeout=timeout, retry_on=(psycopg.OperationalError,))
    return process.wait_ready(probe, what=what, timeout=timeout, retry_on=(psycopg.OperationalError,))


def wait_ready_app(conninfo: str, *, timeout: float = 60.0, what: str = "the database") -> bool:
    """Wait until a connection with ``conninfo`` succeeds (a server we did not start, e.g. RDS)."""

    def probe() -> bool:
        with psycopg.connect(conninfo) as conn:
            conn.execute("SELECT 1")
        return True

    return wait_for(probe, what=what, timeout=timeout, retry_on=(psycopg.OperationalError,), max_delay=5.0)


def create_app_database(
    *, port: int, admin_password: str, role: str, password: str, dbname: str, host: str = HOST
) -> None:
    """Create a login role with ``password`` and a database it owns (idempotent for the role).

    The password is hashed here (SCRAM verifier computed by libpq) so the cleartext never travels
    in an SQL statement that the server could log.
    """
    with psycopg.connect(
        conninfo(port=port, user=SUPERUSER, password=admin_password, dbname="postgres", host=host), autocommit=True
    ) as conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(dbname)))


@dataclass
class Server:
    """A running server started by :func:`start`; ``stop`` ends it."""

    process: Process
    port: int
    data_dir: Path
    admin_password: str = field(repr=False)
    version: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> float:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint, exit); SIGKILL after ``timeout``."""
        started = time.monotonic()
        stop(self.process, timeout=timeout)
        elapsed = time.monotonic() - started
        self.timings["stop"] = round(elapsed, 3)
        return elapsed


def stop(process: Process, *, timeout: float = 15.0) -> bool:
    """Stop the server ``process`` (its group) with a fast shutdown, SIGINT: clients are disconnected rather
    than waited for (SIGTERM would wait for every client to leave). Works on a journaled process started by
    another process; signals nothing unless it is still the server that was started."""
    return process.stop(timeout=timeout, sig=signal.SIGINT)


def start(
    *,
    workdir: Path,
    port: int,
    spawn: Spawner,
    may_change_under: Path | None = None,
    timeout: float = 60.0,
) -> Server:
    """initdb into ``workdir/data`` with a generated superuser password, run the server, wait for it.

    ``spawn`` starts the server process in its own session and journals it: ``ctx.spawn`` in an environment,
    :func:`~envfixtures.core.processes.standalone_spawner` outside one.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _chown_to_server(workdir)
    grant_traverse(workdir, may_change_under=may_change_under)
    admin_password = generate_password()
    data_dir = workdir / "data"
    timings = {"initdb": round(initdb(data_dir, password=admin_password, scratch_dir=workdir), 3)}
    argv = server_argv(data_dir, port, socket_dir_for(workdir))
    started = time.monotonic()
    process = spawn("postgres", argv, user=server_user())
    server = Server(process=process, port=port, data_dir=data_dir, admin_password=admin_password, timings=timings)
    try:
        server.version = wait_ready(port=port, password=admin_password, process=process, timeout=timeout)
    except BaseException:
        server.stop(timeout=5)
        raise
    timings["start"] = round(time.monotonic() - started, 3)
    log.info("PostgreSQL %s ready on %s:%d (initdb %.2fs, start %.2fs)", server.version, HOST, port,
             timings["initdb"], timings["start"])  # fmt: skip
    return server
