"""The layers hold (docs/architecture.md): import-linter's contracts pass on the tree, and break on a violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter is not installed (pip install .[test])")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "envfixtures", tree / "envfixtures", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold_on_the_tree(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/waiting.py", "import pytest", "core knows no pytest"),
        ("core/facts.py", "from envfixtures.drivers.marathon import client", "core knows no pytest, no service"),
        ("drivers/rabbitmq/management.py", "from envfixtures.core import environment", "drivers stand alone"),
        ("components/topology.py", "from envfixtures.pytest import reports", "components, rules and the lifecycle"),
    ],
)
def test_a_violation_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = _copy(tmp_path)
    path = tree / "envfixtures" / module
    path.write_text(path.read_text() + f"\n{line}  # a deliberate break\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout
