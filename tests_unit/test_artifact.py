"""The artifact is built from the SHA's tree: an uncommitted change never reaches it."""

from __future__ import annotations

import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from envfixtures.core.errors import BuildError
from envfixtures.drivers import artifact

#: The reference platform's services built as an sdist artifact (an [tool.envfixtures.artifact] section; the platform
#: itself now ships them as an image).
REFERENCE = {"source": "services", "build_info": "platform_services/_build.py"}
PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "platform-services"
version = "0.1.0"

[tool.setuptools]
packages = ["platform_services"]
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    pkg = root / "services" / "platform_services"
    pkg.mkdir(parents=True)
    (root / "services" / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "__init__.py").write_text('GREETING = "committed"\n')
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "one")
    return root


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_uncommitted_change_does_not_reach_the_artifact(repo: Path, tmp_path: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    (repo / "services" / "platform_services" / "__init__.py").write_text('GREETING = "uncommitted"\n')
    (repo / "services" / "platform_services" / "extra.py").write_text("X = 1\n")  # untracked
    built = artifact.build(repo, sha, tmp_path / "work", **REFERENCE)
    files = members(built.path)
    top = built.top_dir
    assert files[f"{top}/platform_services/__init__.py"] == b'GREETING = "committed"\n'
    assert f"{top}/platform_services/extra.py" not in files
    assert f'SHA = "{sha}"'.encode() in files[f"{top}/platform_services/_build.py"]


def test_digest_is_of_the_tarball_and_changes_with_the_commit(repo: Path, tmp_path: Path) -> None:
    import hashlib

    first = artifact.build(repo, git(repo, "rev-parse", "HEAD"), tmp_path / "a", **REFERENCE)
    assert first.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    (repo / "services" / "platform_services" / "__init__.py").write_text('GREETING = "two"\n')
    git(repo, "commit", "-qam", "two")
    second = artifact.build(repo, git(repo, "rev-parse", "HEAD"), tmp_path / "b", **REFERENCE)
    assert second.sha256 != first.sha256
    assert members(second.path)[f"{second.top_dir}/platform_services/__init__.py"] == b'GREETING = "two"\n'


def test_unknown_sha_is_a_build_error(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="git archive"):
        artifact.build(repo, "f" * 40, tmp_path / "w", **REFERENCE)


def test_a_command_builds_the_artifact_from_the_committed_tree(repo: Path, tmp_path: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    (repo / "services" / "platform_services" / "__init__.py").write_text('GREETING = "uncommitted"\n')
    command = 'tar -czf "$ENVFIXTURES_ARTIFACT_DIR/app-$ENVFIXTURES_SHA.tgz" services'
    built = artifact.build_with_command(repo, sha, tmp_path / "w", command=command)
    assert built.path.name == f"app-{sha}.tgz" and built.top_dir == ""
    with tarfile.open(built.path) as tar:
        member = tar.extractfile("services/platform_services/__init__.py")
        assert member is not None and b"uncommitted" not in member.read()


def test_a_command_that_writes_no_file_is_a_build_error(repo: Path, tmp_path: Path) -> None:
    sha = git(repo, "rev-parse", "HEAD")
    with pytest.raises(BuildError, match="exactly one file.*wrote 0"):
        artifact.build_with_command(repo, sha, tmp_path / "w", command="true")
    with pytest.raises(BuildError, match="exited 3"):
        artifact.build_with_command(repo, sha, tmp_path / "x", command="exit 3")


@pytest.mark.integration
def test_tasks_fetch_the_stored_artifact_by_its_digest_and_refuse_a_tampered_one(tmp_path: Path) -> None:
    """The artifact's URL is presigned for the environment's authenticated moto and names its digest: the local
    fetcher downloads and extracts it; nobody else can read or replace the object; and an object replaced by
    whoever could (here: with the environment's own key) is refused by the digest, never extracted."""
    from botocore.exceptions import ClientError

    from envfixtures.core import config
    from envfixtures.core.environment import Environment
    from envfixtures.drivers.aws import clients as aws_clients
    from envfixtures.drivers.marathon import tasks

    root = Path(__file__).resolve().parents[1]
    sha = git(root, "rev-parse", "HEAD")
    reference = config.find(root)  # its stack and bucket; its services built as an sdist artifact (REFERENCE)
    platform = config.PlatformConfig(reference.source, {**reference.table, "artifact": dict(REFERENCE)})
    env = Environment(
        name=f"ef-{sha[:7]}-art{os.getpid() % 1000}", sha=sha, backend="local", root=root, home=tmp_path / "home",
        settings={"quiet": "true"}, components=["aws", "artifact"], config=platform,
    )  # fmt: skip
    try:
        env.check(["aws", "artifact"])
        facts = env.ensure("artifact")
        aws = env.facts("aws")
        url = facts["url"]
        assert url.endswith(f"#sha256={facts['sha256']}") and "X-Amz-Signature=" in url
        item = {"uri": url, "extract": True, "destPath": "platform-services.tar.gz"}
        sandbox = tmp_path / "sandbox-1"
        sandbox.mkdir()
        tasks.fetch_all({"fetch": [item]}, sandbox)
        assert (sandbox / facts["top_dir"] / "platform_services" / "_build.py").read_text().count(sha) == 1
        # nobody else reads or replaces it: the URL without its signature, another key
        with pytest.raises(urllib.error.HTTPError) as unsigned:
            urllib.request.urlopen(url.split("?", 1)[0], timeout=5)
        assert unsigned.value.code == 403
        other = aws_clients.make_client(
            "s3", endpoint_url=aws["endpoint_url"], region=aws["region"], credentials=aws_clients.LocalCredentials.new()
        )
        with pytest.raises(ClientError, match="InvalidAccessKeyId"):
            other.put_object(Bucket=facts["bucket"], Key=facts["key"], Body=b"evil")
        # replaced all the same (whoever held the key): the digest refuses it
        aws_clients.client(aws, "s3").put_object(Bucket=facts["bucket"], Key=facts["key"], Body=b"evil")
        sandbox = tmp_path / "sandbox-2"
        sandbox.mkdir()
        with pytest.raises(tasks.FetchError, match="sha256 mismatch") as caught:
            tasks.fetch_all({"fetch": [item]}, sandbox)
        assert "X-Amz-Signature" not in str(caught.value)
        assert list(sandbox.iterdir()) == [], "nothing of the tampered artifact is left, nothing extracted"
    finally:
        env.teardown()


def test_the_artifact_url_on_aws_is_presigned_with_sigv4(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's default presigner in us-east-1 is SigV2, which S3 refuses for new buckets: the one client factory
    every component uses on AWS presigns with SigV4 (no call is made: presigning is local)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret-not-used")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    from envfixtures.drivers.aws import clients as aws_clients

    s3 = aws_clients.client({"region": "us-east-1"}, "s3")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=60)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "AWSAccessKeyId=" not in url  # SigV2's parameter
