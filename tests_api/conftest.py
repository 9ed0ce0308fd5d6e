"""Fixtures of the black-box API suite: the ``api`` component's base URL and a request helper (``http``,
``passwords`` and ``amqp_parameters`` are suite-level, in the top-level ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from api_support import REQUEST_TIMEOUT, valid_order

from envfixtures.core.facts import Facts


@pytest.fixture(scope="session")
def base_url(api: Facts) -> str:
    """Every request of the suite goes here: the load balancer, or on ``local`` the proxy in its manner."""
    return str(api["base_url"]).rstrip("/")


@pytest.fixture
def create(http: requests.Session, base_url: str) -> Callable[..., requests.Response]:
    """``create(body=None, key=None)``: POST /orders (a fresh valid order by default)."""

    def create(body: Any = None, *, key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key else {}
        body = valid_order() if body is None else body
        return http.post(f"{base_url}/orders", json=body, headers=headers, timeout=REQUEST_TIMEOUT)

    return create
