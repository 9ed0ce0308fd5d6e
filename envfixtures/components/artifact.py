"""The ``artifact`` component: the platform's code at the SHA, built once and stored in the artifact bucket.

Tasks fetch it into their sandbox through the app's ``fetch`` URI: a presigned S3 URL, the same call on
the moto server (``local``) and on a real bucket (``aws``). Facts: ``key``, ``sha256``, ``top_dir``,
``url`` (presigned, valid for ``artifact_url_seconds``, default 6 h).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envfixtures.core.component import Component
from envfixtures.core.facts import Facts
from envfixtures.drivers import artifact
from envfixtures.drivers.aws import clients as aws_clients

if TYPE_CHECKING:
    from envfixtures.core.environment import Environment


class Artifact(Component):
    name = "artifact"
    requires = ("aws",)

    def build(self, env: "Environment") -> Facts:
        built = artifact.build(env.root, env.sha, env.workdir(self.name))
        aws = env.facts("aws")
        bucket = aws["outputs"]["ArtifactBucket"]
        key = f"{env.name}/{built.path.name}"
        env.record(self.name, "s3-object", bucket=bucket, key=key)
        s3 = aws_clients.client(aws, "s3")
        s3.upload_file(
            str(built.path), bucket, key, ExtraArgs={"Metadata": {"sha256": built.sha256, "git-sha": env.sha}}
        )
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=int(env.settings.get("artifact_url_seconds", "21600")),
        )
        env.progress(f"artifact: {built.path.name} sha256 {built.sha256[:12]} stored as s3://{bucket}/{key}")
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

    def teardown(self, env: "Environment", facts: Facts) -> None:
        """The object goes with the bucket (local: with the moto server; aws: the stack empties it)."""
