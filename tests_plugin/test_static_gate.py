"""build-and-verify stops in its static stage when a template has one mistake: a one-line reason naming the
file and the place, and no process started (no environment state at all).

A pytester project gets a copy of the real templates (with a case of the broken corpus applied) and a stage-2
test that would build a component (its module leaves a mark when imported). The gate's commands are read from
tox.ini's [testenv:build-and-verify] and run in order, stopping at the first failure, as tox does.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from envfixtures.core import processes

ROOT = Path(__file__).resolve().parent.parent
SHA = "0123456789abcdef0123456789abcdef01234567"
BRANCH = "static-gate-proof"

_spec = importlib.util.spec_from_file_location("broken_corpus", ROOT / "tests_unit" / "broken" / "corpus.py")
corpus = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["broken_corpus"] = corpus
_spec.loader.exec_module(corpus)  # type: ignore[union-attr]

CONFTEST = """
from envfixtures.core import registry
registry.register("sleeper", "envfixtures.testing:Sleeper")
"""
INI = "[pytest]\naddopts = -ra\nenv_components = aws sleeper\n"
STAGE2 = (
    "import pathlib\n"
    "pathlib.Path(__file__).with_name('imported').touch()\n"
    "def test_needs_a_process(sleeper):\n    assert sleeper['pid'] > 0\n"
)


def gate_commands() -> list[list[str]]:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    lines = [ln.strip() for ln in ini["testenv:build-and-verify"]["commands"].splitlines() if ln.strip()]
    return [shlex.split(ln.replace("{posargs}", "")) for ln in lines]


def make_project(path: Path, case_file: str | None) -> None:
    shutil.copytree(ROOT / "templates", path / "templates")
    if case_file:
        case = next(c for c in corpus.cases() if c.file == case_file)
        broken = corpus.materialize(case, path / "_case")
        shutil.copy(broken, corpus.source(case.template, path))
    for name in ("tests_infra", "tests_api"):
        (path / name).mkdir()
    (path / "tests_infra" / "test_stage2.py").write_text(STAGE2)
    (path / "tests_api" / "test_api.py").write_text("def test_nothing():\n    pass\n")
    (path / "conftest.py").write_text(CONFTEST)
    (path / "pytest.ini").write_text(INI)
    shutil.copy(ROOT / "pyproject.toml", path)  # the reference platform's [tool.envfixtures]: its templates' paths


def run_gate(path: Path) -> list[subprocess.CompletedProcess[str]]:
    # CI=true as on Jenkins: pytest then shows each failure's message in full on its summary line.
    env = {
        **os.environ,
        "CI": "true",
        "ENVFIXTURES_SHA": SHA,
        "ENVFIXTURES_BRANCH": BRANCH,
        "ENVFIXTURES_HOME": str(path / "state"),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    done = []
    for argv in gate_commands():
        argv = [sys.executable, "-m", *argv] if argv[0] == "pytest" else argv
        done.append(subprocess.run(argv, cwd=path, env=env, capture_output=True, text=True, timeout=300))
        if done[-1].returncode != 0:
            break
    return done


def marked_leftovers() -> list[int]:
    """Processes of any environment of this test (their names carry the branch)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(processes.MARKER, "").startswith(f"ef-{BRANCH}"):
                found.append(proc.pid)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def test_the_gate_runs_the_static_stage_first() -> None:
    """The platform's static checks alone (the library's unit tests are tox -e unit, not the gate's)."""
    commands = gate_commands()
    assert commands[0][0] == "pytest" and "--env-static-only" in commands[0], commands
    assert not any(arg.startswith("tests_unit") for arg in commands[0]), commands
    assert len(commands) >= 2 and "--env-static-only" not in commands[1]


# The static stage's item of the template fails with every finding, one a line: `FAILED <its id> - <the first>`.
FAILED_ITEM = r"FAILED templates/cloudformation/environment\.yaml::static_rules - .*environment\.yaml:line {line}: "


@pytest.mark.parametrize(
    ("case_file", "reason"),
    [
        ("db-open-to-world.yaml", FAILED_ITEM + r".*\[cfn-(world-open|private-sources)\]"),  # both rules see it
        ("yaml-indentation.yaml", FAILED_ITEM + r"does not parse"),
        ("property-typo.yaml", FAILED_ITEM + r"E3002 .*\[cfn-lint\]"),
    ],
    ids=["rule-violation", "parse-error", "cfn-lint"],
)
def test_a_broken_template_stops_the_gate_in_the_static_stage(tmp_path: Path, case_file: str, reason: str) -> None:
    make_project(tmp_path, case_file)
    case = next(c for c in corpus.cases() if c.file == case_file)
    line = corpus.expected_line(case, tmp_path / "templates" / "cloudformation" / "environment.yaml")
    done = run_gate(tmp_path)
    assert len(done) == 1, "the gate went past its static stage"
    out = done[0].stdout + done[0].stderr
    assert done[0].returncode != 0, out
    matching = [ln for ln in out.splitlines() if re.search(reason.format(line=line), ln)]
    assert matching, f"no one-line reason naming the file and line {line}:\n{out[-3000:]}"
    assert not (tmp_path / "state").exists(), "an environment was materialized: something was built"
    assert not (tmp_path / "tests_infra" / "imported").exists(), "the static stage imported a test module"
    junit = (tmp_path / "reports" / "static.xml").read_text()
    assert re.search(r'<testcase classname="templates\.cloudformation\.environment\.yaml" name="static_rules"[^>]*>'
                     r"<failure", junit), junit  # fmt: skip
    assert marked_leftovers() == []


def test_with_good_templates_the_gate_goes_on_and_builds(tmp_path: Path) -> None:
    """The control: the same project with the real templates passes stage 1 and builds in stage 2."""
    make_project(tmp_path, None)
    done = run_gate(tmp_path)
    assert [d.returncode for d in done] == [0, 0], (done[-1].stdout + done[-1].stderr)[-3000:]
    journals = list((tmp_path / "state" / "envs").glob("*/resources.jsonl"))
    assert len(journals) == 1 and '"state": "started"' in journals[0].read_text()
    assert (tmp_path / "tests_infra" / "imported").exists(), "the mark of an imported test module works"
    static = done[0].stdout
    assert re.search(r"^1 passed", static.splitlines()[-1]), static  # the template's item; sleeper deploys no file
    assert marked_leftovers() == []
