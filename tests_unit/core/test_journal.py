"""The journal survives a torn line: teardown must be able to read everything else."""

from __future__ import annotations

from pathlib import Path

from envfixtures.core.journal import Journal


def test_a_torn_line_is_skipped_and_counted(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "resources.jsonl", "ef-0123456-torn")
    journal.append({"kind": "process", "key": "db/postgres", "state": "started", "pid": 11, "start_time": 5})
    with open(journal.path, "a") as fh:
        fh.write('{"kind": "process", "key": "broker/node-1", "state": "sta')  # SIGKILL mid-write
    journal.append({"kind": "process", "key": "broker/epmd", "state": "started", "pid": 12, "start_time": 6})
    assert [r["key"] for r in journal.records()] == ["db/postgres", "broker/epmd"]
    assert journal.torn == 1
    assert [key for key, *_ in journal.processes()] == ["db/postgres", "broker/epmd"]
