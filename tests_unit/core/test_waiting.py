"""Waiting: only the exceptions named in ``retry_on`` mean "not yet"; a failed state ends the wait at once."""

from __future__ import annotations

import time

import pytest

from envfixtures.core.errors import FailedState, WaitTimeout
from envfixtures.core.waiting import CONNECTION_ERRORS, wait_for


def test_a_listed_exception_is_retried_until_the_probe_answers() -> None:
    calls = []

    def probe() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return "ready"

    assert wait_for(probe, what="x", timeout=5, retry_on=CONNECTION_ERRORS, first_delay=0.01) == "ready"
    assert len(calls) == 3


def test_an_unlisted_exception_ends_the_wait_at_once() -> None:
    calls = []

    def probe() -> None:
        calls.append(1)
        raise KeyError("status")

    started = time.monotonic()
    with pytest.raises(KeyError):
        wait_for(probe, what="x", timeout=10, retry_on=CONNECTION_ERRORS)
    assert len(calls) == 1 and time.monotonic() - started < 1


def test_the_timeout_names_the_last_listed_error() -> None:
    def probe() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(WaitTimeout, match=r"x: not ready after 0s \(last error: ConnectionRefusedError: refused\)"):
        wait_for(probe, what="x", timeout=0.2, retry_on=(OSError,), first_delay=0.01)


def test_a_failed_state_stops_the_wait_before_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(FailedState, match="x: the server exited"):
        wait_for(lambda: None, what="x", timeout=30, failed=lambda: "the server exited")
    assert time.monotonic() - started < 1
