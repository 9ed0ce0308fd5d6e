"""Pruning the state home: only environments torn down long enough ago (kept ones too, once torn down), not owned by
a live process,
go; unreadable entries, symbolic links and a concurrent prune are survived."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from envfixtures.core import processes, registry
from envfixtures.core.environment import (
    PRUNING,
    TEARDOWN_FAILED,
    TORN_DOWN,
    Environment,
    list_environments,
    prune,
)

HOUR = 3600.0


@pytest.fixture(scope="module")
def dead_owner() -> dict[str, Any]:
    """The owner record of a process that has exited (its run is gone)."""
    proc = subprocess.Popen(["sleep", "30"])
    started = processes.start_time(proc.pid)
    proc.kill()
    proc.wait()
    return {"pid": proc.pid, "start_time": started, "host": socket.gethostname()}


def make(home: Path, name: str, owner: dict[str, Any] | None, *, age: float | None = 2 * HOUR, **meta: Any) -> Path:
    """An environment's state directory as a run leaves it, nothing built; ``owner`` None: this (live) process."""
    env = Environment(
        name=name, sha="0" * 40, backend="local", root=home.parent, home=home, settings={"quiet": "true"},
    )  # fmt: skip
    env.description = env.describe()
    env.materialize()
    (env.dir / "logs").mkdir()
    (env.dir / "logs" / "progress.log").write_text("built\n")
    changes: dict[str, Any] = {"status": TORN_DOWN, **meta}
    if age is not None:
        changes["torn_down"] = time.time() - age
    if owner is not None:
        changes["owner"] = owner
    env.update_meta(**changes)
    return env.dir


def names(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "envs").iterdir())


def test_only_old_torn_down_environments_not_owned_go(tmp_path: Path, dead_owner: dict) -> None:
    home = tmp_path / "home"
    make(home, "ef-0000001-old", dead_owner)
    make(home, "ef-0000002-recent", dead_owner, age=60)
    make(home, "ef-0000003-failed", dead_owner, status=TEARDOWN_FAILED)
    make(home, "ef-0000004-kept", dead_owner, status="kept", kept=True)  # kept and still up
    make(home, "ef-0000008-kept-then-down", dead_owner, kept=True)  # `envfixtures down` after --env-keep
    make(home, "ef-0000005-owned", None)  # its run still writes its reports
    make(home, "ef-0000006-active", dead_owner, status="active")
    make(home, "ef-0000007-elsewhere", dict(dead_owner, host="another-host"))  # not ours to judge
    assert prune(home, HOUR) == ["ef-0000001-old", "ef-0000008-kept-then-down"]
    assert names(home) == ["ef-0000002-recent", "ef-0000003-failed", "ef-0000004-kept", "ef-0000005-owned",
                           "ef-0000006-active", "ef-0000007-elsewhere"]  # fmt: skip
    assert prune(home, 30) == ["ef-0000002-recent"]


def test_without_a_recorded_time_the_last_change_counts(tmp_path: Path, dead_owner: dict) -> None:
    home = tmp_path / "home"
    old = make(home, "ef-0000001-old", dead_owner, age=None)
    make(home, "ef-0000002-new", dead_owner, age=None)
    two_hours_ago = time.time() - 2 * HOUR
    for path in (old, old / "env.json"):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert prune(home, HOUR) == ["ef-0000001-old"]
    assert names(home) == ["ef-0000002-new"]


def test_a_real_teardown_records_when_and_its_owner_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_owner: dict
) -> None:
    monkeypatch.setitem(registry.COMPONENTS, "a", {registry.ANY: "graph_parts:A"})
    env = Environment(
        name="ef-0123456-prun", sha="0" * 40, backend="local", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["a"],
    )  # fmt: skip
    env.description = env.describe()
    env.ensure("a")
    before = time.time()
    assert env.teardown() == []
    assert env.meta["status"] == TORN_DOWN and before <= env.meta["torn_down"] <= time.time()
    assert prune(env.home, 0) == []  # this process owns it
    env.update_meta(owner=dead_owner)
    assert prune(env.home, HOUR) == []
    assert prune(env.home, 0) == [env.name]
    assert not env.dir.exists()


def test_unreadable_entries_are_skipped(tmp_path: Path, dead_owner: dict) -> None:
    home = tmp_path / "home"
    make(home, "ef-0000001-old", dead_owner)
    (home / "envs" / "ef-0000002-materializing").mkdir()  # a build's first moment: no env.json yet
    torn = home / "envs" / "ef-0000003-torn"
    torn.mkdir()
    (torn / "env.json").write_text('{"status": "torn_do')
    (home / "envs" / "ef-0000004-list").mkdir()
    (home / "envs" / "ef-0000004-list" / "env.json").write_text("[]")
    (home / "envs" / "stray-file").write_text("")
    unreadable = home / "envs" / "ef-0000005-unreadable"
    (unreadable / "env.json").mkdir(parents=True)  # unreadable as a file, for root too
    assert prune(home, HOUR) == ["ef-0000001-old"]
    assert names(home) == ["ef-0000002-materializing", "ef-0000003-torn", "ef-0000004-list",
                           "ef-0000005-unreadable", "stray-file"]  # fmt: skip
    assert prune(tmp_path / "no-home", HOUR) == []


def test_symbolic_links_are_neither_followed_nor_removed(tmp_path: Path, dead_owner: dict) -> None:
    home = tmp_path / "home"
    outside = make(tmp_path / "elsewhere", "ef-0000001-outside", dead_owner)
    (home / "envs").mkdir(parents=True)
    (home / "envs" / "ef-0000001-outside").symlink_to(outside)
    inside = make(home, "ef-0000002-old", dead_owner)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    (inside / "logs" / "link").symlink_to(precious)
    assert prune(home, HOUR) == ["ef-0000002-old"]
    assert (home / "envs" / "ef-0000001-outside").is_symlink() and (outside / "env.json").exists()
    assert (precious / "data").read_text() == "keep me"


def test_concurrent_prunes_remove_each_directory_once(tmp_path: Path, dead_owner: dict) -> None:
    home = tmp_path / "home"
    made = [make(home, f"ef-{i:07d}-conc", dead_owner).name for i in range(12)]
    left_by_a_dead_prune = home / "envs" / f"{PRUNING}ef-9999999-dead.1.2"
    left_by_a_dead_prune.mkdir()
    (left_by_a_dead_prune / "env.json").write_text(json.dumps({"name": "ef-9999999-dead", "status": TORN_DOWN}))
    assert [e.name for e in list_environments(home)] == made  # never listed
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(prune(home, HOUR))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(n for r in results for n in r) == made
    assert names(home) == []
