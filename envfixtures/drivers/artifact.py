"""The platform's artifact: built from the SHA's tree (never the working tree) and stored in the env's bucket.

``git archive SHA services/`` gives the committed code; the SHA is written into the package
(``platform_services/_build.py``) so a running task can only answer the SHA it was built from; an
sdist is built offline with setuptools' PEP 517 backend (no ``wheel`` package needed). The tarball's
sha256 is the digest the promotion record names.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from envfixtures.core.archives import UnsafeArchive, extract_tar
from envfixtures.core.errors import BuildError

SOURCE_DIR = "services"
PACKAGE = "platform_services"


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    top_dir: str  # the directory the tarball extracts to (e.g. platform-services-0.1.0)


def build(root: Path, sha: str, workdir: Path) -> Artifact:
    """Build the sdist of ``services/`` as committed at ``sha`` into ``workdir``."""
    tree = workdir / "tree"
    out = workdir / "dist"
    for path in (tree, out):
        path.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, f"{SOURCE_DIR}/"], cwd=root, capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise BuildError(
            f"git archive {sha} {SOURCE_DIR}/ failed: {exc.stderr.decode(errors='replace').strip()}"
        ) from None
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            extract_tar(tar, tree)
    except UnsafeArchive as exc:
        raise BuildError(f"git archive {sha} {SOURCE_DIR}/: {exc}") from None
    source = tree / SOURCE_DIR
    (source / PACKAGE / "_build.py").write_text(
        f'"""Written by envfixtures when the artifact was built."""\n\nSHA = "{sha}"\n'
    )
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"building the sdist of {SOURCE_DIR}/ at {sha[:12]} failed: {result.stderr.strip()[-500:]}")
    path = out / result.stdout.strip().splitlines()[-1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Artifact(path=path, sha256=digest, top_dir=path.name.removesuffix(".tar.gz"))
