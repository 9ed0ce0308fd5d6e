"""The ``artifact`` component: the platform's code at the SHA, built once and stored in the artifact bucket.

Tasks fetch it into their sandbox through the app's ``fetch`` URI: a presigned S3 URL, the same call on
the moto server (``local``) and on a real bucket (``aws``). Facts: ``key``, ``sha256``, ``top_dir``,
``url`` (presigned, valid for ``artifact_url_seconds``, default 6 h).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from envfixtures.core.component import Component
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

    def build(self, ctx: "BuildContext") -> Facts:
        built = artifact.build(ctx.root, ctx.sha, ctx.workdir())
        aws = ctx.facts("aws")
        bucket = aws["outputs"]["ArtifactBucket"]
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
                "url": url,
            }
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """The object goes with the bucket (local: with the moto server; aws: the stack empties it)."""
