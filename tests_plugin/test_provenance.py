"""A promotion record vouches for the SHA as committed: proven on pytester projects that are git checkouts.

The SHA's provenance is computed from git on every run, ``--env-sha`` or not: HEAD must be the SHA, no tracked
file changed, and nothing uncommitted under the paths the run reads (the components' inputs and their
directories). A reuse run never promotes. Each refusal is a reason in summary.md and on the terminal.
Counts include the static stage's item per input file (``templates/*.json``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONFTEST, SHA, Project
from envfixtures import lifecycle
from envfixtures.core import config
from envfixtures.core.environment import Environment
from envfixtures.pytest import promotion

# ``deployer`` deploys every templates/*.json, as the apps deploy their templates.
DEPLOYER_CONFTEST = CONFTEST + 'registry.register("deployer", "envfixtures.testing:Deployer")\n'
DEPLOYER_INI = "[pytest]\nenv_components = sleeper deployer\n"

TESTS = """
def test_deployed(deployer):
    assert "templated.json" in deployer["deployed"]

def test_sleeper(sleeper):
    assert sleeper["pid"] > 0
"""


@pytest.fixture
def deploying(project: Project) -> Project:
    project.pytester.makeconftest(DEPLOYER_CONFTEST)
    project.pytester.makeini(DEPLOYER_INI)
    project.pytester.makepyfile(test_x=TESTS)
    return project


def record_of(project: Project) -> dict | None:
    path = project.path / "reports" / "promotion.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary_reasons(project: Project) -> list[str]:
    """The lines of summary.md's verdict that say why there is no promotion record (markdown unescaped)."""
    md = (project.path / "reports" / "summary.md").read_text()
    assert "No `promotion.json`:" in md, md
    return [line[2:].replace("\\", "") for line in md.splitlines() if line.startswith("- ")]


def deployed(project: Project) -> list[str]:
    return json.loads((project.env() / "components" / "deployer.json").read_text())["facts"]["values"]["deployed"]


# ---------------------------------------------------------------------- runs


def test_a_clean_run_on_head_promotes_head(deploying: Project) -> None:
    head = deploying.commit()
    deploying.sha = None  # the SHA from git, as on Jenkins
    scratch = deploying.path / "notes" / "scratch.txt"
    scratch.parent.mkdir()
    scratch.write_text("untracked, but nothing the run reads\n")
    result = deploying.run()
    result.assert_outcomes(passed=3)
    assert f"promotion.json written for {head}" in result.stdout.str()
    record = record_of(deploying)
    assert record is not None and record["sha"] == head
    assert list(record["inputs"]) == ["templates/templated.json"]
    assert deploying.meta()["provenance"] == [] and deploying.meta()["dirty"] is False


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("extra.json", False),  # deployed: the third app
        ("notes.txt", False),  # not deployed, but in a directory the run reads
        ("local.json", True),  # deployed though git ignores it: an input must be committed
    ],
    ids=["untracked-input", "untracked-in-input-dir", "ignored-input"],
)
def test_an_uncommitted_file_the_run_reads_blocks_promotion_and_is_named(
    deploying: Project, name: str, ignored: bool
) -> None:
    if ignored:
        (deploying.path / ".gitignore").write_text(".envfixtures/\nreports/\n__pycache__/\ntemplates/local.json\n")
    deploying.sha = deploying.commit()  # --env-sha HEAD: the tree is checked all the same
    (deploying.path / "templates" / name).write_text('{"id": "third-app"}\n')
    result = deploying.run()
    result.assert_outcomes(passed=3 + name.endswith(".json"))
    if name.endswith(".json"):
        assert name in deployed(deploying), "the file was deployed: the SHA does not hold what ran"
    assert record_of(deploying) is None
    why = f"files this run reads are not committed (templates/{name}): the SHA does not describe what was deployed"
    assert f"no promotion.json: {why}" in result.stdout.str()
    assert summary_reasons(deploying) == [why]
    assert deploying.meta()["dirty"] is True


def test_a_tracked_change_blocks_promotion_and_is_named(deploying: Project) -> None:
    deploying.sha = deploying.commit()
    (deploying.path / "templates" / "templated.json").write_text('{"ok": "edited"}\n')
    result = deploying.run()
    result.assert_outcomes(passed=3)
    assert record_of(deploying) is None
    assert summary_reasons(deploying) == [
        "the working tree has uncommitted changes (templates/templated.json): the SHA does not describe what ran"
    ]


def test_a_file_added_under_the_inputs_during_the_run_blocks_promotion(deploying: Project) -> None:
    deploying.pytester.makepyfile(
        test_x=TESTS + "\ndef test_adds_a_template(request):\n"
        "    (request.config.rootpath / 'templates' / 'late.json').write_text('{}')\n"
    )
    deploying.sha = deploying.commit()
    result = deploying.run()
    result.assert_outcomes(passed=4)
    assert record_of(deploying) is None
    assert summary_reasons(deploying) == [
        "at the end of the run, files this run reads are not committed (templates/late.json): the SHA does not "
        "describe what was deployed"
    ]


@pytest.mark.parametrize("case", ["older-commit", "not-a-commit", "no-git"])
def test_an_env_sha_that_is_not_the_checkout_is_not_promoted(deploying: Project, case: str) -> None:
    if case != "no-git":
        first = deploying.commit("first")
        (deploying.path / "templates" / "second.json").write_text('{"id": "second"}\n')
        head = deploying.commit("second")
        deploying.sha = first if case == "older-commit" else SHA
    result = deploying.run()
    result.assert_outcomes(passed=3 + (case != "no-git"))
    assert record_of(deploying) is None
    expected = {
        "older-commit": lambda: (
            f"the checkout is at {head[:12]}, not at {first}: what was deployed from the working tree is not {first}"
        ),
        "not-a-commit": lambda: (
            f"{SHA} is not a commit of this checkout (HEAD is {head[:12]}): what was deployed is not {SHA}"
        ),
        "no-git": lambda: f"{deploying.path} is not a git checkout: nothing ties what was deployed to {SHA}",
    }[case]()
    assert summary_reasons(deploying) == [expected]
    assert f"no promotion.json: {expected}" in result.stdout.str()


def test_a_reuse_run_never_promotes_and_names_a_newer_head(deploying: Project) -> None:
    deploying.sha = None
    first = deploying.commit("first")
    kept = deploying.run("--env-keep")
    kept.assert_outcomes(passed=3)
    env = deploying.env()
    try:
        assert record_of(deploying)["sha"] == first, "the run that built the environment verified it"

        same = deploying.run("--env-reuse", env.name)
        same.assert_outcomes(passed=3)
        assert record_of(deploying) is None, "the earlier record is gone, and this run writes none"
        reuse_why = (
            f"--env-reuse: environment {env.name} was built by an earlier run, not by this one, and has been used "
            "since: a promotion record needs an environment built and verified by one run"
        )
        assert summary_reasons(deploying) == [reuse_why]

        deploying.pytester.makepyfile(test_y="def test_new(sleeper):\n    assert sleeper['pid'] > 0\n")
        second = deploying.commit("one more test")
        newer = deploying.run("-n", "2", "--env-reuse", env.name)
        newer.assert_outcomes(passed=4)  # the tests of the newer HEAD ran
        assert record_of(deploying) is None
        assert summary_reasons(deploying) == [
            f"environment {env.name} was built from {first}, the checkout is at {second[:12]}: the tests that ran "
            f"are not those of {first}",
            reuse_why,
        ]
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "envfixtures.cli", "down", env.name],
            cwd=deploying.path,
            capture_output=True,
            text=True,
        )
    assert down.returncode == 0, down.stderr


# ---------------------------------------------------------------------- units


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A checkout with an input directory (``deploy/``, one tracked template) and an ignored ``deploy/*.local``."""
    root = tmp_path / "repo"
    (root / "deploy").mkdir(parents=True)
    (root / "deploy" / "app.json").write_text("{}\n")
    (root / "other.txt").write_text("x\n")
    (root / ".gitignore").write_text("*.local\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    return root, git(root, "rev-parse", "HEAD")


def test_differences_from_sha_are_empty_for_a_clean_checkout_of_the_sha(repo: tuple[Path, str]) -> None:
    root, head = repo
    paths = [root / "deploy", root / "deploy" / "app.json"]
    (root / "deploy" / "editor.local").write_text("ignored, and not an input\n")
    (root / "scratch.txt").write_text("untracked, outside what the run reads\n")
    assert lifecycle.differences_from_sha(root, head, paths) == []
    assert lifecycle.differences_from_sha(root, head[:7], paths) == [], "an abbreviated HEAD is HEAD"


def test_differences_from_sha_name_what_differs(repo: tuple[Path, str], tmp_path: Path) -> None:
    root, head = repo
    (root / "deploy" / "app.json").write_text('{"edited": true}\n')
    (root / "other.txt").unlink()
    (root / "deploy" / "new.json").write_text("{}\n")
    (root / "deploy" / "kept.local").write_text("{}\n")  # ignored, but an input
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}\n")
    paths = [root / "deploy", root / "deploy" / "kept.local", outside]
    assert lifecycle.differences_from_sha(root, head, paths) == [
        "the working tree has uncommitted changes (deploy/app.json, other.txt): the SHA does not describe what ran",
        f"{outside} is read by this run but is outside the git checkout {root.resolve()}: {head} does not hold it",
        "files this run reads are not committed (deploy/kept.local, deploy/new.json): the SHA does not describe "
        "what was deployed",
    ]


def test_a_staged_file_is_a_change(repo: tuple[Path, str]) -> None:
    root, head = repo
    (root / "deploy" / "new.json").write_text("{}\n")
    git(root, "add", "deploy/new.json")
    assert lifecycle.differences_from_sha(root, head, [root / "deploy"]) == [
        "the working tree has uncommitted changes (deploy/new.json): the SHA does not describe what ran"
    ]


def test_read_paths_are_inputs_their_directories_configured_paths_and_the_configuration(tmp_path: Path) -> None:
    root = tmp_path
    for directory in ("templates/marathon", "db/migrations", "rabbit"):
        (root / directory).mkdir(parents=True)
    (root / "templates" / "marathon" / "a.json").write_text("{}\n")
    (root / "rabbit" / "definitions.json").write_text("{}\n")
    (root / "pyproject.toml").write_text(
        "[tool.envfixtures]\ncomponents = ['database', 'scheduler', 'apps', 'topology', 'broker']\n"
        "[tool.envfixtures.database]\nmigrations = 'db/migrations'\n"
        "[tool.envfixtures.apps]\ntemplates = 'templates/marathon'\nrequires = ['scheduler']\n"
        "[tool.envfixtures.topology]\ndefinitions = 'rabbit/definitions.json'\n"
    )
    platform = config.find(root)
    env = Environment(
        name="ef-0123456-read", sha=SHA, backend="local", root=root, home=root / "home", settings={},
        components=None, config=platform,
    )  # fmt: skip
    assert set(lifecycle.read_paths(env)) == {
        root / "pyproject.toml",
        root / "db" / "migrations",
        root / "templates" / "marathon",
        root / "templates" / "marathon" / "a.json",
        root / "rabbit",
        root / "rabbit" / "definitions.json",
    }
    assert root / "db" / "migrations" not in lifecycle.read_paths(env, ["apps"]), "only what the run's components read"


def test_reuse_refusals_name_a_sha_that_is_not_head_first() -> None:
    head, other = "a" * 40, "b" * 40
    same = promotion.reuse_refusals("ef-x", head[:12], head, head)
    assert len(same) == 1 and same[0].startswith("--env-reuse: environment ef-x was built by an earlier run")
    newer = promotion.reuse_refusals("ef-x", other, head, other)
    assert newer == [f"environment ef-x was built from {other}, the checkout is at aaaaaaaaaaaa: the tests that ran "
                     f"are not those of {other}", same[0]]  # fmt: skip
    assert promotion.reuse_refusals("ef-x", other, None, None)[0].startswith("the checkout is not a git checkout")
