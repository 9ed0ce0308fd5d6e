"""Ports come from below the kernel's ephemeral range, are free, and are not handed out twice; the registry that
remembers the picks is the user's own, and nothing another user puts in its way stops, hangs or misleads a pick."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from envfixtures.core import ports
from envfixtures.core.errors import WaitTimeout

NOBODY = 65534
ROOT = os.geteuid() == 0
VICTIM = "root:x:0:0:root:/root:/bin/bash\n"


@pytest.fixture
def tmp_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A system temporary directory of the test's own (sticky, world-writable, like /tmp); no XDG_RUNTIME_DIR."""
    base = tmp_path / "tmp"
    base.mkdir()
    base.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(ports, "_fallback", None)
    monkeypatch.setattr(ports, "_warned", set())
    return base


@pytest.fixture
def mine(tmp_base: Path) -> Path:
    """Where this user's registry directory goes."""
    return tmp_base / f"envfixtures-{os.geteuid()}"


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, failing the test if it takes longer than ``seconds`` (a hang on a FIFO or a lock)."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            result["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"hung for {seconds}s"
    if "exc" in result:
        raise result["exc"]
    return result["value"]


def registered(directory: Path) -> dict[int, float]:
    """The registry in ``directory``, checked to be a private regular file of ours."""
    path = directory / ports.REGISTRY
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1
    assert stat.S_IMODE(st.st_mode) == 0o600
    dst = directory.lstat()
    assert stat.S_ISDIR(dst.st_mode) and dst.st_uid == os.geteuid() and stat.S_IMODE(dst.st_mode) == 0o700
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def two_picks(directory: Path) -> None:
    """Two picks, each within a bound, both remembered in the registry of ``directory``: the registry in use is the
    one every process of the user finds."""
    first = within(10, ports.free_port)
    second = within(10, ports.free_port)
    assert first != second and all(ports.LOWEST <= p < ports.ephemeral_range()[0] for p in (first, second))
    assert ports.registry_dir() == directory
    assert {first, second} <= set(registered(directory))


# ---------------------------------------------------------------------- picks


def test_ports_are_below_the_ephemeral_range_and_distinct(tmp_base: Path) -> None:
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == 50
    assert all(ports.LOWEST <= p < ports.ephemeral_range()[0] for p in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # each one really was free


def _busy_port_with_a_free_neighbour() -> tuple[socket.socket, int]:
    """A listening socket on a port below the ephemeral range whose next port is free: no outgoing connection can
    take either of them (the kernel picks local ports of connections from the ephemeral range only)."""
    for _ in range(200):
        port = random.randint(ports.LOWEST, ports.ephemeral_range()[0] - 2)
        busy = socket.socket()
        try:
            busy.bind(("127.0.0.1", port))
        except OSError:
            busy.close()
            continue
        if ports._bindable("127.0.0.1", port + 1):
            busy.listen()
            return busy, port
        busy.close()
    raise AssertionError("no busy/free pair of ports below the ephemeral range")


def test_a_port_in_use_is_never_handed_out(tmp_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy, taken = _busy_port_with_a_free_neighbour()
    with busy:
        monkeypatch.setattr(ports, "LOWEST", taken)
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (taken + 2, taken + 3))
        assert ports.free_port() == taken + 1  # the only free one in [taken, taken+1]
        with pytest.raises(ports.BuildError, match="no free TCP port"):
            ports.free_port()  # taken+1 is now held by the registry, taken is busy


# ---------------------------------------------------------------------- where the registry is


def test_the_registry_is_private_from_its_creation(mine: Path) -> None:
    previous = os.umask(0)
    try:
        two_picks(mine)
    finally:
        os.umask(previous)


def test_the_registry_goes_to_a_private_xdg_runtime_dir(
    tmp_path: Path, tmp_base: Path, mine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    two_picks(runtime / "envfixtures")
    assert not mine.exists()
    runtime.chmod(0o755)  # not private: passed over
    two_picks(mine)


# ---------------------------------------------------------------------- what another user may put in the way


def _garbage(path: Path, tmp_path: Path) -> None:
    path.write_bytes(b"\x00\xff{not json")


def _wrong_shape(path: Path, tmp_path: Path) -> None:
    path.write_text(json.dumps({"x": "y", "20001": "soon", "20002": True, "20003": [1], "1e999": 1.0}))


def _deep(path: Path, tmp_path: Path) -> None:
    path.write_text("[" * 200_000)


def _huge(path: Path, tmp_path: Path) -> None:
    path.write_text(json.dumps({"20001": time.time()}) + " " * (ports.MAX_BYTES + 10))


def _link_to_a_victim(path: Path, tmp_path: Path) -> None:
    path.symlink_to(tmp_path / "passwd")


def _hard_link_to_a_victim(path: Path, tmp_path: Path) -> None:
    os.link(tmp_path / "passwd", path)


def _fifo(path: Path, tmp_path: Path) -> None:
    os.mkfifo(path, 0o666)


def _directory(path: Path, tmp_path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("x")


def _another_users_file(path: Path, tmp_path: Path) -> None:
    path.write_text(json.dumps({str(p): time.time() for p in range(ports.LOWEST, ports.LOWEST + 100)}))
    os.chown(path, NOBODY, NOBODY)


HOSTILE_FILES = [_garbage, _wrong_shape, _deep, _huge, _link_to_a_victim, _hard_link_to_a_victim, _fifo, _directory]
if ROOT:  # only root can give a file to another user
    HOSTILE_FILES.append(_another_users_file)


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A stand-in for /etc/passwd, which must come out unchanged."""
    path = tmp_path / "passwd"
    path.write_text(VICTIM)
    path.chmod(0o644)
    yield path
    assert path.read_text() == VICTIM and stat.S_IMODE(path.stat().st_mode) == 0o644, "the victim was written"


@pytest.mark.parametrize("plant", HOSTILE_FILES, ids=lambda f: f.__name__.strip("_"))
def test_a_hostile_registry_file_is_never_followed_nor_blocking(
    plant: Callable[[Path, Path], None], mine: Path, tmp_path: Path, victim: Path
) -> None:
    mine.mkdir(mode=0o700)
    plant(mine / ports.REGISTRY, tmp_path)
    two_picks(mine)
    assert len(registered(mine)) == 2, "nothing of the planted file was believed"


def _dir_link(path: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o755)
    path.symlink_to(tmp_path / "elsewhere")


def _dir_file(path: Path, tmp_path: Path) -> None:
    path.write_text("not a directory")


def _dir_fifo(path: Path, tmp_path: Path) -> None:
    os.mkfifo(path, 0o666)


def _dir_of_another_user(path: Path, tmp_path: Path) -> None:
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    (path / ports.REGISTRY).write_text("{}")
    os.chown(path / ports.REGISTRY, NOBODY, NOBODY)
    os.chown(path, NOBODY, NOBODY)


HOSTILE_DIRS = [_dir_link, _dir_file, _dir_fifo]
if ROOT:
    HOSTILE_DIRS.append(_dir_of_another_user)


@pytest.mark.parametrize("plant", HOSTILE_DIRS, ids=lambda f: f.__name__.strip("_"))
def test_a_hostile_registry_directory_is_passed_over(
    plant: Callable[[Path, Path], None], mine: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plant(mine, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    before = {p: p.lstat() for p in (mine, elsewhere) if os.path.lexists(p)}
    two_picks(mine.with_name(f"{mine.name}-1"))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and f"passed over {mine}: " in warnings[0], "warned, once"
    for path, st in before.items():
        assert path.lstat().st_mode == st.st_mode and path.lstat().st_uid == st.st_uid, f"{path} was changed"
    assert not elsewhere.exists() or not any(elsewhere.iterdir()), "nothing written through the link"


def test_a_wider_registry_directory_of_ours_is_tightened(mine: Path) -> None:
    mine.mkdir()
    mine.chmod(0o777)
    two_picks(mine)


def test_with_every_candidate_taken_a_process_uses_a_fresh_private_registry(
    mine: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(ports.ALTERNATES + 1):
        _dir_file(mine.with_name(mine.name + (f"-{n}" if n else "")), tmp_path)
    fresh = within(10, ports.registry_dir)
    assert fresh.parent == mine.parent and fresh.name.startswith(f"{mine.name}-") and fresh.name != f"{mine.name}-1"
    two_picks(fresh)
    assert "this process uses its own" in caplog.text


def test_a_held_registry_lock_is_a_clear_error_within_its_bound(mine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports.free_port()
    monkeypatch.setattr(ports, "LOCK_TIMEOUT", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(mine / ports.REGISTRY)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as caught:
            within(10, ports.free_port)
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    message = str(caught.value)
    assert str(mine / ports.REGISTRY) in message and f"pid {holder.pid}" in message and "\n" not in message


# ---------------------------------------------------------------------- a second user


def _python_for(uid: int) -> str | None:
    """A Python interpreter ``uid`` may run (the test's own may live in root's home)."""
    for python in (sys.executable, "/usr/bin/python3"):
        run = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", python, "-c", "pass"]
        if shutil.which("setpriv") and subprocess.run(run, capture_output=True).returncode == 0:
            return python
    return None


@pytest.mark.skipif(not ROOT, reason="running as another user needs root")
def test_a_second_user_gets_a_registry_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = _python_for(NOBODY)
    if python is None:
        pytest.skip("no Python interpreter the user nobody may run")
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="envfixtures-test-"))  # reachable by nobody, unlike tmp_path
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    try:
        base.chmod(0o1777)
        monkeypatch.setattr(tempfile, "tempdir", str(base))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # root's: inherited, and passed over by nobody
        monkeypatch.setattr(ports, "_fallback", None)
        ports.free_port()
        assert ports.registry_dir() == runtime / "envfixtures"
        monkeypatch.delenv("XDG_RUNTIME_DIR")
        ports.free_port()
        assert ports.registry_dir() == base / "envfixtures-0"
        code = "from envfixtures.core import ports; print(ports.free_port()); print(ports.registry_dir())"
        env = {"PATH": os.environ["PATH"], "TMPDIR": str(base), "XDG_RUNTIME_DIR": str(runtime)}
        # The checkout may sit in a private home (/root on Debian): nobody imports a copy of the package.
        shutil.copytree(Path(ports.__file__).parents[1], base / "pkg" / "envfixtures",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for path in [base / "pkg", *(base / "pkg").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        env["PYTHONPATH"] = str(base / "pkg")
        done = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python, "-c", code],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        port, directory = done.stdout.split()
        assert ports.LOWEST <= int(port) < ports.ephemeral_range()[0]
        assert Path(directory) == base / f"envfixtures-{NOBODY}"
        st = Path(directory, ports.REGISTRY).lstat()
        assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o600
        assert Path(directory).lstat().st_uid == NOBODY and stat.S_IMODE(Path(directory).lstat().st_mode) == 0o700
    finally:
        shutil.rmtree(base)
