"""Request validation: the body of a new order, the Idempotency-Key, and the list's limit and cursor.

The body is checked with jsonschema against the schema of the served OpenAPI document; the first
problem becomes an :class:`InvalidField` that names the field (``items[0].quantity``) in a short
message that never echoes the submitted value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match

from . import openapi

_DOC = openapi.document()
_VALIDATOR = Draft7Validator({"$ref": "#/components/schemas/NewOrder", "components": _DOC["components"]})
_KEY_RE = re.compile(r"[!-~]{1,200}")
MAX_SEQ = 2**63 - 1


class InvalidField(ValueError):
    """A field of the request is invalid: ``field`` names it, ``message`` says what is expected."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        part = part if part != "" else '""'
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: ValidationError) -> tuple[str, str]:
    """(field, message) of one schema error."""
    field = _path(error.absolute_path)
    value = error.validator_value
    kind = error.validator
    if kind == "required":
        missing = [p for p in value if isinstance(error.instance, dict) and p not in error.instance]
        name = missing[0] if missing else '""'
        return (f"{field}.{name}" if field else name), "is required"
    if kind == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        name = (extra[0] or '""') if extra else '""'
        return (f"{field}.{name}" if field else name), "is not a known field"
    messages = {
        "type": "must be of type {}",
        "minimum": "must be >= {}",
        "maximum": "must be <= {}",
        "minLength": "must have at least {} character(s)",
        "maxLength": "must have at most {} characters",
        "pattern": "must contain only letters, digits, '.', '_' and '-', starting with a letter or digit",
        "enum": "must be one of {}",
        "minItems": "must have at least {} item(s)",
        "maxItems": "must have at most {} items",
    }
    shown = ", ".join(map(str, value)) if isinstance(value, list) else value
    return field or "body", messages.get(kind, "is invalid").format(shown)


def new_order(body: Any) -> dict[str, Any]:
    """The validated new order (the body itself), or :class:`InvalidField`."""
    if not isinstance(body, dict):
        raise InvalidField("body", "must be a JSON object")
    error = best_match(_VALIDATOR.iter_errors(body), key=_relevance)
    if error is not None:
        raise InvalidField(*_describe(error))
    return body


def _relevance(error: ValidationError) -> tuple[int, int]:
    # The shallowest problem first; among equals, a missing or unknown field before a bad value.
    return (-len(error.absolute_path), 1 if error.validator in ("required", "additionalProperties") else 0)


def idempotency_key(value: str | None) -> str | None:
    """The header's value when present and well-formed (1-200 visible ASCII characters)."""
    if value is None:
        return None
    if not _KEY_RE.fullmatch(value):
        raise InvalidField("Idempotency-Key", "must be 1-200 visible ASCII characters")
    return value


def request_digest(body: dict[str, Any]) -> str:
    """A digest of the body, independent of key order and spacing (compares a retried create)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def limit(value: str | None) -> int:
    if value is None:
        return 20
    try:
        number = int(value)
    except ValueError:
        raise InvalidField("limit", f"must be an integer from 1 to {openapi.MAX_LIMIT}") from None
    if not 1 <= number <= openapi.MAX_LIMIT:
        raise InvalidField("limit", f"must be an integer from 1 to {openapi.MAX_LIMIT}")
    return number


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def cursor(value: str | None) -> int:
    """The position after which the page starts (0: from the beginning)."""
    if value is None or value == "":
        return 0
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        text = raw.decode("ascii")
        if not text.isdigit():
            raise ValueError
        seq = int(text)
    except (ValueError, UnicodeError):
        raise InvalidField("cursor", "is not a cursor returned by this API") from None
    if seq > MAX_SEQ:
        raise InvalidField("cursor", "is not a cursor returned by this API")
    return seq
