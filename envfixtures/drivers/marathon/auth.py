"""HTTP basic credentials of the local Marathon API, as Marathon's ``--http_credentials user:password`` demands them.

The local scheduler (:mod:`.server`) and the api proxy (:mod:`.proxy`) get the credentials from their
environment (:data:`CREDENTIALS_ENV` = ``user:password``), never from their command line: ``ps`` shows
argv to every user of the machine, while ``/proc/PID/environ`` is readable only by the process's owner.

Marathon guards every path (``/ping`` included) with Jetty's basic authenticator for the realm given by
``--http_realm`` (default ``Mesosphere``); a request without valid credentials gets 401 with
``WWW-Authenticate``. The body is the one of the RAML ``secured`` trait
(``reference/marathon/raml/traits.raml``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping

#: The environment variable holding ``user:password`` for the scheduler and the proxy.
CREDENTIALS_ENV = "ENVFIXTURES_MARATHON_CREDENTIALS"

#: Marathon's default ``--http_realm``.
REALM = "Mesosphere"

#: ``WWW-Authenticate`` of a 401 (Jetty's BasicAuthenticator: ``basic realm="<realm>"``).
CHALLENGE = f'Basic realm="{REALM}"'

#: The 401 body of Marathon's RAML (``secured`` trait).
UNAUTHORIZED_BODY = {"message": "Invalid username or password."}

Credentials = tuple[str, str]


def parse(text: str) -> Credentials:
    """``user:password`` as (user, password); the user holds no colon (RFC 7617), the password may."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{CREDENTIALS_ENV}: expected user:password (both non-empty)")
    return user, password


def join(user: str, password: str) -> str:
    """The value of :data:`CREDENTIALS_ENV` for ``user`` and ``password``."""
    if not user or ":" in user or not password:
        raise ValueError("a Marathon user is non-empty without a colon; the password non-empty")
    return f"{user}:{password}"


def from_environ(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials in :data:`CREDENTIALS_ENV` of ``environ`` (default: this process's), or None if unset."""
    value = (os.environ if environ is None else environ).get(CREDENTIALS_ENV)
    return parse(value) if value else None


def header(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def check(authorization: str | None, expected: Credentials) -> bool:
    """Whether an ``Authorization`` header carries exactly ``expected``; compared in constant time."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    wanted = f"{expected[0]}:{expected[1]}".encode()
    return hmac.compare_digest(given, wanted)


__all__ = [
    "CHALLENGE",
    "CREDENTIALS_ENV",
    "REALM",
    "UNAUTHORIZED_BODY",
    "Credentials",
    "check",
    "from_environ",
    "header",
    "join",
    "parse",
]
