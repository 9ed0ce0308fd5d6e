"""The ``aws`` component: the environment's CloudFormation stack, on moto (local) or in a real account.

``local`` (:class:`LocalAws`): one moto server per environment on loopback — its state is the
environment's AWS; it answers only requests signed with a key generated for the environment
(:mod:`envfixtures.drivers.aws.moto_server`) — then an ACM certificate (moto checks the HTTPS listener's
ARN against ACM) and the stack. moto cannot delete a VPC stack (``docs/local-standins.md``), so stopping the
server is the honest local teardown (the default :meth:`Component.teardown`).

``aws`` (:class:`RealAws`): the same stack code against the real endpoint with the usual boto3
credential chain; teardown deletes the stack until it is gone (:func:`delete_environment_stack`: known blockers
cleared, bounded retries, then ``RetainResources``) and checks that nothing tagged as the environment's is left.

Configured in ``[tool.envfixtures.aws]``: ``template`` (the file), ``parameters`` (stack parameter -> one of
:data:`PARAMETER_VALUES`: what envfixtures passes it) and ``outputs`` (one of :data:`OUTPUT_MEANINGS` -> the
stack's output name). Checked before anything is built: every parameter without a ``Default`` must be given a
value, and every configured output must exist in the template.

Facts: ``backend``, ``endpoint_url`` (``None`` on aws), ``region``, ``stack_name``, ``stack_id``,
``certificate_arn``, ``outputs`` (every output, by name), ``endpoints`` (the configured outputs, by meaning;
read them with :func:`stack_output`), ``database_password`` (secret, generated per environment when a parameter
asks for it, passed to AWS as a NoEcho parameter through the API, never on a command line); on ``local``
``access_key_id`` and ``secret_access_key`` (secret): the only key the moto server accepts, with which
:func:`envfixtures.drivers.aws.clients.client` signs. The key id is not secret, as on AWS: it is in every
presigned URL (the artifact's, which apps' ``fetch`` URIs carry), and grants nothing without the secret.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from envfixtures import rules
from envfixtures.core import config as config_mod
from envfixtures.core.component import Component
from envfixtures.core.config import PlatformConfig, path_field
from envfixtures.core.errors import BuildError, ConfigError, TeardownError, WaitTimeout
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.aws import blockers, cloudformation, hosts, moto_server, ssm
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.rules import cloudformation as cfn_rules
from envfixtures.rules import policy as policy_mod

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

log = logging.getLogger(__name__)

#: What a stack parameter can be given: the environment's name, the SHA, the load balancer's certificate, a
#: database password generated for the environment; the API's public name and its hosted zone (settings
#: ``aws_domain_name`` / ``aws_hosted_zone_id``, "" when not given); the hosts' boot scripts, staged before the stack
#: (``host_scripts_url``: ``s3://<staging bucket>/<env>/<sha>/hosts/``); and two values that differ on a stand-in for
#: AWS (a moto server, local or at ``AWS_ENDPOINT_URL``), which boots no host and creates no network load balancer:
#: ``internal_load_balancer`` ("true" on AWS, "false" on a stand-in) and ``host_image`` (on AWS the configured
#: ``host_image``, the SSM parameter of the hosts' image; on a stand-in :data:`STAND_IN_IMAGE`, one moto serves).
PARAMETER_VALUES = (
    "env_name",
    "sha",
    "certificate_arn",
    "database_password",
    "domain_name",
    "hosted_zone_id",
    "host_scripts_url",
    "internal_load_balancer",
    "host_image",
)
#: The SSM parameter of an image that moto serves (it serves no Debian one): ``host_image`` on a stand-in.
STAND_IN_IMAGE = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
#: What the other components read from the stack's outputs, on the ``aws`` backend (``artifact_bucket`` on both).
OUTPUT_MEANINGS = {
    "artifact_bucket": "the bucket the artifact is stored in (artifact)",
    "database_host": "the database's endpoint address (database)",
    "database_port": "the database's port (database)",
    "database_name": "the database's name (database)",
    "database_user": "the database's master user name (database)",
    "broker_amqp": "the broker's AMQP endpoint, amqp://host:port (broker)",
    "broker_management": "the broker's management API URL (broker)",
    "marathon_url": "Marathon's URL (scheduler)",
    "load_balancer_dns": "the load balancer's DNS name, served over HTTPS (api)",
    "bastion_host": "the host through which the instances are reached over SSH (host checks)",
    "image_registry": "where the images are pushed, <registry host>/<namespace>: an ECR registry (images)",
    "api_host": "the API's public host name, served over HTTPS: its domain, else the load balancer's name (api)",
    "api_target_group": "the ARN of the target group the API's tasks are registered in, as ip:port (api)",
    "broker_admin_secret": "the Secrets Manager secret of the broker's administrator, JSON username/password (broker)",
}
SECRET_KEYS = ("database_password",)


@dataclasses.dataclass(frozen=True)
class StackConfig:
    """The stack: its template, what its parameters are given, what its outputs mean."""

    #: the CloudFormation template, relative to the checkout
    template: str = path_field()
    #: the directory of the hosts' boot scripts (``*.sh``), staged in S3 before the stack (``host_scripts_url``)
    host_scripts: str = path_field(kind="dir")
    #: the hosts' image on AWS, as its SSM parameter name or an AMI id (``host_image``)
    host_image: str = ""
    #: stack parameter -> one of PARAMETER_VALUES
    parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    #: one of OUTPUT_MEANINGS -> the stack's output name
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the stack's tags (CloudFormation passes them on to the resources): tag key -> one of "env_name", "sha"
    tags: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"envfixtures:env": "env_name", "envfixtures:sha": "sha"}
    )


def template_path(ctx: "BuildContext") -> Path:
    if not ctx.config.template:
        raise ConfigError(f"{ctx.platform.where('template', 'aws')}: not set (the stack's CloudFormation template)")
    return ctx.path(ctx.config.template)


def stack_output(aws: Facts, meaning: str) -> str:
    """The value of the stack's output that the platform's configuration says means ``meaning``."""
    value = (aws.get("endpoints") or {}).get(meaning)
    if not value:
        raise BuildError(
            f"no stack output for {meaning!r} ({OUTPUT_MEANINGS.get(meaning, '?')}): name it in "
            f'[tool.envfixtures.aws.outputs] {meaning} = "<output name>" (stack outputs: '
            f"{', '.join(sorted(aws.get('outputs') or {})) or 'none'})"
        )
    return str(value)


class Stack(Component):
    """What both backends share: the template, its static rules, and its agreement with the configuration."""

    name = "aws"
    Config = StackConfig

    @classmethod
    def inputs(cls, ctx: "BuildContext") -> list[Path]:
        return [template_path(ctx)]

    @classmethod
    def lint(cls, ctx: "BuildContext", *, thorough: bool = False) -> list[rules.Finding]:
        policy = policy_mod.of_context(ctx)
        examples = cfn_rules.example_parameters(ctx.config.parameters)
        return policy.without(cfn_rules.check_file(template_path(ctx), lint=thorough, values=examples, policy=policy))

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        rules.refuse(cls.lint(ctx))
        check_stack(ctx)


def check_stack(ctx: "BuildContext") -> None:
    """The template's parameters and outputs agree with the configuration."""
    config: StackConfig = ctx.config
    where = ctx.platform.where(section="aws")
    path = template_path(ctx)
    template = cloudformation.load_template(path)
    declared = template.get("Parameters") or {}
    for parameter, value in config.parameters.items():
        if value not in PARAMETER_VALUES:
            raise ConfigError(
                f"{where} parameters.{parameter} = {value!r}: known values: {', '.join(PARAMETER_VALUES)}"
            )
        if parameter not in declared:
            raise ConfigError(f"{where} parameters.{parameter}: {path} declares no such parameter")
    for parameter, spec in declared.items():
        if parameter not in config.parameters and not (isinstance(spec, dict) and "Default" in spec):
            raise ConfigError(
                f"{path}: parameter {parameter} has no Default and no value: give it one in {where} parameters "
                f"({', '.join(PARAMETER_VALUES)})"
            )
    for key, value in config.tags.items():
        if value not in ("env_name", "sha"):
            raise ConfigError(f"{where} tags.{key} = {value!r}: known values: env_name, sha")
    if "host_scripts_url" in config.parameters.values() and not config.host_scripts:
        raise ConfigError(
            f"{ctx.platform.where('host_scripts', 'aws')}: not set, and a stack parameter is given host_scripts_url "
            "(the directory of the hosts' boot scripts, staged in S3 before the stack)"
        )
    if "host_image" in config.parameters.values() and not config.host_image:
        raise ConfigError(
            f"{ctx.platform.where('host_image', 'aws')}: not set, and a stack parameter is given host_image (the "
            "hosts' image on AWS: its SSM parameter name or an AMI id)"
        )
    outputs = template.get("Outputs") or {}
    for meaning, output in config.outputs.items():
        if meaning not in OUTPUT_MEANINGS:
            raise ConfigError(f"{where} outputs.{meaning}: unknown meaning; known: {', '.join(OUTPUT_MEANINGS)}")
        if output not in outputs:
            raise ConfigError(f"{where} outputs.{meaning} = {output!r}: {path} has no such output")


def _needs(ctx: "BuildContext", value: str) -> bool:
    return value in ctx.config.parameters.values()


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
    credentials: aws_clients.LocalCredentials | None = None,
    on_stand_in: bool = False,
) -> Facts:
    """Create the environment's stack (named like the environment) and return the component's facts.

    ``credentials``: the local moto server's (``None`` on AWS, where boto3's chain applies); they become facts.
    ``on_stand_in``: AWS is a moto server (the stand-in values of :data:`PARAMETER_VALUES`)."""
    cf = aws_clients.make_client("cloudformation", endpoint_url=endpoint_url, region=region, credentials=credentials)
    password = generate_password() if _needs(ctx, "database_password") else ""
    if password:
        ctx.add_secret("database master password", password)
    staged: dict[str, str] = {}
    if _needs(ctx, "host_scripts_url"):
        staged = stage_host_scripts(ctx, endpoint_url=endpoint_url, region=region, credentials=credentials)
    values: dict[str, str] = {
        "env_name": ctx.name,
        "sha": ctx.sha,
        "certificate_arn": certificate_arn,
        "database_password": password,
        "domain_name": _domain(ctx) if hasattr(ctx.settings, "aws_domain_name") else "",
        "hosted_zone_id": getattr(ctx.settings, "aws_hosted_zone_id", "").strip(),
        "host_scripts_url": staged.get("host_scripts_url", ""),
        "internal_load_balancer": "false" if on_stand_in else "true",
        "host_image": STAND_IN_IMAGE if on_stand_in else ctx.config.host_image,
    }
    ctx.record("stack", name=ctx.name, region=region, endpoint_url=endpoint_url)
    ctx.progress(f"aws: creating stack {ctx.name} in {region}{' at ' + endpoint_url if endpoint_url else ''}")
    stack_id = cloudformation.create_stack(
        cf,
        name=ctx.name,
        template_path=template_path(ctx),
        parameters={parameter: values[value] for parameter, value in ctx.config.parameters.items()},
        tags={key: values[value] for key, value in ctx.config.tags.items()},
        secrets=[password] if password else [],
        timeout=timeout,
        max_delay=max_delay,
        canonical=endpoint_url is not None,  # moto: the template as CloudFormation reads it
    )
    outputs = cloudformation.outputs(cf, stack_id)
    extra: dict[str, Any] = dict(staged)
    if credentials is not None:
        extra |= {"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key}
    return Facts(
        {
            "backend": backend,
            "endpoint_url": endpoint_url,
            "region": region,
            "stack_name": ctx.name,
            "stack_id": stack_id,
            "certificate_arn": certificate_arn,
            "outputs": outputs,
            "endpoints": {meaning: outputs.get(name) for meaning, name in ctx.config.outputs.items()},
            "database_password": password,
            **extra,
        },
        secrets=(SECRET_KEYS if password else ()) + (("secret_access_key",) if credentials is not None else ()),
    )


def stage_host_scripts(
    ctx: "BuildContext", *, endpoint_url: str | None, region: str, credentials: aws_clients.LocalCredentials | None
) -> dict[str, str]:
    """Upload the configured ``host_scripts`` (``*.sh``) to the account's staging bucket (created when missing)
    under ``<env>/<sha>/hosts/``, journaled first so that the teardown deletes the prefix even after a failed build;
    the facts that say where (``staging_bucket``, ``staging_prefix``, ``host_scripts_url``)."""
    directory = ctx.path(ctx.config.host_scripts)
    if not sorted(directory.glob("*.sh")):
        raise BuildError(f"aws: {directory} holds no *.sh ({ctx.platform.where('host_scripts', 'aws')})")

    def make(service: str) -> Any:
        return aws_clients.make_client(service, endpoint_url=endpoint_url, region=region, credentials=credentials)

    account = str(make("sts").get_caller_identity()["Account"])
    bucket = hosts.staging_bucket_name(account, region)
    prefix = f"{ctx.name}/{ctx.sha}/hosts/"
    ctx.record("staging", bucket=bucket, prefix=f"{ctx.name}/", region=region, endpoint_url=endpoint_url)
    s3 = make("s3")
    if hosts.ensure_staging_bucket(s3, bucket, region):
        ctx.progress(f"aws: created the staging bucket {bucket}")
    keys = hosts.upload_scripts(s3, bucket, prefix, directory)
    ctx.progress(f"aws: staged {len(keys)} host script(s) at s3://{bucket}/{prefix}")
    return {"staging_bucket": bucket, "staging_prefix": f"{ctx.name}/", "host_scripts_url": f"s3://{bucket}/{prefix}"}


def unstage_host_scripts(ctx: "BuildContext", facts: Facts, region: str) -> None:
    """Delete the environment's prefix of the staging bucket (from the facts, else from the journal)."""
    places = [(facts["staging_bucket"], facts["staging_prefix"])] if facts.get("staging_bucket") else []
    places += [(r["bucket"], r["prefix"]) for r in ctx.records("staging")]
    s3 = aws_clients.make_client("s3", endpoint_url=None, region=region)
    for bucket, prefix in dict.fromkeys(places):
        count = hosts.delete_prefix(s3, bucket, prefix)
        ctx.progress(f"aws: deleted {count} staged object(s) under s3://{bucket}/{prefix}")


#: Lines of each host's console output that a failed build's message carries (the whole output is in its file).
CONSOLE_TAIL = 12


def with_console_evidence(ctx: "BuildContext", error: Exception, region: str) -> BuildError:
    """``error`` (a failed create) with the console output of the environment's hosts: each written to the
    component's logs, and its last :data:`CONSOLE_TAIL` lines added to the message (Terratest's ec2-syslog)."""
    ec2 = aws_clients.make_client("ec2", endpoint_url=None, region=region)
    directory = ctx.log_path("console").parent / f"{ctx.component}-console"
    try:
        written = hosts.collect_console_outputs(ec2, {env_tag_key(ctx.config): ctx.name}, directory)
    except (ClientError, BotoCoreError) as exc:
        return BuildError(f"{error}\nconsole output of the hosts not collected: {_aws_error(exc)}")
    if not written:
        return BuildError(f"{error}\nno host of the environment was found for its console output")
    parts = [f"{error}", f"console output of {len(written)} host(s), in {directory}:"]
    for instance, path in written:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-CONSOLE_TAIL:]
        parts.append(f"-- {instance['role']} {instance['id']} ({instance['state']}), last lines:")
        parts += [f"   {line}" for line in tail]
    ctx.progress(f"aws: console output of {len(written)} host(s) written to {directory}")
    return BuildError("\n".join(parts))


def stack_diagnosis(facts: Facts, stack: str) -> str:
    """The stack's status and its latest events (no parameters: moto shows NoEcho values)."""
    cf = aws_clients.client(facts, "cloudformation")
    found = cloudformation.describe(cf, stack)
    if found is None:
        return f"stack {stack}: does not exist"
    lines = [f"stack {stack}: {found['StackStatus']} {found.get('StackStatusReason') or ''}".rstrip()]
    lines += cloudformation.events(cf, stack, limit=20)
    return "\n".join(lines)


class LocalAws(Stack):
    """AWS on this machine: a moto server per environment, and the stack created in it."""

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """Seconds to wait for the stack on the moto server."""

        aws_stack_timeout: float = 60.0

    def build(self, ctx: "BuildContext") -> Facts:
        credentials = aws_clients.LocalCredentials.new()
        ctx.add_secret("moto secret access key", credentials.secret_access_key)
        endpoint_url, _ = moto_server.start(ctx.spawn, workdir=ctx.workdir(), credentials=credentials)
        certificate_arn = ""
        if _needs(ctx, "certificate_arn"):
            acm = aws_clients.make_client(
                "acm", endpoint_url=endpoint_url, region=aws_clients.LOCAL_REGION, credentials=credentials
            )
            certificate_arn = acm.request_certificate(DomainName=f"{ctx.name}.envfixtures.test")["CertificateArn"]
        return build_stack(
            ctx,
            backend="local",
            endpoint_url=endpoint_url,
            region=aws_clients.LOCAL_REGION,
            certificate_arn=certificate_arn,
            timeout=ctx.settings.aws_stack_timeout,
            max_delay=0.5,
            credentials=credentials,
            on_stand_in=True,
        )

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        if not facts.get("endpoint_url"):
            return ""
        return stack_diagnosis(facts, facts.get("stack_id") or ctx.name)


class RealAws(Stack):
    """AWS in a real account: the stack created with the usual boto3 credentials, deleted at teardown.

    Settings: ``aws_certificate_arn`` (or ``ENVFIXTURES_AWS_CERTIFICATE_ARN``) — required: the
    ACM certificate of the public HTTPS listener; ``aws_region`` (else boto3's configured region);
    ``aws_stack_timeout`` in seconds (default 3600: a Multi-AZ RDS instance takes ~20 minutes);
    ``aws_delete_attempts`` (default 3); ``aws_domain_name`` and ``aws_hosted_zone_id``: the API's public name and
    the public hosted zone its alias record goes to (both or neither; the certificate must cover the name).
    """

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """The stack's wait; the load balancer's certificate (else $ENVFIXTURES_AWS_CERTIFICATE_ARN); the region."""

        aws_stack_timeout: float = 3600.0
        aws_certificate_arn: str = ""
        aws_region: str = ""
        #: deletes of a stack that ends DELETE_FAILED (its known blockers cleared in between) before the last
        #: delete retains what still fails
        aws_delete_attempts: int = cloudformation.DELETE_ATTEMPTS
        #: the API's public name (an alias record of the load balancer) and the public hosted zone that holds it
        aws_domain_name: str = ""
        aws_hosted_zone_id: str = ""

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """The template and configuration, then the account's preconditions, each refused in one line before the
        stack is created: a certificate named, a region, credentials that AWS accepts (STS ``GetCallerIdentity``),
        the certificate in ACM, in that region, issued (a listener takes no other), and room in the quotas that
        can be read (:data:`QUOTAS`) for what the template creates."""
        super().check(ctx)
        arn = _certificate_arn(ctx) if _needs(ctx, "certificate_arn") else ""
        region = _region(ctx)
        domain = _domain(ctx)
        account = check_credentials(region)
        if arn:
            check_certificate(arn, region, account)
            if domain:
                check_certificate_covers(arn, region, domain)
        check_quotas(cloudformation.load_template(template_path(ctx)), region)

    def build(self, ctx: "BuildContext") -> Facts:
        """The stack; when its create fails, each host's console output is the evidence (the message and the
        component's logs carry it): a host whose boot script failed or never signalled says why there."""
        region = _region(ctx)
        try:
            return build_stack(
                ctx,
                backend="aws",
                endpoint_url=None,
                region=region,
                certificate_arn=_certificate_arn(ctx) if _needs(ctx, "certificate_arn") else "",
                timeout=ctx.settings.aws_stack_timeout,
                max_delay=15.0,
                on_stand_in=bool(stand_in()),
            )
        except BuildError as exc:  # FailedState and WaitTimeout among them
            raise with_console_evidence(ctx, exc, region) from None

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Delete the stack until it is gone (see :func:`delete_environment_stack`; tolerates partial facts)."""
        ctx.progress(f"aws: deleting stack {ctx.name}")
        region = facts.get("region") or _region(ctx)
        try:
            delete_environment_stack(
                name=ctx.name,
                stack=facts.get("stack_id") or ctx.name,
                region=region,
                tag_key=env_tag_key(ctx.config),
                timeout=ctx.settings.aws_stack_timeout,
                max_delay=15.0,
                attempts=ctx.settings.aws_delete_attempts,
                progress=ctx.progress,
            )
        finally:  # the staged scripts go whatever became of the stack (they are this environment's only)
            unstage_host_scripts(ctx, facts, region)
        super().teardown(ctx, facts)

    def diagnose(self, ctx: "BuildContext", facts: Facts) -> str:
        return stack_diagnosis(
            Facts({"endpoint_url": None, "region": facts.get("region") or _region(ctx)}),
            facts.get("stack_id") or ctx.name,
        )


def empty_bucket(s3: Any, bucket: str) -> None:
    """Delete every object (and object version) of ``bucket``: CloudFormation cannot delete a full bucket."""
    blockers.empty_bucket(s3, bucket)


def env_tag_key(config: StackConfig) -> str:
    """The stack tag that carries the environment's name (``envfixtures:env`` unless configured otherwise; the
    tag CloudFormation itself puts on a stack's resources when the platform configures none)."""
    keys = [key for key, value in config.tags.items() if value == "env_name"]
    return keys[0] if keys else "aws:cloudformation:stack-name"


def platform_env_tag_key(platform: PlatformConfig) -> str:
    """:func:`env_tag_key` of the platform's ``[tool.envfixtures.aws]`` (for a component other than ``aws``)."""
    return env_tag_key(config_mod.parse([StackConfig], platform.section("aws"), platform.where(section="aws"))[0])


def delete_environment_stack(
    *,
    name: str,
    stack: str,
    region: str,
    tag_key: str,
    timeout: float,
    max_delay: float,
    attempts: int = cloudformation.DELETE_ATTEMPTS,
    progress: Callable[[str], None] | None = None,
    retry: str = "",
) -> cloudformation.Deleted | None:
    """Delete the environment ``name``'s stack (``stack``: its id or name) in ``region`` of the real account until
    it is gone, and make sure nothing tagged ``tag_key = name`` is left; what the teardown and ``envfixtures reap
    --aws`` both do.

    Before the delete the stack's known blockers are cleared (its buckets emptied of every version, its hosted
    zones of their records); a delete that ends ``DELETE_FAILED`` lists the blockers, clears them and is retried,
    ``attempts`` times in all, then one last delete retains what still fails. Raises :class:`TeardownError` (one
    line naming the stack and what is left) when the delete is refused or does not finish, when resources were
    retained, or when the stack is gone but resources tagged as the environment's remain (moto drops the record
    of a VPC stack it refuses to delete; a retained resource stays tagged): the environment stays
    ``teardown_failed`` and ``envfixtures down`` / ``reap`` retry it until nothing is left. ``retry``: the command
    that retries, for the messages (default ``envfixtures down NAME``)."""
    retry = retry or f"envfixtures down {name}"
    cf = aws_clients.make_client("cloudformation", endpoint_url=None, region=region)

    def clear(resources: list[dict[str, Any]]) -> list[str]:
        return blockers.clear_known(
            resources, lambda service: aws_clients.make_client(service, endpoint_url=None, region=region)
        )

    def left(prefix: str) -> str:
        tagging = aws_clients.make_client("resourcegroupstaggingapi", endpoint_url=None, region=region)
        try:
            found = sorted(blockers.tagged_resources(tagging, tag_key, name))
        except (ClientError, BotoCoreError) as exc:
            return f"{prefix}; resources tagged {tag_key}={name} could not be listed ({type(exc).__name__})"
        if not found:
            return ""
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        return (
            f"{prefix}; {len(found)} resource(s) tagged {tag_key}={name} remain in {region}: {shown}; delete them, "
            f"then run `{retry}` again"
        )

    try:
        deleted = cloudformation.delete_stack(
            cf, stack, timeout=timeout, max_delay=max_delay, clear=clear, attempts=attempts, progress=progress
        )
    except TeardownError as exc:
        raise TeardownError(left(str(exc)) or str(exc)) from None
    if deleted is not None and deleted.retained:
        raise TeardownError(
            f"stack {deleted.name} deleted retaining {len(deleted.retained)} resource(s) it could not delete: "
            f"{', '.join(deleted.retained)}; delete them, then run `{retry}` again"
        )
    if deleted is None:
        # No stack (any more): a delete refused by moto, a retained resource or a stack deleted by hand may have
        # left resources that no stack holds any more; they carry the environment's tag.
        problem = left(f"stack {name} is gone but not all of it")
        if problem:
            raise TeardownError(problem)
    return deleted


def environment_stacks(region: str, tag_key: str) -> list[dict[str, Any]]:
    """The stacks of ``region`` that carry ``tag_key`` (see :func:`cloudformation.tagged_stacks`)."""
    cf = aws_clients.make_client("cloudformation", endpoint_url=None, region=region)
    return cloudformation.tagged_stacks(cf, tag_key)


def remnants(region: str, tag_key: str) -> dict[str, list[str]]:
    """Resources of ``region`` tagged ``tag_key``, by the tag's value (the environment's name) -> their ARNs."""
    tagging = aws_clients.make_client("resourcegroupstaggingapi", endpoint_url=None, region=region)
    found: dict[str, list[str]] = {}
    for arn, tags in sorted(blockers.tagged_resources(tagging, tag_key).items()):
        found.setdefault(tags.get(tag_key, "?"), []).append(arn)
    return found


def _aws_error(exc: BaseException) -> str:
    """A botocore error in one line, without anything a request carried (its code and AWS's message)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error") or {}
        return f"{error.get('Code') or 'error'}: {error.get('Message') or ''}".strip().rstrip(":")
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def check_credentials(region: str) -> str:
    """The account the usual boto3 chain's credentials belong to (STS ``GetCallerIdentity``: needs no permission);
    refused in one line when there are none or AWS does not accept them."""
    sts = aws_clients.make_client("sts", endpoint_url=None, region=region)
    try:
        return str(sts.get_caller_identity()["Account"])
    except NoCredentialsError:
        raise ConfigError(
            "the aws backend found no AWS credentials (environment, profile or instance role): set AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(
            f"the aws backend's credentials were refused by STS GetCallerIdentity in {region} at "
            f"{sts.meta.endpoint_url}: {_aws_error(exc)}"
        ) from None


def check_certificate(arn: str, region: str, account: str) -> None:
    """The load balancer's certificate exists in ACM in the stack's ``region`` and is issued (a listener takes no
    other); refused in one line otherwise."""
    parts = arn.split(":")
    if len(parts) < 6 or parts[:3] != ["arn", parts[1], "acm"] or not parts[5].startswith("certificate/"):
        raise ConfigError(f"aws_certificate_arn {arn!r}: not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:...)")
    if parts[3] != region:
        raise ConfigError(
            f"aws_certificate_arn: the certificate is in {parts[3] or '?'}, the stack in {region}: a load balancer "
            f"takes a certificate of its own region (request or import it in {region})"
        )
    acm = aws_clients.make_client("acm", endpoint_url=None, region=region)
    try:
        found = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except (ClientError, BotoCoreError) as exc:
        code = (exc.response.get("Error") or {}).get("Code") if isinstance(exc, ClientError) else ""
        if code == "ResourceNotFoundException":
            raise ConfigError(
                f"aws_certificate_arn: no such certificate in ACM in {region} for account {account}: {arn}"
            ) from None
        raise ConfigError(f"aws_certificate_arn: {arn} not read from ACM in {region}: {_aws_error(exc)}") from None
    status = found.get("Status")
    if status != "ISSUED":
        raise ConfigError(
            f"aws_certificate_arn: {arn} is {status} in ACM, not ISSUED: a load balancer's listener takes only an "
            "issued certificate (finish its validation, or import one)"
        )


#: Quotas checked before the stack is created: resource type -> (what, Service Quotas' service and quota codes, the
#: EC2 call and its result key that list what counts against it in the region).
QUOTAS = {
    "AWS::EC2::VPC": ("VPCs per Region", "vpc", "L-F678F1CE", "describe_vpcs", "Vpcs"),
    "AWS::EC2::EIP": ("EC2-VPC Elastic IPs", "ec2", "L-0263D0A3", "describe_addresses", "Addresses"),
}


def check_quotas(template: dict[str, Any], region: str) -> None:
    """Refuse in one line a stack that would exceed a quota of :data:`QUOTAS` in ``region`` (its value from Service
    Quotas, what counts against it from EC2). A quota that cannot be read (no permission, not served) is not
    checked, and the log says so: the create then fails with AWS's own error."""
    wanted: dict[str, int] = {}
    for resource in (template.get("Resources") or {}).values():
        kind = resource.get("Type") if isinstance(resource, dict) else None
        if kind in QUOTAS and not resource.get("Condition"):
            wanted[kind] = wanted.get(kind, 0) + 1
    if not wanted:
        return
    quotas = aws_clients.make_client("service-quotas", endpoint_url=None, region=region)
    ec2 = aws_clients.make_client("ec2", endpoint_url=None, region=region)
    for kind, count in sorted(wanted.items()):
        what, service, code, call, key = QUOTAS[kind]
        try:
            limit = int(quotas.get_service_quota(ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
            used = sum(len(page.get(key, [])) for page in _pages(ec2, call))
        except (ClientError, BotoCoreError) as exc:
            log.warning("aws: quota %s (%s) in %s not checked: %s", what, code, region, _aws_error(exc))
            continue
        if used + count > limit:
            raise ConfigError(
                f"aws quota {what} ({code}) in {region}: {used} of {limit} in use and the stack creates {count}: "
                "free some or ask for a raise (Service Quotas)"
            )


def _pages(client: Any, call: str) -> list[dict[str, Any]]:
    if client.can_paginate(call):
        return list(client.get_paginator(call).paginate())
    return [getattr(client, call)()]


# ---------------------------------------------------------------------- what the stack's other components share


#: Seconds a component of the stack waits for the name of an endpoint the stack gave it to resolve from here.
RESOLVE_TIMEOUT = 60.0


def stand_in() -> str:
    """The endpoint that answers CloudFormation in AWS's place for the usual boto3 chain (``AWS_ENDPOINT_URL``, as
    the tests point the aws backend at a moto server), or "" when it is AWS's own."""
    url = aws_clients.endpoint_of("cloudformation", None)
    return "" if aws_clients.is_aws_endpoint(url) else url


def refuse_on_stand_in(ctx: "BuildContext", missing: str) -> None:
    """Refuse the component at configure time when AWS is a stand-in that does not provide what it needs:
    ``missing`` says what (a moto server records resources; it boots no host and runs no service)."""
    url = stand_in()
    if url:
        raise ConfigError(
            f"{ctx.component} (aws): AWS is a stand-in at {url} (AWS_ENDPOINT_URL), and {missing}; "
            f"leave {ctx.component} out of the components there (ini env_components), or use --env-backend local"
        )


def require_outputs(ctx: "BuildContext", *meanings: str) -> None:
    """Refuse at configure time a component whose stack outputs are not configured (else it fails after the stack
    was created)."""
    section = ctx.platform.section("aws")
    configured = section.get("outputs") or {}
    for meaning in meanings:
        if not configured.get(meaning):
            raise ConfigError(
                f"{ctx.component} (aws): no stack output for {meaning!r} ({OUTPUT_MEANINGS[meaning]}): name it in "
                f'{ctx.platform.where(section="aws.outputs")} {meaning} = "<output name>"'
            )


def wait_resolves(host: str, *, what: str, timeout: float | None = None) -> None:
    """Until ``host`` resolves from here, bounded (:data:`RESOLVE_TIMEOUT`): a name the stack gave that does not
    resolve once the stack is complete will not (a private zone seen from outside the VPC, a stand-in's made-up
    name), so waiting out a service's long timeout on it would only hide the cause."""
    limit = RESOLVE_TIMEOUT if timeout is None else timeout
    try:
        wait_for(
            lambda: socket.getaddrinfo(host, None),
            what=f"{what}: {host} to resolve",
            timeout=limit,
            retry_on=(socket.gaierror, UnicodeError),
            first_delay=0.5,
            max_delay=5.0,
        )
    except WaitTimeout as exc:
        raise BuildError(
            f"{what}: {host} does not resolve from this machine after {limit:.0f}s ({exc}); the stack "
            "gives no way into its VPC yet: run the suites on an agent inside the VPC"
        ) from None


#: How the runner reaches what the stack keeps inside its VPC (setting ``aws_way_in``): "" = directly (a runner
#: inside the VPC), "ssm" = SSM port-forwarding sessions through an instance of the environment (:mod:`.ssm`).
WAY_IN = ("", "ssm")
#: Seconds an SSM session has to open its loopback port.
SESSION_TIMEOUT = 60.0


def check_way_in(ctx: "BuildContext") -> None:
    """Refuse at configure time a way in that cannot work here (an unknown one; SSM without its plugin)."""
    value = getattr(ctx.settings, "aws_way_in", "")
    if value not in WAY_IN:
        raise ConfigError(f'aws_way_in = {value!r}: known: ssm, or "" (the runner is inside the VPC)')
    problem = ssm.missing() if value == "ssm" else None
    if problem:
        raise ConfigError(f"{ctx.component} (aws): aws_way_in=ssm, and {problem}")


def reach(ctx: "BuildContext", host: str, port: int, *, what: str, roles: tuple[str, ...] = ()) -> tuple[str, int]:
    """Where the runner reaches ``host:port`` of the stack's VPC: itself once the name resolves (a runner inside
    the VPC), or, with ``aws_way_in=ssm``, ``127.0.0.1:<port>`` of an SSM port-forwarding session through one of the
    environment's instances (preferring the ``Role`` tags ``roles``), started as a process of the component
    (journaled, stopped at teardown)."""
    if getattr(ctx.settings, "aws_way_in", "") != "ssm":
        wait_resolves(host, what=what)
        return host, port
    aws = ctx.facts("aws")
    region = str(aws.get("region") or "")
    target = ssm.gateway(aws_clients.client(aws, "ec2"), platform_env_tag_key(ctx.platform), ctx.name, roles)
    local_port = free_port()
    process = ctx.spawn(
        f"ssm-{host.split('.')[0]}-{port}",
        ssm.argv(target, host, port, local_port, region),
        env=aws_clients.chain_environ(),  # the runner's credentials, no more
    )
    process.wait_ready(
        lambda: ssm.accepts(local_port),
        what=f"{what}: an SSM session to {host}:{port} through {target}",
        timeout=SESSION_TIMEOUT,
        retry_on=(OSError,),
        first_delay=0.2,
    )
    ctx.progress(f"{ctx.component}: {host}:{port} reached at 127.0.0.1:{local_port} (SSM session through {target})")
    return "127.0.0.1", local_port


def _certificate_arn(ctx: "BuildContext") -> str:
    arn = ctx.settings.aws_certificate_arn or os.environ.get("ENVFIXTURES_AWS_CERTIFICATE_ARN")
    if not arn:
        raise ConfigError(
            "the aws backend needs the ACM certificate of the public HTTPS listener: "
            "--env-set aws_certificate_arn=arn:aws:acm:... (or ENVFIXTURES_AWS_CERTIFICATE_ARN)"
        )
    return arn


def _domain(ctx: "BuildContext") -> str:
    """The API's public name (``aws_domain_name``), given with its hosted zone or not at all; "" for none."""
    domain = ctx.settings.aws_domain_name.strip().rstrip(".").lower()
    zone = ctx.settings.aws_hosted_zone_id.strip()
    if bool(domain) != bool(zone):
        raise ConfigError(
            "aws: set both aws_domain_name (the API's public name) and aws_hosted_zone_id (the public hosted zone "
            "its alias record goes to), or neither"
        )
    if domain and not (_needs(ctx, "domain_name") and _needs(ctx, "hosted_zone_id")):
        raise ConfigError(
            f'aws_domain_name: no stack parameter is given it: map one to "domain_name" and one to '
            f'"hosted_zone_id" in {ctx.platform.where(section="aws.parameters")}'
        )
    return domain


def certificate_covers(names: list[str], domain: str) -> bool:
    """Whether a certificate for ``names`` (its domain and alternative names) is valid for ``domain`` (a wildcard
    covers one label)."""
    domain = domain.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == domain or (name.startswith("*.") and domain.split(".", 1)[-1] == name[2:] and "." in domain):
            return True
    return False


def check_certificate_covers(arn: str, region: str, domain: str) -> None:
    """The listener's certificate is valid for the API's public name; refused in one line otherwise."""
    acm = aws_clients.make_client("acm", endpoint_url=None, region=region)
    try:
        found = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(f"aws_certificate_arn: {arn} not read from ACM in {region}: {_aws_error(exc)}") from None
    names = [found.get("DomainName") or "", *(found.get("SubjectAlternativeNames") or [])]
    if not certificate_covers(names, domain):
        raise ConfigError(
            f"aws_certificate_arn: the certificate is for {', '.join(sorted(set(filter(None, names)))) or 'no name'}, "
            f"not for aws_domain_name {domain}: clients would refuse the API's name"
        )


def _region(ctx: "BuildContext") -> str:
    import boto3

    region = ctx.settings.aws_region or boto3.Session().region_name
    if not region:
        raise ConfigError("the aws backend needs a region: --env-set aws_region=... or AWS_REGION / AWS_DEFAULT_REGION")
    return region
