"""A checkout in a private home (``/root`` is 0700 on Debian): PostgreSQL, which runs as ``postgres`` when the
gate runs as root, cannot reach the state directory, so its files go to a journaled scratch directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from envfixtures.core import config
from envfixtures.core.environment import Environment
from envfixtures.drivers.postgres import server as postgres

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when the gate runs as root"),
]


def test_a_private_home_moves_the_data_directory_out_and_teardown_removes_it(tmp_path: Path) -> None:
    home = tmp_path / "private-home"
    home.mkdir(mode=0o700)
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout
    env = Environment(
        name="ef-0123456-priv", sha=sha.strip(), backend="local", root=root, home=home / ".envfixtures",
        settings={"quiet": "true"}, components=["database"], config=config.find(root),
    )  # fmt: skip
    assert postgres.blocking_directory(env.dir / "work" / "database", may_change_under=env.dir) == home
    try:
        facts = env.ensure("database")
        scratch = env.journal.directories()
        assert len(scratch) == 1 and Path(scratch[0]).parent == Path(os.environ.get("TMPDIR", "/tmp"))
        assert (Path(scratch[0]) / "data" / "PG_VERSION").exists()
        assert facts["migrations"], "the schema was applied: the server was reachable"
        assert oct(home.stat().st_mode & 0o777) == oct(0o700), "the private home was left as it was"
    finally:
        env.teardown()
    assert not Path(scratch[0]).exists() and env.journal.directories() == []
