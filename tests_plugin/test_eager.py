"""Eager builds: once collection is done, what the selected tests need builds in the background while the first
tests run; a selection builds only what it needs; a failed or interrupted eager build behaves as any other."""

from __future__ import annotations

import json
import signal
import time

import pytest

from conftest import Project, interrupt
from envfixtures.core.environment import Environment
from envfixtures.pytest import eager

#: A first test that needs nothing and takes 2 s, then one that needs the sleeper (its build: 2 s).
TIMED = """
import json, time
from pathlib import Path

HERE = Path(__file__).parent

def test_first():
    start = time.time()
    time.sleep(2)
    (HERE / "first.json").write_text(json.dumps({"start": start, "end": time.time()}))

def test_second(sleeper):
    (HERE / "second.json").write_text(json.dumps({"end": time.time()}))
"""

SELECTION = """
import time

import pytest

@pytest.fixture
def through_a_fixture(dependent):
    return dependent

def test_0_slow():
    time.sleep(1)

def test_a(sleeper):
    assert sleeper["pid"] > 0

def test_c(through_a_fixture):
    assert through_a_fixture["pid"] > 0

def test_plain():
    pass
"""

#: The first test runs long; the second needs ``dependent`` (and so the sleeper), built eagerly meanwhile. Under
#: xdist both go to one worker, so that no test starts the build.
SLOW_FIRST = """
import time

import pytest

@pytest.mark.xdist_group("one")
def test_first():
    time.sleep(120)

@pytest.mark.xdist_group("one")
def test_second(dependent):
    pass
"""


class _Graph:
    """What :func:`eager.chains` asks of an environment: its requirements (the reference platform's shape)."""

    REQUIRES = {
        "aws": (),
        "broker": ("aws",),
        "topology": ("broker",),
        "database": ("aws",),
        "scheduler": ("aws",),
        "apps": ("scheduler", "database"),
        "api": ("apps", "scheduler"),
    }

    def requirements(self, name: str) -> tuple[str, ...]:
        return self.REQUIRES[name]

    def required_closure(self, names: list[str]) -> list[str]:
        return Environment.required_closure(self, names)  # type: ignore[arg-type]


def test_one_thread_per_chain_the_longest_first() -> None:
    # api: aws -> scheduler -> apps -> api (4); topology: aws -> broker -> topology (3); the apps build the database.
    assert eager.chains(_Graph(), ["topology", "database", "api"]) == ["api", "topology"]
    assert eager.chains(_Graph(), ["broker", "database"]) == ["broker", "database"]


def test_what_the_items_need_in_the_environments_order() -> None:
    class Item:
        def __init__(self, *names: str) -> None:
            self.fixturenames = list(names)

    items = [Item("request", "topology"), object(), Item("http", "api", "apps")]  # object(): no fixtures (static)
    assert eager.needed(items, ["aws", "broker", "topology", "apps", "api"]) == ["topology", "apps", "api"]
    assert eager.needed([Item("tmp_path")], ["aws", "broker"]) == []


def _state(project: Project, component: str) -> dict:
    return json.loads((project.env() / "components" / f"{component}.json").read_text())


def _progress(project: Project) -> str:
    return (project.env() / "logs" / "progress.log").read_text()


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "lazy"])
def test_the_build_starts_before_the_first_test_that_needs_it(project: Project, eager: bool) -> None:
    project.pytester.makepyfile(test_x=TIMED)
    result = project.run("--env-set", "sleeper_build_seconds=2", f"--env-eager={str(eager).lower()}")
    result.assert_outcomes(passed=2)
    first = json.loads((project.path / "first.json").read_text())
    second = json.loads((project.path / "second.json").read_text())
    started = _state(project, "sleeper")["started"]
    wall = second["end"] - first["start"]
    if eager:
        assert started < first["start"] + 0.5, "the sleeper's build started when collection was done"
        assert wall < 3.5, f"the build (2 s) ran while the first test (2 s) did: {wall:.2f}s"
        assert "building sleeper (eager) ..." in result.stderr.str()
    else:
        assert started >= first["end"], "env_eager false: built when the test that needs it starts"
        assert wall >= 4.0
        assert "building sleeper ..." in result.stderr.str()
    assert project.intents("sleeper/sleep") == 1
    assert project.meta()["status"] == "torn_down" and project.alive() == []


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_selection_builds_only_what_it_needs(project: Project, workers: list[str]) -> None:
    project.pytester.makepyfile(test_x=SELECTION)
    project.run(*workers, "-k", "test_a").assert_outcomes(passed=1)
    assert sorted(p.stem for p in (project.env() / "components").iterdir()) == ["sleeper"]
    assert project.intents("dependent/sleep") == 0


def test_a_selection_needing_nothing_writes_nothing(project: Project) -> None:
    project.pytester.makepyfile(test_x=SELECTION)
    project.run("-k", "plain").assert_outcomes(passed=1)
    assert project.envs() == [], "no state directory: nothing was built"


def test_a_component_requested_by_a_fixture_builds_eagerly(project: Project) -> None:
    project.pytester.makepyfile(test_x=SELECTION)
    project.run("-k", "test_0_slow or test_c").assert_outcomes(passed=2)
    progress = _progress(project)
    assert "building sleeper (eager) ..." in progress and "building dependent (eager) ..." in progress


def test_a_failed_eager_build_surfaces_through_the_fixture(project: Project) -> None:
    project.pytester.makepyfile(test_x=TIMED)
    result = project.run("--env-set", "sleeper_fail=true")
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str() + result.stderr.str()
    assert "sleeper was told to fail" in result.stdout.str(), "the recorded cause, in the test's error"
    assert "Exception in thread" not in out and "Traceback" not in out
    first = json.loads((project.path / "first.json").read_text())
    assert _state(project, "sleeper")["started"] < first["end"], "it failed eagerly, before the test needing it"
    assert project.intents("sleeper/sleep") == 1, "not retried by the fixture"
    assert project.meta()["status"] == "torn_down" and project.alive() == []


@pytest.mark.parametrize(
    ("sig", "group", "workers"),
    [
        (signal.SIGINT, True, []),
        (signal.SIGTERM, False, []),
        (signal.SIGINT, True, ["-n", "2", "--dist", "loadgroup"]),
        (signal.SIGTERM, False, ["-n", "2", "--dist", "loadgroup"]),
    ],
    ids=["ctrl-c", "sigterm", "ctrl-c-xdist", "sigterm-xdist"],
)
def test_interrupted_mid_eager_build_leaves_nothing(
    project: Project, sig: int, group: bool, workers: list[str]
) -> None:
    project.pytester.makepyfile(test_x=SLOW_FIRST)
    proc = project.popen(*workers, "--env-set", "sleeper_build_seconds=120")
    env = project.wait_for_started("sleeper/sleep")  # while the first test sleeps: an eager build
    t0 = time.monotonic()
    out = interrupt(proc, sig, group=group)
    assert proc.returncode != 0, out
    assert time.monotonic() - t0 < 30, "neither the build nor its thread kept the run alive"
    assert project.alive(env) == [], out
    assert project.meta(env)["status"] == "torn_down", out
    # The build, ended by the teardown, wrote nothing after it: the teardown's word is the last.
    assert _state(project, "sleeper")["status"] == "torn_down", out
    assert "Exception in thread" not in out
    assert "building sleeper (eager) ..." in _progress(project)
