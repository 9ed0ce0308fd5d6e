"""The environment lifecycle, proven by running pytest on small projects (pytester), serially and under -n 2."""

from __future__ import annotations

import signal
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import SHA, Project, interrupt
from envfixtures.testing import SECRET

USES_SLEEPER = """
def test_a(sleeper):
    assert sleeper["pid"] > 0

def test_b(sleeper):
    assert sleeper["pid"] > 0

def test_c(dependent, sleeper):
    assert dependent["sleeper_pid"] == sleeper["pid"]

def test_d(sleeper):
    assert sleeper["pid"] > 0
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_built_once_torn_down_once(project: Project, workers: list[str]) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    result = project.run(*workers, "--junitxml=reports/junit.xml")
    result.assert_outcomes(passed=4)
    assert project.intents("sleeper/sleep") == 1
    assert project.intents("dependent/sleep") == 1
    stopped = [r for r in project.journal() if r.get("state") == "stopped"]
    assert len(stopped) == 2
    assert project.meta()["status"] == "torn_down"
    assert project.alive() == []
    assert result.stderr.str().count("torn down in") == 1
    on_disk = [p for p in project.env().rglob("*") if p.is_file() and SECRET in p.read_text(errors="replace")]
    assert on_disk == [], "after teardown no generated secret stays on disk"


def test_junit_carries_sha_env_and_backend_under_xdist(project: Project) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    project.run("-n", "2", "--junitxml=reports/junit.xml").assert_outcomes(passed=4)
    suite = ET.parse(project.path / "reports" / "junit.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["envfixtures.sha"] == "0123456789abcdef0123456789abcdef01234567"
    assert props["envfixtures.env"] == project.env().name
    assert props["envfixtures.backend"] == "local"
    assert len(suite.findall("testcase")) == 4


def test_selection_without_components_builds_nothing(project: Project) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER + "\ndef test_plain():\n    assert 1 + 1 == 2\n")
    project.run("-n", "2", "-k", "plain").assert_outcomes(passed=1)  # xdist's controller does not count deselected
    assert project.envs() == [], "no state directory: nothing was built"


def test_failing_test_still_tears_down(project: Project) -> None:
    project.pytester.makepyfile(test_x="def test_bad(sleeper):\n    assert sleeper['pid'] < 0\n")
    project.run().assert_outcomes(failed=1)
    assert project.meta()["status"] == "torn_down"
    assert project.started_pids() and project.alive() == []


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_failed_build_is_recorded_not_retried_and_redacted(project: Project, workers: list[str]) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    result = project.run(*workers, "--env-set", "sleeper_fail=true")
    result.assert_outcomes(errors=4)
    out = result.stdout.str()
    assert "sleeper was told to fail" in out
    assert "failed to build earlier in this run (not retried)" in out
    assert "requirement 'sleeper' failed" in out
    assert SECRET not in out
    assert project.intents("sleeper/sleep") == 1
    assert project.intents("dependent/sleep") == 0
    assert project.meta()["status"] == "torn_down"
    assert project.alive() == []


@pytest.mark.parametrize(
    ("sig", "group", "workers"),
    [
        (signal.SIGINT, True, []),
        (signal.SIGINT, True, ["-n", "2"]),
        (signal.SIGTERM, False, []),
        (signal.SIGTERM, False, ["-n", "2"]),
        (signal.SIGTERM, True, ["-n", "2"]),
    ],
    ids=["ctrl-c", "ctrl-c-xdist", "sigterm", "sigterm-xdist", "sigterm-group-xdist"],
)
def test_interrupted_mid_build_leaves_nothing(project: Project, sig: int, group: bool, workers: list[str]) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    proc = project.popen(*workers, "--env-set", "sleeper_build_seconds=60")
    env = project.wait_for_started("sleeper/sleep")  # mid-build: its process exists, the build goes on
    out = interrupt(proc, sig, group=group)
    assert proc.returncode != 0, out
    assert project.started_pids(env), out
    assert project.alive(env) == [], out
    assert project.meta(env)["status"] == "torn_down", out


def test_keep_then_reuse_builds_nothing_then_down(project: Project) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    first = project.run("--env-keep")
    first.assert_outcomes(passed=4)
    env = project.env()
    assert project.meta(env)["status"] == "kept"
    assert f"envfixtures down {env.name}" in first.stdout.str()
    assert project.alive(env), "a kept environment keeps its processes"

    second = project.run("-n", "2", "--env-reuse", env.name)
    second.assert_outcomes(passed=4)
    assert "building" not in second.stderr.str()
    assert project.intents("sleeper/sleep", env) == 1
    assert project.alive(env)

    down = subprocess.run(
        [sys.executable, "-m", "envfixtures.cli", "down", env.name], cwd=project.path, capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
    assert project.alive(env) == []
    assert project.meta(env)["status"] == "torn_down"


def test_sigkill_mid_build_then_reap(project: Project) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    proc = project.popen("--env-set", "sleeper_build_seconds=60")
    env = project.wait_for_started("sleeper/sleep")
    proc.kill()
    proc.wait(timeout=10)
    assert project.alive(env), "SIGKILL leaves the build's processes behind"
    reap = subprocess.run(
        [sys.executable, "-m", "envfixtures.cli", "reap"], cwd=project.path, capture_output=True, text=True
    )
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert f"{env.name}: reaped" in reap.stdout
    assert project.alive(env) == []


def test_reap_leaves_kept_environments(project: Project) -> None:
    project.pytester.makepyfile(test_x=USES_SLEEPER)
    project.run("--env-keep").assert_outcomes(passed=4)
    env = project.env()
    reap = subprocess.run(
        [sys.executable, "-m", "envfixtures.cli", "reap"], cwd=project.path, capture_output=True, text=True
    )
    assert "reaped 0 environment(s)" in reap.stdout
    assert project.alive(env)
    subprocess.run([sys.executable, "-m", "envfixtures.cli", "down", env.name], cwd=project.path, check=True)
    assert project.alive(env) == []


def test_bad_template_fails_in_one_line_before_anything_starts(project: Project) -> None:
    (project.path / "templates" / "templated.json").write_text('{\n  "ok": true,\n  oops\n}\n')
    project.pytester.makepyfile(test_x="def test_t(templated):\n    pass\n")
    result = project.run("-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "templated.json" in line]
    template = project.path / "templates" / "templated.json"
    assert errors == [f"ERROR: {template}:line 3: Expecting property name enclosed in double quotes"]
    assert project.envs() == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--env-backend", "gcp"], "--env-backend"),
        (["--env-reuse", "Not A Name"], "--env-reuse"),
        (["--env-keep", "--env-set", "novalue"], "--env-set"),
    ],
)
def test_bad_option_is_a_usage_error_naming_it(project: Project, args: list[str], named: str) -> None:
    project.pytester.makepyfile(test_x="def test_t():\n    pass\n")
    result = project.run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert named in result.stderr.str()


def test_bad_sha_from_environment_variable_names_it(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.pytester.makepyfile(test_x="def test_t():\n    pass\n")
    monkeypatch.setenv("ENVFIXTURES_BACKEND", "moon")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "$ENVFIXTURES_BACKEND" in result.stderr.str()


UP = """
import sys
from envfixtures import cli
from envfixtures.core import registry
registry.register("sleeper", "envfixtures.testing:Sleeper")
registry.register("dependent", "envfixtures.testing:Dependent")
sys.exit(cli.main(sys.argv[1:]))
"""


def test_cli_up_keeps_an_environment_and_masks_secrets_then_ls_and_down(project: Project) -> None:
    (project.path / "up.py").write_text(UP)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "up.py", *args], cwd=project.path, capture_output=True, text=True, timeout=60
        )

    up = cli("up", "dependent", "--sha", "0123456789abcdef0123456789abcdef01234567")
    assert up.returncode == 0, up.stderr
    env = project.env()
    assert up.stdout.splitlines()[0] == env.name
    assert '"token": "********"' in up.stdout and SECRET not in up.stdout + up.stderr
    assert "building sleeper" in up.stderr and "building dependent" in up.stderr
    assert project.meta(env)["status"] == "kept" and len(project.alive(env)) == 2

    listing = cli("ls")
    row = next(line for line in listing.stdout.splitlines() if line.startswith(env.name))
    assert "kept" in row and "dependent,sleeper" in row

    assert cli("down", env.name).returncode == 0
    assert project.alive(env) == [] and project.meta(env)["status"] == "torn_down"


def test_cli_up_refuses_a_setting_without_a_value_before_anything_starts(project: Project) -> None:
    (project.path / "up.py").write_text(UP)
    up = subprocess.run(
        [sys.executable, "up.py", "up", "sleeper", "--sha", "0" * 40, "--set", "novalue"],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 2
    assert up.stderr.strip() == "envfixtures: --set: expected KEY=VALUE, got 'novalue'"
    assert project.envs() == []


def _cli(project: Project, *args: str, **kwargs) -> subprocess.CompletedProcess:
    (project.path / "up.py").write_text(UP)
    return subprocess.run(
        [sys.executable, "up.py", *args], cwd=project.path, capture_output=True, text=True, timeout=60, **kwargs
    )


def test_cli_up_refuses_a_sha_that_is_not_hex_in_one_line(project: Project) -> None:
    up = _cli(project, "up", "sleeper", "--sha", "nothex")
    assert up.returncode == 2
    assert up.stderr.strip() == "envfixtures: --sha: not a git SHA (7 to 40 hex digits): 'nothex'"
    assert project.envs() == []


def test_cli_up_builds_the_ini_components_with_the_ini_settings(project: Project) -> None:
    """Without arguments `up` builds what pytest would from this directory: ini env_components and env_settings."""
    project.pytester.makeini("[pytest]\nenv_components = sleeper\nenv_settings =\n    sleeper_fail=true\n")
    failed = _cli(project, "up", "--sha", SHA)
    assert failed.returncode != 0 and "sleeper was told to fail" in failed.stderr
    assert project.alive(project.env()) == [], "a failed up tears down what it started"

    project.pytester.makeini("[pytest]\nenv_components = sleeper\nenv_settings =\n    sleeper_build_seconds=0\n")
    up = _cli(project, "up", "--sha", SHA)
    assert up.returncode == 0, up.stderr
    env = next(e for e in project.envs() if project.meta(e)["status"] == "kept")
    assert "building sleeper" in up.stderr and "building dependent" not in up.stderr
    assert _cli(project, "down", env.name).returncode == 0
    assert project.alive(env) == []


def test_cli_ls_into_a_closed_pipe_ends_quietly(project: Project) -> None:
    (project.path / "up.py").write_text(UP)
    proc = subprocess.Popen(
        [sys.executable, "up.py", "ls"], cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # like `envfixtures ls | head -n 0`: the reader is gone before the first line
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipeError" not in err, err.decode()
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("sleeper_fial=true", "unknown setting 'sleeper_fial'; known: "),
        ("sleeper_build_seconds=soon", "sleeper_build_seconds='soon': expected a number"),
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_a_bad_setting_is_a_usage_error_before_anything_starts(project: Project, setting: str, message: str) -> None:
    project.pytester.makepyfile(test_x="def test_t(sleeper):\n    pass\n")
    result = project.run("--env-set", setting)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    if "known" in message:
        assert "sleeper_build_seconds" in result.stderr.str() and "listener_host" not in result.stderr.str()
    assert project.envs() == []
