"""Helpers of acme's checks (imported by the tests; fixtures are in ``conftest.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.session
import pytest

T = TypeVar("T")


def eventually(probe: Callable[[], T], *, what: str, timeout: float = 30.0) -> T:
    """``probe()`` once it returns something truthy; fails naming ``what`` and the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not so after {timeout:.0f} s (last: {value!r})")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def aws_client(aws: Any, service: str) -> Any:
    """A boto3 client for the environment's AWS: the moto server of a local run (it answers only the environment's
    own key, which the aws facts carry; no profile is read, so a developer's real account is never touched), else
    the usual credential chain."""
    if aws["endpoint_url"]:
        core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        session = boto3.Session(
            aws_access_key_id=aws["access_key_id"],
            aws_secret_access_key=aws["secret_access_key"],
            region_name=aws["region"],
            botocore_session=core,
        )
        return session.client(service, endpoint_url=aws["endpoint_url"])
    return boto3.Session(region_name=aws["region"]).client(service)
