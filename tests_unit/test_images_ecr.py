"""The ``images`` component on aws: the SHA's images built as locally, then pushed to the stack's ECR registry with a
login from ECR's API. moto serves ECR's API (``GetAuthorizationToken``, repositories) but no registry endpoint, so
the registry the images go to is Debian's docker-registry on loopback standing in for ECR, closed by the user and
password moto's token carries: the same code path as on AWS (a token from the API, a login, a push). Against moto
alone the component is refused at configure time, naming what moto lacks.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_cloudformation import Moto, fresh, point_boto3_at

from envfixtures.components.images import StackImages
from envfixtures.core.config import PlatformConfig
from envfixtures.core.environment import Environment
from envfixtures.core.errors import BuildError, ConfigError
from envfixtures.core.facts import Facts
from envfixtures.core.ports import free_port
from envfixtures.core.processes import standalone_spawner
from envfixtures.drivers.containers import ecr, podman, registry
from envfixtures.testing import BUSYBOX_IMAGE, BUSYBOX_ROOT_COMMAND

__all__ = ["fresh"]
NEEDS = pytest.mark.skipif(
    podman.missing() is not None or registry.executable() is None or not Path("/bin/busybox").is_file(),
    reason=f"needs podman, runc, docker-registry and busybox-static ({podman.INSTALL_HINT})",
)
IMAGE = "test/app"


def platform_repo(root: Path) -> str:
    """A platform whose one image is built from its committed tree; returns the SHA."""
    (root / "app").mkdir(parents=True)
    (root / "app" / "Containerfile").write_text(f"FROM {BUSYBOX_IMAGE}\nCOPY hello /hello\n")
    (root / "app" / "hello").write_text("hello from the SHA\n")
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *argv], cwd=root, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def aws_images_env(tmp_path: Path, name: str = "ef-0123456-ecr1") -> Environment:
    root = tmp_path / "platform"
    sha = platform_repo(root)
    table = {
        "images": {"containerfiles": {IMAGE: "app/Containerfile"}, "bases": {BUSYBOX_IMAGE: BUSYBOX_ROOT_COMMAND}},
        "aws": {"outputs": {"image_registry": "ImageRegistry", "artifact_bucket": "ArtifactBucket"}},
    }
    return Environment(
        name=name, sha=sha, backend="aws", root=root, home=tmp_path / "home", settings={"quiet": "true"},
        components=["aws", "images"], config=PlatformConfig("", table),
    )  # fmt: skip


def moto_token(moto: Moto) -> tuple[str, str]:
    """(user, password) of the token moto's ECR answers (decoded here, not by the code under test)."""
    token = moto.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return user, password


@pytest.fixture
def standin_ecr(fresh: Moto, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A docker-registry on loopback closed by moto's ECR login: (address, user, password)."""
    user, password = moto_token(fresh)
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = registry.configure(tmp_path / "registry", port, user, password)
    process = standalone_spawner(tmp_path, "ef-test-ecr-registry", component="registry")(
        "registry", registry.argv(config)
    )
    try:
        process.wait_ready(
            lambda: registry.answers(address, user, password), what="registry", timeout=30, retry_on=(OSError,)
        )
        yield address, user, password
    finally:
        process.stop(timeout=5)


def with_stack_facts(env: Environment, moto: Moto, prefix: str) -> str:
    """The aws component's facts as the stack would give them (its registry output: ``prefix``); returns the bucket."""
    bucket = "ef-ecr-artifacts"
    moto.client("s3").create_bucket(Bucket=bucket)
    env.description = env.describe()
    env.materialize()
    aws = Facts({"backend": "aws", "endpoint_url": None, "region": "us-east-1",
                 "endpoints": {"image_registry": prefix, "artifact_bucket": bucket}})  # fmt: skip
    env._set_state("aws", status="built", facts=aws.to_json())
    return bucket


def build_images(env: Environment) -> Facts:
    cls = env.component_class("images")
    assert cls is StackImages
    return cls().build(env.context("images", cls))


@pytest.mark.integration
@NEEDS
def test_stack_images_push_with_an_ecr_login_to_the_registry_standing_in_for_ecr(
    fresh: Moto,
    standin_ecr: tuple[str, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    point_boto3_at(fresh, monkeypatch)
    address, user, password = standin_ecr
    env = aws_images_env(tmp_path)
    request.addfinalizer(lambda: podman.remove_images(env.name))  # also when an assertion failed
    prefix = f"{address}/{env.name}"
    bucket = with_stack_facts(env, fresh, prefix)
    fresh.client("ecr").create_repository(repositoryName=f"{env.name}/{IMAGE}")  # as the stack creates it

    facts = build_images(env)

    ref = f"{prefix}/{IMAGE}:{env.sha}"
    assert facts["registry"] == prefix and facts["images"] == {IMAGE: ref}
    # The registry holds the image under the SHA, with the digest the facts give: pushed with the token's login.
    manifest = requests.get(
        f"http://{address}/v2/{env.name}/{IMAGE}/manifests/{env.sha}",
        auth=(user, password),
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        },  # fmt: skip
        timeout=10,
    )
    assert manifest.status_code == 200, manifest.text
    assert manifest.headers["Docker-Content-Digest"] == facts["artifact_sha256"][IMAGE]
    # The login is in podman's auth file, private to the environment; the token is a secret of the environment.
    authfile = env.workdir("images") / "auth.json"
    assert stat.S_IMODE(authfile.stat().st_mode) == 0o600 and authfile.is_relative_to(env.dir)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert json.loads(authfile.read_text()) == {"auths": {address: {"auth": token}}}
    assert password in env.secret_values()
    # The agents' docker configuration names the credential helper and holds no secret.
    assert facts["pull"] == "instance role through docker-credential-ecr-login"
    fetched = requests.get(facts["docker_config"], timeout=10)  # what an agent's fetcher does: a presigned URL
    assert fetched.status_code == 200, fetched.text[:200]
    body = fetched.content
    assert body == fresh.client("s3").get_object(Bucket=bucket, Key=f"{env.name}/images/docker.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = tar.extractfile(".docker/config.json")
        assert member is not None
        config = member.read().decode()
    assert json.loads(config) == {"credHelpers": {address: "ecr-login"}}
    assert password not in body.decode("latin-1") and password not in json.dumps(facts.to_json())

    # Teardown: the login goes, and the environment's local images (the ones in ECR go with the stack).
    env.component_class("images")().teardown(env.context("images", StackImages), facts)
    assert not authfile.exists()
    assert not podman.image_exists(ref)


@pytest.mark.integration
def test_stack_images_name_a_repository_the_registry_lacks_before_building(
    fresh: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_boto3_at(fresh, monkeypatch)
    env = aws_images_env(tmp_path, "ef-0123456-ecr2")
    with_stack_facts(env, fresh, f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{env.name}")
    with pytest.raises(BuildError) as caught:
        build_images(env)
    message = str(caught.value)
    assert f"has no repository {env.name}/{IMAGE}" in message, message
    assert not (env.workdir("images") / "auth.json").exists(), "no login before the check"


def test_stack_images_are_refused_at_configure_time_against_moto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server needed: the stand-in is known from AWS_ENDPOINT_URL; on AWS's own endpoint the check passes."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    env = aws_images_env(tmp_path, "ef-0123456-ecr3")
    if podman.missing() is None:
        StackImages.check(env.context("images", StackImages))  # AWS's own endpoint: nothing refused
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(ConfigError) as caught:
        StackImages.check(env.context("images", StackImages))
    assert str(caught.value) == (
        "images (aws): AWS is a stand-in at http://127.0.0.1:9 (AWS_ENDPOINT_URL), and a moto server serves ECR's "
        "API but no registry endpoint: nothing to push images to; leave images out of the components there (ini "
        "env_components), or use --env-backend local"
    )


def test_an_ecr_token_becomes_a_login_for_its_registry() -> None:
    class Ecr:
        def get_authorization_token(self) -> dict:
            token = base64.b64encode(b"AWS:s3cr3t-token-value").decode()
            endpoint = "https://1234.dkr.ecr.eu-west-1.amazonaws.com"
            data = {"authorizationToken": token, "expiresAt": "2026-12-01T11:00:00Z", "proxyEndpoint": endpoint}
            return {"authorizationData": [data]}

    login = ecr.login(Ecr())
    assert (login.registry, login.user, login.password) == (
        "1234.dkr.ecr.eu-west-1.amazonaws.com",
        "AWS",
        "s3cr3t-token-value",
    )
    assert ecr.split_registry("1234.dkr.ecr.eu-west-1.amazonaws.com/ef-x/") == (
        "1234.dkr.ecr.eu-west-1.amazonaws.com",
        "ef-x",
    )

    class Broken(Ecr):
        def get_authorization_token(self) -> dict:
            return {"authorizationData": [{"authorizationToken": "not base64!"}]}

    with pytest.raises(BuildError, match="no usable token"):
        ecr.login(Broken())
