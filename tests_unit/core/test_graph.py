"""The build graph without any server: once across threads and processes, failures not retried, requirements
first, teardown in reverse."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from envfixtures.core import processes, registry
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ComponentFailed

PARTS = {"a": "A", "b": "B", "top": "Top", "broken": "Broken", "needs_broken": "NeedsBroken", "fragile": "Fragile"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    for name, cls in PARTS.items():
        monkeypatch.setitem(registry.COMPONENTS, name, {registry.ANY: f"graph_parts:{cls}"})
    environment = Environment(
        name="ef-0123456-grph", sha="0" * 40, backend="local", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true"}, components=list(PARTS),
    )  # fmt: skip
    environment.description = environment.describe()
    return environment


def lines(env: Environment, what: str) -> list[list[str]]:
    path = env.dir / f"{what}.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_built_once_however_many_threads_ask(env: Environment) -> None:
    results = []
    threads = [threading.Thread(target=lambda: results.append(env.ensure("a")["by"])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert [name for name, *_ in lines(env, "builds")] == ["a"]


def _ensure_in_a_process(description: dict, queue: multiprocessing.Queue) -> None:
    queue.put(Environment.from_description(description).ensure("a")["by"])


def test_built_once_however_many_processes_ask(env: Environment) -> None:
    ctx = multiprocessing.get_context("fork")  # the children inherit the registered test parts
    queue = ctx.Queue()
    children = [ctx.Process(target=_ensure_in_a_process, args=(env.description, queue)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)
    builders = {queue.get(timeout=5) for _ in children}
    assert len(builders) == 1, "every process got the facts of the one build"
    assert len(lines(env, "builds")) == 1


def test_requirements_are_built_first(env: Environment) -> None:
    env.ensure("top")
    built = {name: float(t) for name, _pid, t in lines(env, "builds")}
    assert set(built) == {"a", "b", "top"}
    assert built["top"] > max(built["a"], built["b"])


def test_a_failed_build_is_recorded_and_not_retried(env: Environment) -> None:
    for _ in range(3):
        with pytest.raises(ComponentFailed, match="broken on purpose"):
            env.ensure("broken")
    with pytest.raises(ComponentFailed, match="requirement 'broken' failed: broken on purpose"):
        env.ensure("needs_broken")
    assert [name for name, *_ in lines(env, "builds")] == ["broken"]


def test_teardown_goes_after_what_requires_it_and_independent_parts_at_once(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graph_parts

    # a and b are independent: their teardowns must overlap (one after the other, the barrier breaks and fails it)
    monkeypatch.setattr(graph_parts, "MEETING", threading.Barrier(2, timeout=10))
    env.ensure("top")
    assert env.teardown() == []
    torn = [(name, float(t)) for name, _pid, t in lines(env, "teardowns")]
    assert torn[0][0] == "top", "top requires a and b: it goes first"
    assert {name for name, _ in torn[1:]} == {"a", "b"}
    assert env.meta["status"] == "torn_down"


def test_a_failed_teardown_is_recorded_and_retried(env: Environment) -> None:
    env.ensure("fragile")
    problems = env.teardown()
    assert len(problems) == 1 and "DependencyViolation" in problems[0]
    assert env.meta["status"] == "teardown_failed" and env.component_state("fragile")["status"] == "teardown_failed"
    assert env.teardown() == [], "the second teardown retries the component and succeeds"
    assert env.meta["status"] == "torn_down" and env.component_state("fragile")["status"] == "torn_down"
    assert [name for name, *_ in lines(env, "teardowns")] == ["fragile", "fragile"]
    assert env.teardown() == [] and len(lines(env, "teardowns")) == 2, "a torn-down environment is not torn again"


def test_a_torn_journal_line_does_not_stop_teardown(env: Environment) -> None:
    env.ensure("a")
    with open(env.journal.path, "a") as fh:
        fh.write('{"kind": "process", "key": "a/server", "sta')
    assert env.teardown() == []
    assert env.meta["status"] == "torn_down" and env.meta["journal_torn_lines"] == 1


def test_a_zombie_owner_is_dead(env: Environment) -> None:
    """A controller killed with SIGKILL stays a zombie until its parent reaps it: `reap` must not wait for that."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not yet waited for
        assert time.monotonic() < deadline
        time.sleep(0.01)
    env.ensure("a")
    env.update_meta(owner={**env.meta["owner"], "pid": child.pid, "start_time": processes.start_time(child.pid)})
    assert not env.owner_alive()
    child.wait()
    env.update_meta(owner={**env.meta["owner"], "pid": os.getpid(), "start_time": processes.start_time(os.getpid())})
    assert env.owner_alive(), "a live owner is alive"
