"""An unexpected exception in the local scheduler's loop fails the task (and so the deployment) with its cause at
once; it used to be logged on every loop turn while the deployment waited out its timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from envfixtures.core.waiting import wait_for
from envfixtures.drivers.marathon import engine as engine_mod
from envfixtures.drivers.marathon import tasks


def last_failure(engine: engine_mod.Engine, app_id: str) -> dict | None:
    with engine.lock:
        return engine.get_app(app_id)["app"].get("lastTaskFailure")


def test_a_bug_while_launching_fails_the_task_with_its_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_launch(*args: object, **kwargs: object) -> None:
        raise KeyError("args")

    monkeypatch.setattr(tasks, "launch", broken_launch)
    engine = engine_mod.Engine(tmp_path)
    engine.start()
    try:
        engine.create_app({"id": "/broken", "cmd": "sleep 60", "instances": 1})
        found = wait_for(lambda: last_failure(engine, "/broken"), what="the task's failure", timeout=10)
        assert found["state"] == "TASK_FAILED"
        assert found["message"] == "the local scheduler failed on this app: KeyError: 'args'", found["message"]
        with engine.lock:
            assert not engine.apps["/broken"].alive_tasks(), "the broken task is not left staging"
    finally:
        engine.shutdown(timeout=2)


def test_a_bug_while_reconciling_fails_the_app_with_its_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engine_mod.Engine(tmp_path)

    def broken_stage(app: object) -> None:
        raise RuntimeError("no offer matched")

    monkeypatch.setattr(engine, "_stage", broken_stage)
    engine.start()
    try:
        engine.create_app({"id": "/unstaged", "cmd": "sleep 60", "instances": 1})
        found = wait_for(lambda: last_failure(engine, "/unstaged"), what="the app's failure", timeout=10)
        assert "RuntimeError: no offer matched" in found["message"], found["message"]
    finally:
        engine.shutdown(timeout=2)
