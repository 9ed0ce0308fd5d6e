"""``--env-static-only``: the gate's static stage runs the static_rules items alone. No test module is collected
(nor imported), no environment is named or built, and a bad setting is still refused."""

from __future__ import annotations

import pytest

from conftest import CONFTEST, INI, Project

SUITE = """
import pathlib
pathlib.Path(__file__).with_name("imported").touch()

def test_needs_processes(sleeper, dependent):
    assert sleeper["pid"] > 0
"""


@pytest.fixture
def deploying(project: Project) -> Project:
    """The test project plus a component that deploys its ``templates/*.json`` (one input file: one item)."""
    project.pytester.makeconftest(CONFTEST + 'registry.register("deployer", "envfixtures.testing:Deployer")\n')
    project.pytester.makeini(INI.replace("templated", "templated deployer"))
    (project.path / "test_suite.py").write_text(SUITE)
    return project


@pytest.mark.parametrize("workers", ["0", "2"])
def test_only_the_static_items_run_and_nothing_is_built(deploying: Project, workers: str) -> None:
    result = deploying.run("--env-static-only", "-n", workers, "-v")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert "templates/templated.json::static_rules" in result.stdout.str()
    assert not (deploying.path / "imported").exists(), "a test module was imported"
    assert not (deploying.path / ".envfixtures").exists(), "an environment's state was written"


def test_the_control_run_imports_and_builds(deploying: Project) -> None:
    """The same project without the option: the module is imported, the test builds (so the marks above work)."""
    result = deploying.run()
    result.assert_outcomes(passed=2)  # the static item and the test
    assert (deploying.path / "imported").exists()
    assert len(deploying.envs()) == 1


def test_no_input_file_is_a_pass(project: Project) -> None:
    """A platform whose components deploy no file has nothing to check: the static stage passes."""
    (project.path / "test_suite.py").write_text(SUITE)
    result = project.run("--env-static-only")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*no tests ran*"])
    assert not (project.path / ".envfixtures").exists()


def test_a_bad_setting_is_refused(project: Project) -> None:
    result = project.run("--env-static-only", "--env-set", "no_such_setting=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no_such_setting*"])
