"""The API's behaviour that needs no server: validation, errors, version, document, database down.

The database points at a closed loopback port, so every handler that reaches it meets a real
connection failure; none of its answers may leak a stack trace, the DSN or the password.
"""

from __future__ import annotations

import socket

import pytest
from platform_services import api, config, store

PASSWORD = "pw-that-must-never-leak-4242"


@pytest.fixture(scope="module")
def client():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    dsn = f"postgresql://platform:{PASSWORD}@127.0.0.1:{closed_port}/platform"
    settings = config.load({"DATABASE_URL": dsn, "AMQP_URL": f"amqp://u:{PASSWORD}@127.0.0.1:1/v",
                            "GIT_SHA": "f" * 40, "PORT0": "1"})  # fmt: skip
    app = api.create_app(settings, db=store.Database(settings.database, connect_timeout=1), relay=None)
    return app.test_client()


def assert_no_leak(response):
    text = response.get_data(as_text=True)
    for needle in (PASSWORD, "postgresql://", "Traceback", 'File "', "psycopg", "127.0.0.1"):
        assert needle not in text, (needle, text)
    assert response.mimetype == "application/json"


def test_version_answers_the_sha(client):
    r = client.get("/version")
    # From a source tree (no _build.py) the SHA comes from GIT_SHA; no Marathon image outside a task.
    assert (r.status_code, r.json) == (200, {"sha": "f" * 40, "image_tag": None})


def test_version_answers_the_image_tag_marathon_started_the_task_with():
    from platform_services import config

    settings = config.load(
        {"DATABASE_URL": "postgresql://u@h/d", "AMQP_URL": "amqp://u@h:1/v", "GIT_SHA": "a" * 40, "PORT0": "1"}
    )
    answer = config.version(settings, {"MARATHON_APP_DOCKER_IMAGE": "registry.example/orders-api:" + "b" * 40})
    assert answer == {"sha": "a" * 40, "image_tag": "b" * 40}


def test_the_openapi_document_is_served(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and "/orders" in r.json["paths"]


@pytest.mark.parametrize(
    "body, status, field",
    [
        (b"{not json", 400, "body"),
        (b"[]", 422, "body"),
        (b'{"customer_id": "c", "items": [{"sku": "a", "quantity": 0}], "currency": "EUR"}', 422, "items[0].quantity"),
        (b'{"customer_id": "c", "items": [{"sku": "a", "quantity": 1}]}', 422, "currency"),
    ],
)
def test_invalid_bodies_are_4xx_naming_the_field(client, body, status, field):
    r = client.post("/orders", data=body, content_type="application/json")
    assert r.status_code == status and r.json["field"] == field
    assert_no_leak(r)


def test_a_bad_idempotency_key_is_named(client):
    r = client.post("/orders", json={}, headers={"Idempotency-Key": "has space"})
    assert (r.status_code, r.json["field"]) == (422, "Idempotency-Key")


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=abc", "limit"), ("cursor=%%%", "cursor")])
def test_bad_list_parameters_are_named(client, query, field):
    r = client.get(f"/orders?{query}")
    assert (r.status_code, r.json["field"]) == (422, field)


def test_database_down_is_a_503_without_leaks(client):
    r = client.post("/orders", json={"customer_id": "c", "items": [{"sku": "a", "quantity": 1}], "currency": "EUR"})
    assert r.status_code == 503
    assert_no_leak(r)
    health = client.get("/health")
    assert health.status_code == 503 and health.json["checks"] == {"database": "down", "broker": "down"}
    assert_no_leak(health)


@pytest.mark.parametrize("method, path, status", [("GET", "/nope", 404), ("DELETE", "/orders", 405),
                                                 ("GET", "/orders/not-a-uuid", 404)])  # fmt: skip
def test_http_errors_are_json(client, method, path, status):
    r = client.open(path, method=method)
    assert r.status_code == status and r.json["error"]
    assert_no_leak(r)


def test_a_too_large_body_is_413(client):
    r = client.post("/orders", data=b"x" * (api.MAX_BODY + 1), content_type="application/json")
    assert r.status_code == 413
    assert_no_leak(r)
