"""The ``aws`` component: the environment's CloudFormation stack, on moto (local) or in a real account.

``local`` (:class:`LocalAws`): one moto server per environment on loopback — its state is the
environment's AWS — then an ACM certificate (moto checks the HTTPS listener's ARN against ACM) and
the stack. moto cannot delete a VPC stack (``docs/local-standins.md``), so stopping the server is
the honest local teardown (the default :meth:`Component.teardown`).

``aws`` (:class:`RealAws`): the same stack code against the real endpoint with the usual boto3
credential chain; teardown empties the artifact bucket, deletes the stack and verifies it is gone.

Facts: ``backend``, ``endpoint_url`` (``None`` on aws), ``region``, ``stack_name``, ``stack_id``,
``certificate_arn``, ``outputs`` (dict), ``db_master_username`` and ``db_master_password`` (secret,
generated per environment, passed to AWS as a NoEcho parameter through the API, never on a command line).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envfixtures import rules
from envfixtures.core.component import Component
from envfixtures.core.errors import ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.waiting import CONNECTION_ERRORS
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.aws import cloudformation
from envfixtures.rules import cloudformation as cfn_rules
from envfixtures.rules import policy

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

log = logging.getLogger(__name__)

TEMPLATE = Path("templates") / "cloudformation" / "environment.yaml"
SECRET_KEYS = ("db_master_password",)


def template_path(ctx: "BuildContext") -> Path:
    return Path(ctx.root) / TEMPLATE


def generate_password() -> str:
    """An RDS-acceptable master password (no '/', '@', '"' or space) of 32 random URL-safe characters."""
    return secrets.token_urlsafe(24)


def build_stack(
    ctx: "BuildContext",
    *,
    backend: str,
    endpoint_url: str | None,
    region: str,
    certificate_arn: str,
    timeout: float,
    max_delay: float,
) -> Facts:
    """Create the environment's stack (named like the environment) and return the component's facts."""
    cf = aws_clients.make_client("cloudformation", endpoint_url=endpoint_url, region=region)
    password = generate_password()
    ctx.add_secret("database master password", password)
    ctx.record("stack", name=ctx.name, region=region, endpoint_url=endpoint_url)
    ctx.progress(f"aws: creating stack {ctx.name} in {region}{' at ' + endpoint_url if endpoint_url else ''}")
    stack_id = cloudformation.create_stack(
        cf,
        name=ctx.name,
        template_path=template_path(ctx),
        parameters={
            "EnvName": ctx.name,
            "GitSha": ctx.sha,
            "CertificateArn": certificate_arn,
            "DbMasterPassword": password,
        },
        tags={"EnvName": ctx.name, "GitSha": ctx.sha},
        secrets=[password],
        timeout=timeout,
        max_delay=max_delay,
    )
    outputs = cloudformation.outputs(cf, stack_id)
    return Facts(
        {
            "backend": backend,
            "endpoint_url": endpoint_url,
            "region": region,
            "stack_name": ctx.name,
            "stack_id": stack_id,
            "certificate_arn": certificate_arn,
            "outputs": outputs,
            "db_master_username": outputs.get("DatabaseMasterUsername", ""),
            "db_master_password": password,
        },
        secrets=SECRET_KEYS,
    )


def stack_diagnosis(facts: Facts, stack: str) -> str:
    """The stack's status and its latest events (no parameters: moto shows NoEcho values)."""
    cf = aws_clients.client(facts, "cloudformation")
    found = cloudformation.describe(cf, stack)
    if found is None:
        return f"stack {stack}: does not exist"
    lines = [f"stack {stack}: {found['StackStatus']} {found.get('StackStatusReason') or ''}".rstrip()]
    lines += cloudformation.events(cf, stack, limit=20)
    return "\n".join(lines)


class LocalAws(Component):
    """AWS on this machine: a moto server per environment, and the stack created in it."""

    name = "aws"

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait for the stack on the moto server."""

        aws_stack_timeout: float = 60.0

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        rules.refuse(
            policy.without(
                cfn_rules.check_file(template_path(ctx)), policy.disabled(ctx.environment_settings.rules_off)
            )
        )

    def build(self, ctx: "BuildContext") -> Facts:
        port = free_port()
        endpoint_url = f"http://127.0.0.1:{port}"
        moto = ctx.spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
        moto.wait_ready(
            lambda: _answers(endpoint_url),
            what=f"moto server on {endpoint_url}",
            timeout=30,
            retry_on=CONNECTION_ERRORS,
        )
        acm = aws_clients.make_client("acm", endpoint_url=endpoint_url, region=aws_clients.LOCAL_REGION)
        certificate_arn = acm.request_certificate(DomainName=f"{ctx.name}.envfixtures.test")["CertificateArn"]
        return build_stack(
            ctx,
            backend="local",
            endpoint_url=endpoint_url,
            region=aws_clients.LOCAL_REGION,
            certificate_arn=certificate_arn,
            timeout=ctx.settings.aws_stack_timeout,
            max_delay=0.5,
        )

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        if not facts.get("endpoint_url"):
            return ""
        return stack_diagnosis(facts, facts.get("stack_id") or ctx.name)


class RealAws(Component):
    """AWS in a real account: the stack created with the usual boto3 credentials, deleted at teardown.

    Settings: ``aws_certificate_arn`` (or ``ENVFIXTURES_AWS_CERTIFICATE_ARN``) — required: the
    ACM certificate of the public HTTPS listener; ``aws_region`` (else boto3's configured region);
    ``aws_stack_timeout`` in seconds (default 3600: a Multi-AZ RDS instance takes ~20 minutes).
    """

    name = "aws"

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """The stack's wait; the load balancer's certificate (else $ENVFIXTURES_AWS_CERTIFICATE_ARN); the region."""

        aws_stack_timeout: float = 3600.0
        aws_certificate_arn: str = ""
        aws_region: str = ""

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        rules.refuse(
            policy.without(
                cfn_rules.check_file(template_path(ctx)), policy.disabled(ctx.environment_settings.rules_off)
            )
        )
        _certificate_arn(ctx)
        _region(ctx)

    def build(self, ctx: "BuildContext") -> Facts:
        return build_stack(
            ctx,
            backend="aws",
            endpoint_url=None,
            region=_region(ctx),
            certificate_arn=_certificate_arn(ctx),
            timeout=ctx.settings.aws_stack_timeout,
            max_delay=15.0,
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Empty the artifact bucket, delete the stack and verify it is gone (tolerates partial facts)."""
        region = facts.get("region") or _region(ctx)
        stack = facts.get("stack_id") or ctx.name
        bucket = (facts.get("outputs") or {}).get("ArtifactBucket")
        if bucket:
            empty_bucket(aws_clients.make_client("s3", endpoint_url=None, region=region), bucket)
        cf = aws_clients.make_client("cloudformation", endpoint_url=None, region=region)
        ctx.progress(f"aws: deleting stack {ctx.name}")
        cloudformation.delete_stack(cf, stack, timeout=ctx.settings.aws_stack_timeout, max_delay=15.0)
        super().teardown(ctx, facts)

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        return stack_diagnosis(
            Facts({"endpoint_url": None, "region": facts.get("region") or _region(ctx)}),
            facts.get("stack_id") or ctx.name,
        )


def empty_bucket(s3: Any, bucket: str) -> None:
    """Delete every object (and object version) of ``bucket``: CloudFormation cannot delete a full bucket."""
    try:
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            keys = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except s3.exceptions.NoSuchBucket:
        return


def _answers(endpoint_url: str) -> bool:
    with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=2) as answer:
        return answer.status == 200


def _certificate_arn(ctx: "BuildContext") -> str:
    arn = ctx.settings.aws_certificate_arn or os.environ.get("ENVFIXTURES_AWS_CERTIFICATE_ARN")
    if not arn:
        raise ConfigError(
            "the aws backend needs the ACM certificate of the public HTTPS listener: "
            "--env-set aws_certificate_arn=arn:aws:acm:... (or ENVFIXTURES_AWS_CERTIFICATE_ARN)"
        )
    return arn


def _region(ctx: "BuildContext") -> str:
    import boto3

    region = ctx.settings.aws_region or boto3.Session().region_name
    if not region:
        raise ConfigError("the aws backend needs a region: --env-set aws_region=... or AWS_REGION / AWS_DEFAULT_REGION")
    return region
