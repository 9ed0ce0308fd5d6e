"""Secrets in every sink of a run, and on disk after it — proven on pytester projects.

A secret setting (``sleeper_password``, 300 random characters: pytest cuts its repr in the middle) reaches the
sleeper's facts; the tests compare those facts, send them in a basic-auth header, log and print them. No run of 8
characters of it reaches JUnit, summary.md, report.html, the terminal or live logs; and no form of a secret stays
under the state home after a failed ``envfixtures up``, nor after ``envfixtures down``.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import SHA, Project
from envfixtures.core.facts import MASK
from envfixtures.testing import SECRET

#: Long enough that pytest's saferepr (240 characters) cuts it in the middle of a failure's "Differing items".
PASSWORD = secrets.token_urlsafe(225)
assert len(PASSWORD) == 300

INI = f"""
[pytest]
env_components = sleeper dependent
env_settings =
    quiet=false
    sleeper_password={PASSWORD}
log_cli = true
log_cli_level = WARNING
junit_logging = all
"""

TESTS = """
import base64
import logging
import warnings

def test_facts(sleeper):
    assert sleeper == {"password": "what the test expected", "pid": sleeper["pid"]}

def test_header(sleeper):
    header = "Basic " + base64.b64encode(("envfixtures-admin:" + sleeper["password"]).encode()).decode()
    assert header == "Basic nothing", "sent " + header[:60] + "..."

def test_logged(sleeper, record_property):
    record_property("amqp_url", "amqp://admin:" + sleeper["password"] + "@127.0.0.1:5672/")
    logging.getLogger("app").warning("connecting with password %s", sleeper["password"])
    print("printed:", sleeper["password"])
    warnings.warn("deprecated: a password in a URL, " + sleeper["password"][:50])
    assert 0
"""

UP = """
import sys
from envfixtures import cli
from envfixtures.core import registry
registry.register("sleeper", "envfixtures.testing:Sleeper")
registry.register("dependent", "envfixtures.testing:Dependent")
sys.exit(cli.main(sys.argv[1:]))
"""


def runs(value: str, n: int = 8) -> set[str]:
    return {value[i : i + n] for i in range(len(value) - n + 1)}


#: Every run of 8 characters of the password, and of what encodes it in the basic-auth header (any alignment).
LEAKS = runs(PASSWORD) | {
    run
    for user in ("", "a", "ab", "envfixtures-admin")
    for run in runs(base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()[len(user) + 4 :])
}


def leaked(text: str) -> list[str]:
    found = sorted(run for run in LEAKS if run in text)
    return found + ([SECRET] if SECRET in text else [])


def assert_nothing_leaked(project: Project, result: pytest.RunResult) -> None:
    files = sorted(p for p in (project.path / "reports").iterdir() if p.is_file())
    assert {"junit.xml", "report.html", "summary.md"} <= {p.name for p in files}
    for path in files:
        assert leaked(path.read_text()) == [], f"a secret in {path.name}"
    assert leaked(result.stdout.str() + result.stderr.str()) == [], "a secret on the terminal"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_truncated_repr_basic_auth_and_logs_are_masked_in_every_sink(project: Project, workers: list[str]) -> None:
    project.pytester.makeini(INI)
    project.pytester.makepyfile(test_x=TESTS)
    result = project.run(*workers, "--junitxml=reports/junit.xml")
    result.assert_outcomes(failed=3)

    suite = ET.parse(project.path / "reports" / "junit.xml").getroot().find("testsuite")
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    facts = cases["test_facts"].find("failure").text
    # pytest cut the 300 characters in the middle: both ends of the cut are masked, not just the whole value.
    assert f"{{'password': '{MASK}...{MASK}'}} != {{'password': 'what the test expected'}}" in facts
    header = cases["test_header"].find("failure")
    assert header.get("message").startswith(f"AssertionError: sent Basic {MASK}..."), header.get("message")
    logged = cases["test_logged"]
    assert f"printed: {MASK}" in "".join(out.text or "" for out in logged.iter("system-out"))
    properties = {p.get("name"): p.get("value") for p in logged.iter("property")}
    assert properties["amqp_url"] == f"amqp://admin:{MASK}@127.0.0.1:5672/"
    if not workers:  # xdist workers' live logs do not reach the terminal
        lines = result.stdout.lines
        live = lines[next(i for i, line in enumerate(lines) if "live log call" in line) + 1]
        assert live.startswith("WARNING ") and live.endswith(f"connecting with password {MASK}"), live
    assert f"UserWarning: deprecated: a password in a URL, {MASK}" in result.stdout.str()
    md = (project.path / "reports" / "summary.md").read_text()
    assert "- `test_x.py::test_header` — AssertionError: sent Basic \\*\\*\\*\\*\\*\\*\\*\\*..." in md
    assert_nothing_leaked(project, result)


def test_output_of_tests_run_without_capture_is_masked(project: Project) -> None:
    """``-s``: what a test prints goes straight to the terminal, through a redacting sys.stdout/sys.stderr."""
    project.pytester.makeini(INI)
    project.pytester.makepyfile(
        test_x="""
import sys

def test_prints(sleeper):
    print("password:", sleeper["password"])
    sys.stderr.write("head " + sleeper["password"][:20])
    sys.stderr.write("... and the rest\\n")
"""
    )
    result = project.run("-s", "--junitxml=reports/junit.xml")
    result.assert_outcomes(passed=1)
    out = result.stdout.str() + result.stderr.str()
    assert f"password: {MASK}" in out and f"head {MASK}... and the rest" in out
    assert_nothing_leaked(project, result)


def _cli(project: Project, *args: str) -> subprocess.CompletedProcess:
    (project.path / "up.py").write_text(UP)
    return subprocess.run(
        [sys.executable, "up.py", *args], cwd=project.path, capture_output=True, text=True, timeout=60
    )


def files_with_secrets(home: Path) -> list[str]:
    """Every file under the state home holding a run of 8 characters of the password, or the sleeper's token."""
    found = []
    for path in sorted(p for p in home.rglob("*") if p.is_file() and not p.is_symlink()):
        if leaked(path.read_bytes().decode("utf-8", "replace")):
            found.append(str(path.relative_to(home)))
    return found


def test_failed_up_leaves_no_secret_on_disk(project: Project) -> None:
    """The sleeper writes its secrets into its config (work/sleeper/sleeper.conf), then its build fails: `up` tears
    down, keeps work/ as evidence, scrubbed, and forgets every secret."""
    project.pytester.makeini(INI.replace("quiet=false", "quiet=false\n    sleeper_fail=true"))
    failed = _cli(project, "up", "sleeper", "--sha", SHA)
    assert failed.returncode == 2 and "sleeper was told to fail (and its secret is ********)" in failed.stderr
    env = project.env()
    assert project.meta(env)["status"] == "torn_down" and project.alive(env) == []
    conf = env / "work" / "sleeper" / "sleeper.conf"
    assert conf.read_text() == f"token = {MASK}\npassword = {MASK}\n", "the evidence stays, without its secrets"
    assert not (env / "secrets.jsonl").exists()
    assert project.meta(env)["settings"]["sleeper_password"] == MASK
    assert files_with_secrets(project.path / ".envfixtures") == []
    assert leaked(failed.stdout + failed.stderr) == []


def test_kept_environment_holds_its_secrets_privately_until_down(project: Project) -> None:
    project.pytester.makeini(INI)
    up = _cli(project, "up", "sleeper", "--sha", SHA)
    assert up.returncode == 0, up.stderr
    env = project.env()
    assert project.meta(env)["settings"]["sleeper_password"] == MASK, "env.json holds a mask for a secret setting"
    kept = json.loads((env / "components" / "sleeper.json").read_text())["facts"]["values"]
    assert kept["password"] == PASSWORD, "a kept environment's facts hold its secrets (0600), for --env-reuse"
    assert leaked(up.stdout + up.stderr) == []

    down = _cli(project, "down", env.name)
    assert down.returncode == 0, down.stderr
    assert files_with_secrets(project.path / ".envfixtures") == []


def test_a_secret_given_on_the_command_line_is_warned_about(project: Project) -> None:
    project.pytester.makeini("[pytest]\nenv_components = sleeper\n")
    up = _cli(
        project,
        "up",
        "sleeper",
        "--sha",
        SHA,
        "--set",
        "sleeper_fail=true",
        "--set",
        f"sleeper_password={PASSWORD[:40]}",
    )
    assert "warning: --set sleeper_password: a command line shows in `ps`" in up.stderr
    assert files_with_secrets(project.path / ".envfixtures") == []


def test_a_secret_setting_comes_from_the_environment_and_on_the_gate_s_command_line_is_warned_about(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Jenkins credentials binding gives ENVFIXTURES_SETTING_<KEY> (a process's environment is its owner's alone);
    the same secret given with --env-set, which `ps` shows to every user, gets a warning that names the variable."""
    project.pytester.makeini("[pytest]\nenv_components = sleeper\n")
    project.pytester.makepyfile(test_it="def test_it(sleeper):\n    assert sleeper['password'].startswith('given-')\n")
    from_environment = f"given-{secrets.token_hex(16)}"
    monkeypatch.setenv("ENVFIXTURES_SETTING_SLEEPER_PASSWORD", from_environment)
    result = project.run()
    result.assert_outcomes(passed=1)
    assert "a command line shows in `ps`" not in result.stdout.str()
    [env] = project.envs()
    assert project.meta(env)["settings"]["sleeper_password"] == MASK

    monkeypatch.delenv("ENVFIXTURES_SETTING_SLEEPER_PASSWORD")
    on_command_line = f"given-{secrets.token_hex(16)}"
    result = project.run("--env-set", f"sleeper_password={on_command_line}")
    result.assert_outcomes(passed=1)
    output = " ".join((result.stdout.str() + result.stderr.str()).split())
    assert (
        "--env-set sleeper_password: a command line shows in `ps` to every user of this machine; give a secret as "
        "ENVFIXTURES_SETTING_SLEEPER_PASSWORD=... in the environment instead" in output
    )
    assert on_command_line not in output and from_environment not in output
