"""A pytest plugin of the bench (``-p bench_first_test``, ``bench/`` on PYTHONPATH): writes the wall-clock time the
first test of the suites starts (the static-rule items of the templates, which run at once, do not count) to the
file ``$BENCH_FIRST_TEST``. Under xdist the controller sees a worker's start report as it arrives."""

from __future__ import annotations

import os
import time
from pathlib import Path

_written = False


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    global _written
    target = os.environ.get("BENCH_FIRST_TEST")
    if _written or not target or not nodeid.startswith(("tests_infra/", "tests_api/")):
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the controller (or the single process) writes it
        return
    _written = True
    Path(target).write_text(repr(time.time()))
