"""Amazon ECR as the registry of the platform's images: a login from the ECR API, and what the agents pull with.

The runner logs in as ECR documents for any client (``aws ecr get-login-password``): ``GetAuthorizationToken``
answers a base64 ``AWS:<password>`` token valid 12 hours; the user and password go into podman's auth file (mode
0600, in the environment's private directory), never on a command line. The agents pull with their instance role
through Amazon's credential helper (``docker-credential-ecr-login``, Debian's ``amazon-ecr-credential-helper``): the
docker configuration they fetch names the helper for the registry and holds no secret.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from envfixtures.core.errors import BuildError

#: the credential helper the agents' docker configuration names (``docker-credential-<this>`` on their PATH)
CREDENTIAL_HELPER = "ecr-login"


@dataclass(frozen=True)
class Login:
    registry: str  # the registry host the token is for: "<account>.dkr.ecr.<region>.amazonaws.com"
    user: str  # always "AWS"
    password: str  # the token's password part (a secret, valid 12 hours)
    expires_at: str  # ISO time, for the messages


def login(ecr: Any) -> Login:
    """The login ``GetAuthorizationToken`` gives for the caller's registry (``ecr``: a boto3 ECR client)."""
    try:
        data = ecr.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"], validate=True).decode().partition(":")
    except (KeyError, IndexError, binascii.Error, UnicodeDecodeError) as exc:
        raise BuildError(f"ECR GetAuthorizationToken answered no usable token ({type(exc).__name__})") from None
    if not user or not password:
        raise BuildError("ECR GetAuthorizationToken answered a token that is not <user>:<password>")
    registry = urlsplit(data.get("proxyEndpoint") or "").netloc
    expires = data.get("expiresAt")
    return Login(registry, user, password, expires.isoformat() if hasattr(expires, "isoformat") else str(expires))


def split_registry(prefix: str) -> tuple[str, str]:
    """``<registry host>/<namespace>`` -> (host, namespace); the namespace may be ""."""
    host, _, namespace = prefix.strip().strip("/").partition("/")
    if not host:
        raise BuildError(f"image registry {prefix!r}: not <registry host>/<namespace>")
    return host, namespace


def missing_repositories(ecr: Any, names: list[str]) -> list[str]:
    """Those of the repositories ``names`` that the registry does not have (a push to one would fail)."""
    missing = []
    for name in names:
        try:
            ecr.describe_repositories(repositoryNames=[name])
        except ecr.exceptions.RepositoryNotFoundException:
            missing.append(name)
    return missing


def helper_config(registry: str) -> str:
    """The docker ``config.json`` that has the agents pull from ``registry`` through the ECR credential helper."""
    return json.dumps({"credHelpers": {registry: CREDENTIAL_HELPER}}, indent=2) + "\n"
