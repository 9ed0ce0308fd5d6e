"""The orders API's OpenAPI 3 document, served at ``/openapi.json``.

The request schema here is also what :mod:`.validation` validates against, so the document and the
behaviour cannot drift apart.
"""

from __future__ import annotations

import copy
from typing import Any

KEY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
CURRENCIES = ["EUR", "USD", "GBP", "CHF", "JPY", "SEK"]
MAX_LIMIT = 100

ORDER_ITEM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sku", "quantity"],
    "properties": {
        "sku": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": KEY_PATTERN},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 10000},
    },
}

NEW_ORDER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customer_id", "items", "currency"],
    "properties": {
        "customer_id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": KEY_PATTERN},
        "items": {"type": "array", "minItems": 1, "maxItems": 50, "items": {"$ref": "#/components/schemas/OrderItem"}},
        "currency": {"type": "string", "enum": CURRENCIES},
    },
}

ORDER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "customer_id", "items", "currency", "status", "created_at", "fulfilled_at"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "customer_id": {"type": "string"},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/OrderItem"}},
        "currency": {"type": "string", "enum": CURRENCIES},
        "status": {"type": "string", "enum": ["created", "fulfilled"]},
        "created_at": {"type": "string", "format": "date-time"},
        "fulfilled_at": {"type": "string", "format": "date-time", "nullable": True},
    },
}

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the offending field, e.g. items[0].quantity"},
    },
}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _json(description: str, ref: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Orders API of the reference platform", "version": "1.0.0"},
    "paths": {
        "/orders": {
            "post": {
                "operationId": "createOrder",
                "summary": "Create an order; a retry with the same Idempotency-Key returns the first result",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewOrder"}}},
                },
                "responses": {
                    "201": _json("the order (also for a retried create)", "#/components/schemas/Order"),
                    "400": _error("the body is not JSON"),
                    "413": _error("the body is too large"),
                    "422": _error("a field is invalid, or the Idempotency-Key was used with another body"),
                    "503": _error("the database is unavailable"),
                },
            },
            "get": {
                "operationId": "listOrders",
                "summary": "Orders in creation order, a page at a time",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20},
                    },
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                ],  # fmt: skip
                "responses": {
                    "200": _json("a page of orders", "#/components/schemas/OrderPage"),
                    "422": _error("limit or cursor is invalid"),
                    "503": _error("the database is unavailable"),
                },
            },
        },
        "/orders/{order_id}": {
            "get": {
                "operationId": "getOrder",
                "parameters": [{"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json("the order", "#/components/schemas/Order"),
                    "404": _error("no such order"),
                    "503": _error("the database is unavailable"),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "responses": {
                    "200": _json("the database and the broker are reachable", "#/components/schemas/Health"),
                    "503": _json("the database or the broker is down", "#/components/schemas/Health"),
                },
            }
        },
        "/version": {
            "get": {
                "operationId": "version",
                "responses": {"200": _json("the commit this code was built from", "#/components/schemas/Version")},
            }
        },
    },
    "components": {
        "schemas": {
            "OrderItem": ORDER_ITEM,
            "NewOrder": NEW_ORDER,
            "Order": ORDER,
            "OrderPage": {
                "type": "object",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}},
                    "next_cursor": {"type": "string", "nullable": True},
                },
            },
            "Error": ERROR,
            "Health": {
                "type": "object",
                "required": ["status", "checks"],
                "properties": {
                    "status": {"type": "string", "enum": ["ok", "unavailable"]},
                    "checks": {
                        "type": "object",
                        "properties": {
                            "database": {"type": "string", "enum": ["ok", "down"]},
                            "broker": {"type": "string", "enum": ["ok", "down"]},
                        },
                    },
                },
            },
            "Version": {
                "type": "object",
                "required": ["sha", "image_tag"],
                "properties": {"sha": {"type": "string"}, "image_tag": {"type": "string", "nullable": True}},
            },
        }
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    return copy.deepcopy(_DOCUMENT)
