"""boto3 clients for an environment's AWS: the local moto server or the real account.

The ``aws`` component's facts say where AWS is: ``endpoint_url`` (the moto server on ``local``,
``None`` on ``aws``) and ``region``. Locally the clients carry dummy credentials and ignore any
``AWS_PROFILE`` of the user, so that a developer's real account can never be touched by a local run.
On ``aws`` the usual boto3 chain applies (environment, profile, instance role); ``AWS_ENDPOINT_URL``
is honoured by boto3 itself, which is how the tests point the real-AWS code path at a moto server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

LOCAL_REGION = "us-east-1"  # Fn::GetAZs "" in moto always answers us-east-1 zones
DUMMY_ACCESS_KEY = "envfixtures-local"
DUMMY_SECRET_KEY = "envfixtures-local"  # not a secret: moto accepts any key

# Locally a 500 from moto is a bug to see at once, not a transient fault to retry (a retried
# create_stack would only answer AlreadyExists and hide the real error).
_LOCAL_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
_REAL_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})


def local_session(region: str = LOCAL_REGION) -> boto3.Session:
    """A session with dummy credentials that reads no profile, config file or credential chain."""
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    return boto3.Session(
        aws_access_key_id=DUMMY_ACCESS_KEY,
        aws_secret_access_key=DUMMY_SECRET_KEY,
        region_name=region,
        botocore_session=core,
    )


def client(facts: Mapping[str, Any], service: str) -> Any:
    """A boto3 client for ``service`` in the AWS described by ``facts`` (endpoint_url, region)."""
    return make_client(service, endpoint_url=facts.get("endpoint_url"), region=facts.get("region"))


def make_client(service: str, *, endpoint_url: str | None, region: str | None) -> Any:
    """A client for the moto server at ``endpoint_url``, or for real AWS when it is ``None``."""
    if endpoint_url:
        return local_session(region or LOCAL_REGION).client(service, endpoint_url=endpoint_url, config=_LOCAL_CONFIG)
    return boto3.Session(region_name=region).client(service, config=_REAL_CONFIG)
