"""Schemathesis against the OpenAPI document the API serves, through the base URL: no 5xx, responses match it.

The schema is loaded from ``<base_url>/openapi.json`` by a fixture (``schemathesis.pytest.from_fixture``),
so nothing is fetched at collection time and nothing is built unless these tests run. Bounded: at most
``MAX_EXAMPLES`` generated cases per operation, no deadline.
"""

from __future__ import annotations

import re
import uuid

import pytest
import requests
import schemathesis
from api_support import REQUEST_TIMEOUT, valid_order
from hypothesis import HealthCheck, settings

MAX_EXAMPLES = 40


@pytest.fixture(scope="session")
def served_schema(base_url: str):
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.fixture(scope="session")
def real_cursor(base_url: str) -> str:
    """A cursor the API handed out (it is opaque: only such cursors are valid, which no schema can say)."""
    for i in range(2):
        requests.post(f"{base_url}/orders", json=valid_order(customer_id=f"cursor-{i}"), timeout=REQUEST_TIMEOUT)
    page = requests.get(f"{base_url}/orders", params={"limit": 1}, timeout=REQUEST_TIMEOUT).json()
    assert page["next_cursor"], "two orders exist, so the first page of one has a next cursor"
    return page["next_cursor"]


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_conforms_to_its_served_document(case, real_cursor) -> None:
    if isinstance((case.query or {}).get("cursor"), str):
        # Any string is a schema-valid cursor, but only the API's own are accepted (made-up ones are a
        # documented 422, tested in test_api_orders): generated cursors become a real one.
        case.query["cursor"] = real_cursor
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and re.fullmatch(r"[!-~]{1,200}", key):
        # A reused key with another body is a documented 422 that depends on earlier requests, which
        # schema-based generation cannot know: make each generated key unique (it stays schema-valid).
        case.headers["Idempotency-Key"] = f"{key[:160]}-{uuid.uuid4().hex}"
    response = case.call(timeout=15)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
    case.validate_response(response)
