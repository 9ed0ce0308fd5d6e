"""Validation of requests, without servers: every invalid input names its field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from platform_services import openapi, validation

VALID = {"customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": 2}], "currency": "EUR"}


def test_a_valid_order_passes_unchanged():
    assert validation.new_order(dict(VALID)) == VALID


@pytest.mark.parametrize(
    "change, field",
    [
        ({"customer_id": None}, "customer_id"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": "has space"}, "customer_id"),
        ({"customer_id": "x" * 65}, "customer_id"),
        ({"currency": "eur"}, "currency"),
        ({"items": []}, "items"),
        ({"items": "SKU-1"}, "items"),
        ({"items": [{"sku": "SKU-1", "quantity": 0}]}, "items[0].quantity"),
        ({"items": [{"sku": "SKU-1", "quantity": True}]}, "items[0].quantity"),
        ({"items": [{"sku": "SKU-1", "quantity": 1.5}]}, "items[0].quantity"),
        ({"items": [{"sku": "ok", "quantity": 1}, {"quantity": 1}]}, "items[1].sku"),
        ({"items": [{"sku": "ok", "quantity": 1, "price": 3}]}, "items[0].price"),
        ({"extra": 1}, "extra"),
    ],
)
def test_an_invalid_field_is_named(change, field):
    body = {**VALID, **change}
    with pytest.raises(validation.InvalidField) as err:
        validation.new_order(body)
    assert err.value.field == field


def test_a_missing_field_is_named():
    body = dict(VALID)
    del body["currency"]
    with pytest.raises(validation.InvalidField) as err:
        validation.new_order(body)
    assert (err.value.field, err.value.message) == ("currency", "is required")


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_a_body_that_is_not_an_object_is_refused(body):
    with pytest.raises(validation.InvalidField) as err:
        validation.new_order(body)
    assert err.value.field == "body"


def test_messages_never_echo_the_value():
    secret = "s3cr3t-value-that-must-not-be-echoed"
    with pytest.raises(validation.InvalidField) as err:
        validation.new_order({**VALID, "customer_id": secret + " "})
    assert secret not in str(err.value)


@pytest.mark.parametrize("value", ["", " ", "a b", "é", "x" * 201])
def test_a_bad_idempotency_key_is_refused(value):
    with pytest.raises(validation.InvalidField) as err:
        validation.idempotency_key(value)
    assert err.value.field == "Idempotency-Key"


def test_request_digest_ignores_key_order():
    reordered = {"currency": "EUR", "items": [{"quantity": 2, "sku": "SKU-1"}], "customer_id": "c-1"}
    assert validation.request_digest(VALID) == validation.request_digest(reordered)
    assert validation.request_digest(VALID) != validation.request_digest({**VALID, "currency": "USD"})


@pytest.mark.parametrize("value", ["0", "101", "-1", "x", "1.5"])
def test_limit_out_of_range_is_refused(value):
    with pytest.raises(validation.InvalidField) as err:
        validation.limit(value)
    assert err.value.field == "limit"


@given(st.integers(min_value=0, max_value=validation.MAX_SEQ))
def test_cursor_round_trips(seq):
    assert validation.cursor(validation.encode_cursor(seq)) == seq


@given(st.text(max_size=40))
def test_any_cursor_text_is_a_cursor_or_a_named_error(text):
    try:
        assert 0 <= validation.cursor(text) <= validation.MAX_SEQ
    except validation.InvalidField as err:
        assert err.field == "cursor"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    )
)
def test_any_json_value_is_valid_or_refused_with_a_field(body):
    try:
        validation.new_order(body)
    except validation.InvalidField as err:
        assert err.field and err.message


def test_the_openapi_document_is_valid_json_schema():
    doc = openapi.document()
    assert doc["openapi"].startswith("3.")
    for name, schema in doc["components"]["schemas"].items():
        Draft7Validator.check_schema(schema), name
