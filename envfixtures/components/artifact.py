"""The ``artifact`` component: the platform's code at the SHA, built once and stored in the artifact bucket.

Configured in ``[tool.envfixtures.artifact]``: ``source`` (a directory built into an sdist, with its
``build_info`` file written with the SHA) or ``command`` (a shell command that writes one file); see
:mod:`envfixtures.drivers.artifact`. The bucket is the stack's output the ``aws`` component's ``outputs`` name
``artifact_bucket``.

Tasks fetch it into their sandbox through the app's ``fetch`` URI: a presigned S3 URL, the same call on
the moto server (``local``) and on a real bucket (``aws``), with the artifact's digest in its fragment
(``#sha256=<hex>``): the local scheduler's fetcher refuses a download that does not match it (a fragment is
never sent to the server, so the URL's signature and a real Mesos fetcher are unaffected). Facts: ``key``,
``sha256``, ``top_dir``, ``url`` (presigned, valid for ``artifact_url_seconds``, default 6 h, with the digest).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from envfixtures.components.aws import stack_output
from envfixtures.core.component import Component
from envfixtures.core.config import path_field
from envfixtures.core.errors import ConfigError
from envfixtures.core.facts import Facts
from envfixtures.drivers import artifact
from envfixtures.drivers.aws import clients as aws_clients

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext


class Artifact(Component):
    name = "artifact"
    requires = ("aws",)

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """How long the presigned fetch URL stays valid."""

        artifact_url_seconds: int = 21600

    @dataclasses.dataclass(frozen=True)
    class Config:
        """How the artifact is built: from a source directory, or by a command."""

        #: a directory (relative to the checkout) whose committed content is built into an sdist
        source: str = path_field(kind="dir")
        #: a file inside ``source`` written with ``SHA = "<sha>"`` before the build ("" for none)
        build_info: str = ""
        #: instead of ``source``: a shell command run in the committed tree, writing one file into
        #: ``$ENVFIXTURES_ARTIFACT_DIR``
        command: str = ""

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        where = ctx.platform.where(section="artifact")
        if bool(ctx.config.source) == bool(ctx.config.command):
            raise ConfigError(f"{where}: set one of source (a directory to build an sdist of) or command")
        if ctx.config.build_info and not ctx.config.source:
            raise ConfigError(f"{where} build_info: only with source")

    def build(self, ctx: "BuildContext") -> Facts:
        if ctx.config.command:
            built = artifact.build_with_command(ctx.root, ctx.sha, ctx.workdir(), command=ctx.config.command)
        else:
            built = artifact.build(
                ctx.root, ctx.sha, ctx.workdir(), source=ctx.config.source, build_info=ctx.config.build_info
            )
        aws = ctx.facts("aws")
        bucket = stack_output(aws, "artifact_bucket")
        key = f"{ctx.name}/{built.path.name}"
        ctx.record("s3-object", bucket=bucket, key=key)
        s3 = aws_clients.client(aws, "s3")
        s3.upload_file(
            str(built.path), bucket, key, ExtraArgs={"Metadata": {"sha256": built.sha256, "git-sha": ctx.sha}}
        )
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=ctx.settings.artifact_url_seconds,
        )
        ctx.progress(f"artifact: {built.path.name} sha256 {built.sha256[:12]} stored as s3://{bucket}/{key}")
        return Facts(
            {
                "bucket": bucket,
                "key": key,
                "sha256": built.sha256,
                "artifact_sha256": built.sha256,
                "top_dir": built.top_dir,
                "url": f"{url}#sha256={built.sha256}",
            }
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """The object goes with the bucket (local: with the moto server; aws: the stack empties it)."""
