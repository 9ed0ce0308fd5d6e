"""The build graph without any server: once across threads and processes, failures not retried, requirements
first, teardown in reverse."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from envfixtures.core import registry
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ComponentFailed

PARTS = {"a": "A", "b": "B", "top": "Top", "broken": "Broken", "needs_broken": "NeedsBroken"}


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


def test_teardown_goes_in_reverse_build_order(env: Environment) -> None:
    env.ensure("top")
    order = sorted(["a", "b", "top"], key=lambda name: env.component_state(name)["started"])
    assert env.teardown() == []
    assert [name for name, *_ in lines(env, "teardowns")] == list(reversed(order))
    assert env.meta["status"] == "torn_down"
