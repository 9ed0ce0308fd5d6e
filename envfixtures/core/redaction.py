"""Redaction: secret values never appear in logs, reports or exception messages that envfixtures writes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from envfixtures.core.facts import MASK


class Redactor:
    """Replaces every known secret value (and its URL-encoded forms) with a mask."""

    def __init__(self, secrets: Iterable[str]) -> None:
        variants: set[str] = set()
        for value in secrets:
            value = str(value)
            if len(value) < 4:  # too short to be a generated secret; masking it would shred the text
                continue
            variants.update({value, quote(value, safe=""), quote_plus(value)})
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True))) if variants else None
        )

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __bool__(self) -> bool:
        return self._pattern is not None
