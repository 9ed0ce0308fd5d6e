"""A per-vhost export of a running broker of this project's own environment (``GET /api/definitions/<vhost>``)
is accepted as ``templates/rabbitmq/definitions.json``, and the gate's topology suite passes with it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from envfixtures.core import config
from envfixtures.core.environment import Environment
from envfixtures.core.processes import find_marked
from envfixtures.drivers.rabbitmq.management import Management

ROOT = Path(__file__).resolve().parents[1]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _export(tmp_path: Path) -> dict:
    """Build broker and topology from this checkout (one node), export the vhost, tear down."""
    env = Environment(
        name="ef-0123456-xprt", sha=_git(ROOT, "rev-parse", "HEAD"), backend="local", root=ROOT,
        home=tmp_path / "export-home", settings={"broker_nodes": "1", "quiet": "true"},
        components=["broker", "topology"], config=config.find(ROOT),
    )  # fmt: skip
    env.description = env.describe()
    try:
        topology = env.ensure("topology")
        broker = env.facts("broker")
        mgmt = Management(broker["management_url"], broker["admin_user"], broker["admin_password"])
        try:
            return mgmt.get(f"/definitions/{quote(topology['vhost'], safe='')}")
        finally:
            mgmt.close()
    finally:
        env.teardown()
        assert find_marked(env.name) == []


def test_a_per_vhost_export_round_trips_through_the_gate(tmp_path: Path) -> None:
    export = _export(tmp_path)
    assert "vhosts" not in export and export.get("queues"), "the per-vhost shape, with the environment's queues"
    assert {"rabbit_version", "parameters"} <= set(export), "what an export always carries"

    project = tmp_path / "project"
    for rel in ("conftest.py", "pyproject.toml", "tests_infra/test_topology.py", "templates/rabbitmq"):
        source = ROOT / rel
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / rel)
    (project / "templates/rabbitmq/definitions.json").write_text(json.dumps(export, indent=2) + "\n")
    (project / "pytest.ini").write_text(
        "[pytest]\nenv_components = broker topology\nenv_settings =\n    broker_nodes=1\n"
        "markers =\n    fault: destroys part of an environment on purpose\n"
    )
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the export as definitions")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests_infra/test_topology.py", "-p", "no:cacheprovider", "-q"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]
