"""boto3 clients for an environment's AWS: the local moto server or the real account.

The ``aws`` component's facts say where AWS is: ``endpoint_url`` (the moto server on ``local``,
``None`` on ``aws``) and ``region``. Locally the moto server demands the environment's own credentials
(:mod:`envfixtures.drivers.aws.moto_server`): the facts carry them (``access_key_id``, and
``secret_access_key`` marked secret) and the clients made from the facts sign with them, ignoring any
``AWS_PROFILE`` or ``AWS_*`` credential of the user, so that a developer's real account can never be touched by a
local run.
On ``aws`` the usual boto3 chain applies (environment, profile, instance role); ``AWS_ENDPOINT_URL``
is honoured by boto3 itself, which is how the tests point the real-AWS code path at a moto server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config

LOCAL_REGION = "us-east-1"  # Fn::GetAZs "" in moto always answers us-east-1 zones
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

# Locally a 500 from moto is a bug to see at once, not a transient fault to retry (a retried
# create_stack would only answer AlreadyExists and hide the real error).
_LOCAL_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
# S3 signs (and presigns) with SigV4: the local server accepts no other signature.
_LOCAL_S3_CONFIG = _LOCAL_CONFIG.merge(Config(signature_version="s3v4"))
_REAL_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})
# On AWS too: botocore's default presigner in us-east-1 is SigV2, which S3 no longer accepts for new buckets.
_REAL_S3_CONFIG = _REAL_CONFIG.merge(Config(signature_version="s3v4"))


@dataclass(frozen=True)
class LocalCredentials:
    """The access key of an environment's moto server (its secret never shown by ``repr``)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def new(cls) -> LocalCredentials:
        """A fresh key: an ``AKIA`` id of 20 characters and a 40-character secret, as AWS's look."""
        key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        return cls(key_id, secrets.token_urlsafe(30))

    @classmethod
    def of(cls, facts: Mapping[str, Any]) -> LocalCredentials | None:
        """The credentials in the ``aws`` facts (``None`` when they carry none: the real backend)."""
        key_id, secret = facts.get("access_key_id"), facts.get("secret_access_key")
        return cls(str(key_id), str(secret)) if key_id and secret else None


def local_session(credentials: LocalCredentials, region: str = LOCAL_REGION) -> boto3.Session:
    """A session with the environment's credentials that reads no profile, config file or credential chain."""
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    return boto3.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name=region,
        botocore_session=core,
    )


def client(facts: Mapping[str, Any], service: str) -> Any:
    """A boto3 client for ``service`` in the AWS described by ``facts`` (endpoint_url, region, credentials)."""
    return make_client(
        service,
        endpoint_url=facts.get("endpoint_url"),
        region=facts.get("region"),
        credentials=LocalCredentials.of(facts),
    )


def make_client(
    service: str, *, endpoint_url: str | None, region: str | None, credentials: LocalCredentials | None = None
) -> Any:
    """A client for the moto server at ``endpoint_url`` (signing with ``credentials``, required there), or for
    real AWS when it is ``None``."""
    if endpoint_url:
        if credentials is None:
            raise ValueError(
                f"the moto server at {endpoint_url} demands the environment's credentials "
                "(the aws facts' access_key_id and secret_access_key)"
            )
        config = _LOCAL_S3_CONFIG if service == "s3" else _LOCAL_CONFIG
        return local_session(credentials, region or LOCAL_REGION).client(
            service, endpoint_url=endpoint_url, config=config
        )
    config = _REAL_S3_CONFIG if service == "s3" else _REAL_CONFIG
    return boto3.Session(region_name=region).client(service, config=config)


def chain_environ() -> dict[str, str]:
    """The gate's ``AWS_*`` variables (boto3's credential chain: keys, profile, web identity, region, endpoint) and
    nothing else of its environment: for a process of ours that calls AWS (the target registrar, an SSM session)."""
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


#: The hosts of AWS's own endpoints (the commercial, China and dual-stack partitions).
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def endpoint_of(service: str, region: str | None) -> str:
    """The URL the usual boto3 chain sends ``service``'s calls to: AWS's own endpoint, or the one an
    ``AWS_ENDPOINT_URL`` (``AWS_ENDPOINT_URL_<SERVICE>``, a profile's ``endpoint_url``) puts in its place. No call is
    made."""
    return str(boto3.Session(region_name=region or LOCAL_REGION).client(service).meta.endpoint_url)


def is_aws_endpoint(url: str) -> bool:
    """Whether ``url`` is one of AWS's own endpoints (not a stand-in such as a moto server)."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith(_AWS_HOST_SUFFIXES)
