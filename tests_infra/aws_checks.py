"""What the aws suites of ``tests_infra`` share: the stack's clients and outputs, and the skip of a check that only
the real account can answer (``docs/local-standins.md`` says what each stand-in lacks)."""

from __future__ import annotations

from typing import Any

import pytest

from envfixtures.core.facts import Facts
from envfixtures.drivers.aws import clients as aws_clients


def only_on_aws(aws: Facts, why: str) -> None:
    """Skip on ``local``, where the stand-in cannot answer (``why``): the assertion could neither pass nor fail."""
    if aws["backend"] == "local":
        pytest.skip(f"{why} (docs/local-standins.md); runs on --env-backend aws")


def client(aws: Facts, service: str) -> Any:
    return aws_clients.client(aws, service)


def out(aws: Facts, key: str) -> str:
    return aws["outputs"][key]
