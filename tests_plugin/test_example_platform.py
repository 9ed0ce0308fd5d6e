"""Another team's platform by configuration alone: examples/acme, a git repository of its own, its component
installed from a wheel of its own package (the entry point), built and verified under ``-n 2``, torn down.

Also what another team meets first: the CLI loads the same configuration (``envfixtures check``, ``up``,
``down``), a missing configured path is named in one line before anything is built, and old state is pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from envfixtures.core.processes import find_marked

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "acme"
#: Names of the reference platform: none may appear in the example (it proves nothing of ours is assumed).
REFERENCE_NAMES = ("orders-api", "fulfilment", "platform_services", "DbMasterPassword", "mesos-agent", "EnvName",
                   "GitSha", "templates/", "services/")  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The example as its own repository (one commit: a clean tree), and an environment where its package is
    installed from the wheel its pyproject.toml builds."""
    base = tmp_path_factory.mktemp("acme")
    repo = base / "acme"
    shutil.copytree(
        EXAMPLE, repo, ignore=shutil.ignore_patterns(".envfixtures", "reports", "__pycache__", "*.egg-info")
    )
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=acme", "-c", "user.email=ci@acme.test", "commit", "-qm", "acme")
    wheels, site = base / "wheels", base / "site"
    code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    built = subprocess.run([sys.executable, "-c", code, str(wheels)], cwd=repo, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    with zipfile.ZipFile(wheels / built.stdout.strip().splitlines()[-1]) as wheel:
        wheel.extractall(site)  # what installing a pure-Python wheel amounts to
    shutil.rmtree(repo / "build", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(site), "ENVFIXTURES_HOME": str(base / "state"), "CI": "true"}
    for key in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "ENVFIXTURES_SHA", "BRANCH_NAME"):
        env.pop(key, None)
    return repo, env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_example_shares_no_name_with_the_reference_platform() -> None:
    for name in git(ROOT, "ls-files", "examples/acme").splitlines():
        path = ROOT / name
        if path.suffix != ".md":  # its README compares itself with the reference platform
            text = path.read_text(errors="replace")
            found = [name for name in REFERENCE_NAMES if name in text]
            assert not found, f"{path.relative_to(ROOT)} names {found}"


def test_the_example_builds_and_passes_by_configuration_alone(acme: tuple[Path, dict[str, str]]) -> None:
    repo, env = acme
    done = run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-v"], repo, env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "failed" not in done.stdout.splitlines()[-1] and " passed" in done.stdout.splitlines()[-1]
    passed = [line.split()[-1] for line in done.stdout.splitlines() if " PASSED " in line]
    assert "infra/stack.yaml::static_rules" in passed and "broker/definitions.json::static_rules" in passed
    assert len([p for p in passed if p.startswith("checks/")]) >= 10, "acme's own tests ran"
    record = json.loads((repo / "reports" / "promotion.json").read_text())
    assert record["sha"] == git(repo, "rev-parse", "HEAD")
    expected = {"infra/stack.yaml", "broker/definitions.json", "deploy/marathon/storefront.json",
                "deploy/marathon/ledger-writer.json"}  # fmt: skip
    assert set(record["inputs"]) == expected
    assert record["inputs"]["infra/stack.yaml"] == hashlib.sha256((repo / "infra/stack.yaml").read_bytes()).hexdigest()

    [state_dir] = (Path(env["ENVFIXTURES_HOME"]) / "envs").iterdir()
    meta = json.loads((state_dir / "env.json").read_text())
    assert meta["status"] == "torn_down" and find_marked(meta["name"]) == []
    webroot = json.loads((state_dir / "components" / "webroot.json").read_text())
    assert webroot["impl"] == "acme_webroot:Webroot", "the component came from the package's entry point"
    assert webroot["status"] == "torn_down"
    assert not (state_dir / "components" / "artifact.json").exists(), "acme builds no artifact"
    database = json.loads((state_dir / "components" / "database.json").read_text())
    assert database["facts"]["values"]["dbname"] == "ledger" and database["facts"]["values"]["user"] == "ledger_app"


def test_the_cli_loads_the_platforms_configuration(acme: tuple[Path, dict[str, str]]) -> None:
    """`envfixtures check` lists acme's inputs; `up` builds acme's own component; `down` tears it down."""
    repo, env = acme
    cli = [sys.executable, "-m", "envfixtures.cli"]
    checked = run([*cli, "check"], repo, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "infra/stack.yaml: ok" in checked.stdout and "deploy/marathon/storefront.json: ok" in checked.stdout

    up = run([*cli, "up", "webroot"], repo, env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    name = up.stdout.splitlines()[0]
    assert "webroot:" in up.stdout and str(repo / "static") in up.stdout
    down = run([*cli, "down", name], repo / "checks", env, timeout=120)  # from elsewhere in the checkout
    assert down.returncode == 0, down.stdout + down.stderr
    assert find_marked(name) == []


def test_a_missing_configured_path_is_one_line_before_anything_is_built(
    acme: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, env = acme
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    pyproject = broken / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('templates = "deploy/marathon"', 'templates = "deploy/apps"'))
    env = {**env, "ENVFIXTURES_HOME": str(tmp_path / "state")}
    done = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"], broken, env)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("ERROR: ")]
    assert done.returncode != 0
    assert errors == [
        f"ERROR: {pyproject} [tool.envfixtures.apps] templates: 'deploy/apps' is not a directory under {broken}"
    ]
    assert not (tmp_path / "state").exists(), "nothing was built, nothing was written"


def test_torn_down_state_is_pruned_after_the_configured_retention(
    acme: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    repo, env = acme
    project = tmp_path / "project"
    shutil.copytree(repo, project)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("prune_after_days = 7", "prune_after_days = 0"))
    (project / "checks" / "test_quick.py").write_text("def test_webroot(webroot):\n    assert webroot['url']\n")
    env = {**env, "ENVFIXTURES_HOME": str(tmp_path / "state")}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "checks/test_quick.py"]
    first = run(argv, project, env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    [old] = (tmp_path / "state" / "envs").iterdir()
    second = run(argv, project, env, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    [new] = (tmp_path / "state" / "envs").iterdir()
    assert new.name != old.name, "the first run's torn-down state went when the second run started"


HOOKED = """
import dataclasses

from envfixtures.core.component import Component
from envfixtures.core.facts import Facts


class Cache(Component):
    name = "cache"

    @dataclasses.dataclass(frozen=True)
    class Config:
        seconds: int = 600

    def build(self, ctx):
        process = ctx.spawn("sleep", ["sleep", str(ctx.config.seconds)])
        return Facts({"pid": process.pid, "seconds": ctx.config.seconds})
"""


def test_a_component_from_a_conftest_hook_is_built_kept_and_torn_down_by_the_cli(tmp_path: Path) -> None:
    """The hook pytest_envfixtures_components; `envfixtures down` later loads the class from the checkout."""
    (tmp_path / "teamparts.py").write_text(HOOKED)
    (tmp_path / "conftest.py").write_text(
        "def pytest_envfixtures_components(config):\n    return {'cache': 'teamparts:Cache'}\n"
    )
    (tmp_path / "pyproject.toml").write_text('[tool.envfixtures]\ncomponents = ["cache"]\n'
                                             "[tool.envfixtures.cache]\nseconds = 300\n")  # fmt: skip
    (tmp_path / "test_cache.py").write_text("def test_cache(cache):\n    assert cache['seconds'] == 300\n")
    env = {**os.environ, "ENVFIXTURES_SHA": "0123456789abcdef", "ENVFIXTURES_HOME": str(tmp_path / "state")}
    env.pop("PYTEST_XDIST_WORKER", None)
    kept = run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--env-keep"], tmp_path, env, 120)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    [state_dir] = (tmp_path / "state" / "envs").iterdir()
    assert find_marked(state_dir.name), "the kept environment's sleep runs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    down = run([sys.executable, "-m", "envfixtures.cli", "--home", str(tmp_path / "state"), "down", state_dir.name],
               elsewhere, {**env, "PYTHONPATH": ""}, 120)  # fmt: skip
    assert down.returncode == 0, down.stdout + down.stderr
    assert find_marked(state_dir.name) == []
