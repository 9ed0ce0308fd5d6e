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
``aws``: not built yet — pushing to the stack's ECR repository needs a real registry endpoint that moto does not
serve; the component refuses at configure time with that reason.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from envfixtures.core.component import Component
from envfixtures.core.errors import ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.drivers.artifact import committed_tree
from envfixtures.drivers.containers import images, podman, registry

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
        where = ctx.platform.where("containerfiles", "images")
        if not ctx.config.containerfiles:
            raise ConfigError(f"{where}: not set (image name = its Containerfile)")
        for name, path in ctx.config.containerfiles.items():
            if not ctx.path(path).is_file():
                raise ConfigError(f"{where} {name!r} = {path!r}: no such file")
        problem = podman.missing() or (
            None if registry.executable() else f"docker-registry is not installed ({podman.INSTALL_HINT})"
        )
        if problem:
            raise ConfigError(f"images (local): {problem}")

    def build(self, ctx: "BuildContext") -> Facts:
        workdir = ctx.workdir()
        for base, command in ctx.config.bases.items():
            if images.ensure_base(base, command, ctx.root, log=ctx.log_path("base-image")):
                ctx.progress(f"images: base {base} made and imported (once per machine)")
        tree = committed_tree(ctx.root, ctx.sha, "", workdir / "tree")

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

        refs, digests = {}, {}
        for name, containerfile in sorted(ctx.config.containerfiles.items()):
            ref = f"{address}/{name}:{ctx.sha}"
            images.build(tree, containerfile, ref, env_name=ctx.name, sha=ctx.sha, log=ctx.log_path("build"))
            digests[name] = images.push(ref, authfile, workdir)
            refs[name] = ref
            ctx.progress(f"images: {ref} pushed ({digests[name][:19]})")
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
    """On aws the images would go to the stack's ECR repository: not built yet (see the module's docstring)."""

    name = "images"
    requires = ("aws",)
    Config = ImagesConfig

    @classmethod
    def check(cls, ctx: "BuildContext") -> None:
        raise ConfigError(
            "images (aws): pushing the platform's images to the stack's ECR repository is not built yet; "
            "leave images out of the components to run the aws backend"
        )

    def build(self, ctx: "BuildContext") -> Facts:  # pragma: no cover - refused by check
        raise ConfigError("images (aws): not built yet")


def _podman_version() -> str:
    try:
        return podman.run("version", "--format", "{{.Client.Version}}", timeout=10).strip()
    except podman.PodmanError:
        return "unknown"
