"""An environment's state is private from the moment each piece of it exists, and its locks are waited for a bounded
time: a held lock is an error naming the lock file and its holder, never a hang."""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envfixtures.core import environment, private, registry, settings, state
from envfixtures.core.environment import Environment
from envfixtures.core.errors import WaitTimeout
from envfixtures.drivers.rabbitmq import cluster as rmq

PARTS = {"secretive": "Secretive", "a": "A"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    for name, cls in PARTS.items():
        monkeypatch.setitem(registry.COMPONENTS, name, {registry.ANY: f"graph_parts:{cls}"})
    environment = Environment(
        name="ef-0123456-priv", sha="0" * 40, backend="local", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true", "build_lock_timeout": "1"}, components=list(PARTS),
    )  # fmt: skip
    environment.description = environment.describe()
    return environment


@pytest.fixture
def no_umask() -> Iterator[None]:
    """A umask of 0: whatever is created with the default mode is readable (and writable) by everybody."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# ---------------------------------------------------------------------- modes, as created and at the end

_watch: dict[str, object] = {"base": None, "paths": set(), "seen": []}
_watch_lock = threading.Lock()
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT


def _audit(event: str, args: tuple) -> None:
    """Before every open, mkdir, chmod and rename: the mode of each file and directory created under the watched
    base so far. A file written first and restricted after (or renamed into place) is seen with its first mode."""
    base = _watch["base"]
    if base is None or event not in ("open", "os.mkdir", "os.chmod", "os.rename"):
        return
    with _watch_lock:
        for path in list(_watch["paths"]):  # type: ignore[attr-defined]
            try:
                st = os.lstat(path)
            except OSError:
                continue
            _watch["seen"].append((path, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode), event))  # type: ignore[attr-defined]
        path = args[0]
        if not isinstance(path, str | bytes | os.PathLike) or not os.fsdecode(path).startswith(base):  # type: ignore[arg-type]
            return
        writes = event == "os.mkdir" or (
            event == "open" and (any(c in str(args[1] or "") for c in "wax+") or (args[2] or 0) & _WRITES)
        )
        if writes:
            _watch["paths"].add(os.fsdecode(path))  # type: ignore[attr-defined]


sys.addaudithook(_audit)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[list[tuple[str, int, bool, str]]]:
    """Every (path, mode, is_dir, event) seen of what is created under ``tmp_path/home`` while the test runs."""
    with _watch_lock:
        _watch.update(base=str(tmp_path / "home"), paths=set(), seen=[])
    try:
        yield _watch["seen"]  # type: ignore[misc]
    finally:
        with _watch_lock:
            _watch.update(base=None)


def _walk(top: Path) -> list[tuple[Path, int, bool]]:
    found = [(top, stat.S_IMODE(top.lstat().st_mode), True)]
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            found.append((path, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode)))
    return found


def _public(entries: list[tuple[Path, int, bool]]) -> list[str]:
    return [f"{p} {oct(mode)}" for p, mode, is_dir in entries if mode != (0o700 if is_dir else 0o600)]


def test_every_file_and_directory_of_the_state_is_private_from_its_creation(
    env: Environment, no_umask: None, watched: list
) -> None:
    env.ensure("secretive")
    secret = env.facts("secretive")["password"]
    written = _walk(env.home / "envs")
    names = {p.relative_to(env.dir).as_posix() for p, _, _ in written if p != env.home / "envs"}
    assert {"env.json", "components/secretive.json", "secrets.jsonl", "resources.jsonl", "logs/progress.log"} <= names
    assert {"locks/secretive.lock", "locks/_meta.lock", "work/secretive", "logs", "work", "components"} <= names
    assert _public(written) == [], "with a umask of 0, everything the state holds is 0700 or 0600"
    assert secret in (env.dir / "secrets.jsonl").read_text()
    assert secret in (env.dir / "components" / "secretive.json").read_text()

    assert env.teardown() == []
    env.forget_secrets()
    assert _public(_walk(env.home / "envs")) == [], "the teardown's writes too"

    ever = [f"{p} {oct(mode)} before {event}" for p, mode, is_dir, event in watched if mode & 0o077]
    assert len(watched) > 50 and ever == [], "never readable by others, not even for a moment"


def test_the_broker_s_files_holding_its_password_and_cookie_are_private_from_their_creation(
    tmp_path: Path, no_umask: None, watched: list
) -> None:
    """rabbitmq.conf (the admin password), the Erlang cookie and every other file of the cluster's plan: created 0600
    in one call, as the state's files."""
    (tmp_path / "home").mkdir(mode=0o700)  # as the environment's work/ is
    spec = rmq.plan(tmp_path / "home" / "cluster", 2, prefix="private")
    written = _walk(tmp_path / "home")
    names = {p.relative_to(tmp_path / "home").as_posix() for p, _, _ in written}
    assert {"cluster/node-1/rabbitmq.conf", "cluster/node-2/rabbitmq.conf", "cluster/home/.erlang.cookie"} <= names
    assert spec.admin_password in (spec.nodes[0].dir / "rabbitmq.conf").read_text()
    ever = [f"{p} {oct(mode)} before {event}" for p, mode, is_dir, event in watched if mode & 0o077]
    assert len(watched) > 10 and ever == [], "never readable by others, not even for a moment"


def test_the_logs_directory_is_private_before_a_process_logs_to_it(env: Environment, no_umask: None) -> None:
    env.materialize()
    assert not (env.dir / "logs").exists()
    proc = env.spawn("secretive", "true", ["true"])
    assert proc.log_path.parent == env.dir / "logs"
    assert stat.S_IMODE((env.dir / "logs").stat().st_mode) == 0o700
    env.stop_processes(None)


def test_state_left_wider_by_an_older_version_is_tightened(env: Environment) -> None:
    env.ensure("secretive")
    for path, _, is_dir in _walk(env.home / "envs"):
        path.chmod(0o755 if is_dir else 0o644)
    env.update_meta(note="touched")
    env.progress("again")
    env.add_secret("another", "s3cret-value-123")
    env.journal.append({"kind": "thing", "id": "thing-2"})
    env._set_state("secretive", touched=True)
    env.lock("secretive", timeout=1, what="test").__enter__().__exit__(None, None, None)
    modes = {p.relative_to(env.home).as_posix(): mode for p, mode, _ in _walk(env.home / "envs")}
    for name in ("envs", "envs/ef-0123456-priv", "envs/ef-0123456-priv/logs", "envs/ef-0123456-priv/locks"):
        assert modes[name] == 0o700, name
    for name in ("env.json", "logs/progress.log", "secrets.jsonl", "resources.jsonl", "components/secretive.json"):
        assert modes[f"envs/ef-0123456-priv/{name}"] == 0o600, name
    assert modes["envs/ef-0123456-priv/locks/secretive.lock"] == 0o600


def test_a_link_in_the_state_is_never_followed(env: Environment, tmp_path: Path) -> None:
    env.ensure("secretive")
    victim = tmp_path / "victim"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    for name in ("secrets.jsonl", "logs/progress.log", "resources.jsonl"):
        (env.dir / name).unlink()
        (env.dir / name).symlink_to(victim)
    (env.dir / "components" / "secretive.json").unlink()
    (env.dir / "components" / "secretive.json").symlink_to(victim)
    with pytest.raises(OSError):
        env.add_secret("another", "s3cret-value-123")
    with pytest.raises(OSError):
        env.progress("through a link?")
    with pytest.raises(OSError):
        env.journal.append({"kind": "thing"})
    state._write_json(env.dir / "components" / "secretive.json", {"status": "built"})  # replaced, not written through
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert not (env.dir / "components" / "secretive.json").is_symlink()


# ---------------------------------------------------------------------- bounded locks

_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def hold() -> Iterator:
    """``hold(path)``: another process (not envfixtures, no note) takes the flock of ``path``; its Popen."""
    holders: list[subprocess.Popen] = []

    def take(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        holders.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield take
    for proc in holders:
        proc.kill()
        proc.wait()


def _timed(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    """(what ``fn`` returned, the exception it raised, seconds it took) — run in a thread, so that a hang fails the
    test instead of hanging it."""
    result: dict = {"value": None, "exc": None}

    def run() -> None:
        started = time.monotonic()
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            result["exc"] = exc
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "hung on a held lock"
    return result["value"], result["exc"], result["seconds"]


def test_a_held_build_lock_is_a_clear_error_within_its_bound(env: Environment, hold) -> None:  # noqa: ANN001
    env.materialize()
    lock = env.dir / "locks" / "a.lock"
    holder = hold(lock)
    _, exc, seconds = _timed(env.ensure, "a")
    assert isinstance(exc, WaitTimeout), exc
    assert 1 <= seconds < 10
    message = str(exc)
    assert str(lock) in message and f"pid {holder.pid} (python" in message, message
    assert "building a" in message and "build_lock_timeout" in message and "\n" not in message
    assert env.component_state("a") is None, "nothing recorded for a component another process is building"


def test_the_build_lock_is_waited_for_longer_than_a_build_by_default() -> None:
    assert settings.parse(settings.EnvironmentSettings, {}).build_lock_timeout >= 3600
    assert settings.parse(settings.EnvironmentSettings, {"build_lock_timeout": "7200"}).build_lock_timeout == 7200


def _hold_meta(description: dict, ready, release) -> None:  # noqa: ANN001
    with Environment.from_description(description).meta_lock():
        ready.set()
        release.wait(60)


def test_a_held_meta_lock_names_its_holder_from_its_note(env: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    env.materialize()
    monkeypatch.setattr(state, "META_LOCK_TIMEOUT", 1)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_meta, args=(env.description, ready, release))
    child.start()
    try:
        assert ready.wait(10)
        _, exc, seconds = _timed(env.update_meta, kept=True)
    finally:
        release.set()
        child.join(10)
    assert isinstance(exc, WaitTimeout) and seconds < 10
    message = str(exc)
    assert str(env.dir / "locks" / "_meta.lock") in message and f"pid {child.pid}" in message
    assert f"on {socket.gethostname()} since " in message and "writing env.json" in message
    env.update_meta(kept=True)  # released: taken at once, and the note is gone
    assert env.meta["kept"] is True and (env.dir / "locks" / "_meta.lock").read_text() == ""


def test_a_held_teardown_lock_is_an_error_not_a_hang(
    env: Environment,
    hold,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    env.ensure("secretive")
    monkeypatch.setattr(environment, "LOCK_TIMEOUT", 1)
    holder = hold(env.dir / "locks" / "_teardown.lock")
    _, exc, seconds = _timed(env.teardown)
    assert isinstance(exc, WaitTimeout) and seconds < 10
    assert "_teardown.lock" in str(exc) and f"pid {holder.pid}" in str(exc) and "another teardown" in str(exc)


def test_a_teardown_goes_on_past_a_held_meta_lock(
    env: Environment,
    hold,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    env.ensure("secretive")
    monkeypatch.setattr(state, "META_LOCK_TIMEOUT", 1)
    hold(env.dir / "locks" / "_meta.lock")
    problems, exc, seconds = _timed(env.teardown)
    assert exc is None and seconds < 15
    assert len(problems) == 2 and all("_meta.lock" in p and "gave up after 1s" in p for p in problems), problems
    assert env.component_state("secretive")["status"] == "torn_down", "the components were torn down all the same"
    deleted = [r for r in env.journal.records() if r.get("kind") == "thing" and r.get("state") == "deleted"]
    assert len(deleted) == 1


def test_a_lock_file_is_private_and_not_followed(tmp_path: Path, no_umask: None) -> None:
    lock = tmp_path / "x.lock"
    with private.Lock(lock, timeout=1, what="test"):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "y.lock").symlink_to(victim)
    with pytest.raises(OSError):
        private.Lock(tmp_path / "y.lock", timeout=1).__enter__()
    assert victim.read_text() == "keep"


def test_shared_holds_coexist_and_exclude_the_exclusive_one(tmp_path: Path) -> None:
    """The broker's fault window (conftest.py): any number of shared holders at once; the exclusive holder waits for
    them all and is then alone."""
    path = tmp_path / "broker-in-use.lock"
    with private.Lock(path, timeout=1, shared=True), private.Lock(path, timeout=1, shared=True):
        with pytest.raises(WaitTimeout, match="broker-in-use.lock"):
            private.Lock(path, timeout=0.2, what="the fault test").__enter__()
    with private.Lock(path, timeout=1, what="the fault test"):
        with pytest.raises(WaitTimeout):
            private.Lock(path, timeout=0.2, shared=True).__enter__()
    with private.Lock(path, timeout=1, shared=True):  # released: free again
        pass
