"""The ``images`` component: the platform's container images, built from the SHA and served by a registry.

Configured in ``[tool.envfixtures.images]``: ``containerfiles`` (image name -> its Containerfile, relative to
the checkout; the file's directory is the build context) and ``bases`` (base image name -> a shell command,
run in the checkout, that writes a root filesystem tarball to ``$ENVFIXTURES_BASE_TAR``; imported once per
machine for the bases a closed agent cannot pull). See :mod:`envfixtures.drivers.containers.images`.

``local``: a Docker registry (:mod:`envfixtures.drivers.containers.registry`) on a free loopback port, closed
by a user and password generated for the environment and journaled like every server of it; each image is
built with podman from ``git archive`` of the SHA, tagged ``<registry>/<name>:<sha>`` and pushed. Tasks pull
with the credentials in ``docker.tar.gz``, which apps fetch as Marathon's documentation describes for private
registries (``"fetch": [{"uri": "{{ facts.images.docker_config }}"}]``). Teardown stops the registry and
removes the environment's images (by label; the shared base layers stay).
Facts: ``registry`` (host:port), ``images`` (name -> pushed reference), ``artifact_sha256`` (name -> manifest
digest, for the promotion record), ``docker_config`` (a ``file://`` URI of the tarball), ``user``,
``password`` (secret).
``aws``: the stack's ECR registry (the stack output configured as ``image_registry``, ``<registry
host>/<namespace>``, one repository per image: ``<namespace>/<name>``). The images are built exactly as locally,
then pushed as ``<registry host>/<namespace>/<name>:<sha>`` with a login from ECR's ``GetAuthorizationToken``
(user ``AWS`` and the token's password, in podman's auth file, 0600 in the environment's private directory, never
on a command line; the token is registered as a secret and the auth file deleted at teardown). The agents pull
with their instance role through the ECR credential helper: ``docker_config`` is then a presigned URL of a
``docker.tar.gz`` in the artifact bucket (output ``artifact_bucket``) whose ``config.json`` names the helper for
the registry and holds no secret. The images go with the stack (its repositories are ``EmptyOnDelete``).
Facts: ``registry``, ``images``, ``artifact_sha256``, ``docker_config``, ``pull`` (how the agents authenticate).
Against a stand-in for AWS (a moto server) the component is refused at configure time: moto serves ECR's API
but no registry endpoint to push to.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from envfixtures.components.aws import refuse_on_stand_in, require_outputs, stack_output
from envfixtures.core.component import Component
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.drivers.artifact import committed_tree
from envfixtures.drivers.aws import clients as aws_clients
from envfixtures.drivers.containers import ecr, images, podman, registry

if TYPE_CHECKING:
    from envfixtures.core.context import BuildContext

READY_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class ImagesConfig:
    """The images the platform builds from its SHA, and how to make the base images a closed agent cannot pull."""

    #: image name (as pushed: ``<registry>/<name>:<sha>``) -> its Containerfile, relative to the checkout
    containerfiles: dict[str, str] = dataclasses.field(default_factory=dict)
    #: base image name -> a shell command writing a root filesystem tarball to ``$ENVFIXTURES_BASE_TAR``
    bases: dict[str, str] = dataclasses.field(default_factory=dict)


class LocalImages(Component):
    """Images built with podman and pushed to a registry on loopback."""

    name = "images"
    requires = ()
    Config = ImagesConfig

    @classmethod
    def inputs(cls, ctx: "BuildContext") -> list[Path]:
        return sorted(ctx.path(path) for path in ctx.config.containerfiles.values())

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        check_containerfiles(ctx)
        problem = podman.missing() or (
            None if registry.executable() else f"docker-registry is not installed ({podman.INSTALL_HINT})"
        )
        if problem:
            raise ConfigError(f"images (local): {problem}")

    def build(self, ctx: "BuildContext") -> Facts:
        workdir = ctx.workdir()
        tree = prepare_tree(ctx)

        port = free_port()
        address = f"127.0.0.1:{port}"
        user = f"envfixtures-{secrets.token_hex(4)}"
        password = ctx.new_secret("registry password")
        config = registry.configure(workdir / "registry", port, user, password)
        process = ctx.spawn("registry", registry.argv(config), cwd=workdir)
        process.wait_ready(
            lambda: registry.answers(address, user, password),
            what=f"the registry on {address}",
            timeout=READY_TIMEOUT,
            retry_on=(OSError,),
        )
        authfile = registry.write_auth_file(workdir / "auth.json", address, user, password)
        tarball = registry.write_docker_tarball(workdir / "docker.tar.gz", address, user, password)

        refs, digests = build_and_push(ctx, tree, address, authfile)
        return Facts(
            {
                "registry": address,
                "images": refs,
                "artifact_sha256": digests,
                "docker_config": tarball.as_uri(),
                "user": user,
                "password": password,
                "versions": {"docker-registry": "distribution (Debian)", "podman": _podman_version()},
            },
            secrets=["password"],
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """Stop the registry; remove the environment's images (by label: also after a build cut short)."""
        ctx.stop_processes()
        podman.remove_images(ctx.name)


class StackImages(Component):
    """The same images, pushed to the stack's ECR registry (see the module's docstring)."""

    name = "images"
    requires = ("aws",)
    Config = ImagesConfig

    @dataclasses.dataclass(frozen=True)
    class Settings:
        """How long the agents' docker configuration URL stays valid (it holds no secret)."""

        images_config_url_seconds: int = 21600

    @classmethod
    def inputs(cls, ctx: "BuildContext") -> list[Path]:
        return LocalImages.inputs(ctx)

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        """Before the stack exists: a stand-in for AWS has no registry; the outputs are configured; the images are
        declared and podman can build them."""
        refuse_on_stand_in(ctx, "a moto server serves ECR's API but no registry endpoint: nothing to push images to")
        require_outputs(ctx, "image_registry", "artifact_bucket")
        check_containerfiles(ctx)
        problem = podman.missing()
        if problem:
            raise ConfigError(f"images (aws): {problem}")

    def build(self, ctx: "BuildContext") -> Facts:
        aws = ctx.facts("aws")
        prefix = stack_output(aws, "image_registry")
        host, namespace = ecr.split_registry(prefix)
        client = aws_clients.client(aws, "ecr")
        wanted = [f"{namespace}/{name}".strip("/") for name in sorted(ctx.config.containerfiles)]
        missing = ecr.missing_repositories(client, wanted)
        if missing:
            raise BuildError(
                f"images (aws): the registry {host} has no repository {', '.join(missing)}: the stack creates one per "
                f"image of {ctx.platform.where('containerfiles', 'images')} (AWS::ECR::Repository named "
                f"<namespace>/<image name>)"
            )
        login = ecr.login(client)
        ctx.add_secret("ECR token", login.password)
        workdir = ctx.workdir()
        authfile = registry.write_auth_file(workdir / "auth.json", host, login.user, login.password)
        ctx.progress(f"images: logged in to {host} as {login.user} (token until {login.expires_at})")
        tree = prepare_tree(ctx)
        refs, digests = build_and_push(ctx, tree, prefix.strip("/"), authfile, tls_verify=not _loopback(host))

        bucket = stack_output(aws, "artifact_bucket")
        tarball = registry.write_config_tarball(workdir / "docker.tar.gz", ecr.helper_config(host))
        key = f"{ctx.name}/images/docker.tar.gz"
        ctx.record("s3-object", bucket=bucket, key=key)
        s3 = aws_clients.client(aws, "s3")
        s3.upload_file(str(tarball), bucket, key)
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ctx.settings.images_config_url_seconds
        )
        return Facts(
            {
                "registry": prefix.strip("/"),
                "images": refs,
                "artifact_sha256": digests,
                "docker_config": url,
                "pull": f"instance role through docker-credential-{ecr.CREDENTIAL_HELPER}",
                "versions": {"registry": f"ECR {host}", "podman": _podman_version()},
            }
        )

    def teardown(self, ctx: "BuildContext", facts: Facts) -> None:
        """The images in ECR go with the stack; here the login and the environment's local images go."""
        (ctx.workdir() / "auth.json").unlink(missing_ok=True)
        podman.remove_images(ctx.name)


def check_containerfiles(ctx: "BuildContext") -> None:
    where = ctx.platform.where("containerfiles", "images")
    if not ctx.config.containerfiles:
        raise ConfigError(f"{where}: not set (image name = its Containerfile)")
    for name, path in ctx.config.containerfiles.items():
        if not ctx.path(path).is_file():
            raise ConfigError(f"{where} {name!r} = {path!r}: no such file")


def prepare_tree(ctx: "BuildContext") -> Path:
    """The base images this machine lacks, made; the SHA's committed tree, checked out in the workdir."""
    for base, command in ctx.config.bases.items():
        if images.ensure_base(base, command, ctx.root, log=ctx.log_path("base-image")):
            ctx.progress(f"images: base {base} made and imported (once per machine)")
    return committed_tree(ctx.root, ctx.sha, "", ctx.workdir() / "tree")


def build_and_push(
    ctx: "BuildContext", tree: Path, prefix: str, authfile: Path, *, tls_verify: bool = False
) -> tuple[dict[str, str], dict[str, str]]:
    """Build each image of the platform from ``tree``, tag it ``<prefix>/<name>:<sha>`` and push it; returns
    (name -> reference, name -> manifest digest)."""
    refs, digests = {}, {}
    for name, containerfile in sorted(ctx.config.containerfiles.items()):
        ref = f"{prefix}/{name}:{ctx.sha}"
        images.build(tree, containerfile, ref, env_name=ctx.name, sha=ctx.sha, log=ctx.log_path("build"))
        digests[name] = images.push(ref, authfile, ctx.workdir(), tls_verify=tls_verify)
        refs[name] = ref
        ctx.progress(f"images: {ref} pushed ({digests[name][:19]})")
    return refs, digests


def _loopback(host: str) -> bool:
    """A registry on loopback speaks plain HTTP (the local one, and a local registry standing in for ECR)."""
    return host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")


def _podman_version() -> str:
    try:
        return podman.run("version", "--format", "{{.Client.Version}}", timeout=10).strip()
    except podman.PodmanError:
        return "unknown"
