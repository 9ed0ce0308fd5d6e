"""Properties of the orders API (hypothesis), through the base URL: valid orders round-trip, invalid bodies get a 4xx.

The generators follow the NewOrder schema of docs/platform.md; the invalid ones are checked against the
schema the API serves (``/openapi.json``), so a generated body counts as invalid only if the document
says so. Bounded: 50 examples each, no deadline (every example is a network round-trip).
"""

from __future__ import annotations

import string
from typing import Any

import jsonschema
import pytest
import requests
from api_support import REQUEST_TIMEOUT
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

CURRENCIES = ["EUR", "USD", "GBP", "CHF", "JPY", "SEK"]
BOUNDED = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_first = string.ascii_letters + string.digits
keys = st.builds(lambda a, b: a + b, st.sampled_from(_first), st.text(_first + "._-", max_size=63))
items = st.fixed_dictionaries({"sku": keys, "quantity": st.integers(1, 10_000)})
valid_orders = st.fixed_dictionaries(
    {"customer_id": keys, "items": st.lists(items, min_size=1, max_size=50), "currency": st.sampled_from(CURRENCIES)}
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def broken_orders(draw: st.DrawFn) -> Any:
    """A valid order with one thing wrong, or any JSON value at all."""
    order = draw(valid_orders)
    how = draw(st.sampled_from(["drop", "extra", "retype", "item", "anything"]))
    if how == "drop":
        del order[draw(st.sampled_from(sorted(order)))]
    elif how == "extra":
        order[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in order))] = draw(json_values)
    elif how == "retype":
        order[draw(st.sampled_from(sorted(order)))] = draw(json_values)
    elif how == "item":
        item = order["items"][0]
        item[draw(st.sampled_from(["sku", "quantity", "extra"]))] = draw(
            json_values | st.integers(max_value=0) | st.integers(min_value=10_001)
        )
    else:
        return draw(json_values)
    return order


@pytest.fixture(scope="module")
def new_order_validator(base_url: str) -> jsonschema.Draft4Validator:
    """The served document's NewOrder schema (OpenAPI 3.0 schemas are a JSON Schema draft 4 dialect)."""
    document = requests.get(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT).json()
    schema = {**document["components"]["schemas"]["NewOrder"], "components": document["components"]}
    return jsonschema.Draft4Validator(schema)


@BOUNDED
@given(order=valid_orders)
def test_any_valid_order_round_trips_unchanged(http, base_url, order) -> None:
    r = http.post(f"{base_url}/orders", json=order, timeout=REQUEST_TIMEOUT)
    assert r.status_code == 201, r.text
    created = r.json()
    assert {k: created[k] for k in order} == order
    got = http.get(f"{base_url}/orders/{created['id']}", timeout=REQUEST_TIMEOUT)
    assert got.status_code == 200
    assert {k: got.json()[k] for k in order} == order


@BOUNDED
@given(body=broken_orders())
def test_any_invalid_body_gets_a_4xx_never_a_5xx(http, base_url, new_order_validator, body) -> None:
    assume(not new_order_validator.is_valid(body))
    r = http.post(f"{base_url}/orders", json=body, timeout=REQUEST_TIMEOUT)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    error = r.json()
    assert error["error"] and error["message"]
    if r.status_code == 422:
        assert error.get("field"), "a 422 names the field"


@BOUNDED
@given(raw=st.binary(max_size=200))
def test_any_undecodable_body_gets_a_4xx(http, base_url, raw) -> None:
    r = http.post(f"{base_url}/orders", data=raw, headers={"Content-Type": "application/json"}, timeout=REQUEST_TIMEOUT)
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
