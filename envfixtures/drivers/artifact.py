"""The platform's artifact: built from the SHA's tree (never the working tree) and stored in the env's bucket.

Two ways, as the platform configures (``[tool.envfixtures.artifact]``): ``source``, a directory whose committed
content (``git archive SHA DIR/``) is built into an sdist offline with setuptools' PEP 517 backend (no ``wheel``
package needed), after its ``build_info`` file is written with the SHA (so a running task can only answer the
SHA it was built from); or ``command``, a shell command run in the committed tree that writes one file. The
file's sha256 is the digest the promotion record names.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from envfixtures.core.archives import UnsafeArchive, extract_tar
from envfixtures.core.errors import BuildError


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    top_dir: str  # the directory the tarball extracts to (e.g. myapp-1.0.0); "" for a command's file


def committed_tree(root: Path, sha: str, subdir: str, tree: Path) -> Path:
    """``subdir`` of ``root`` (``""``: all of it) as committed at ``sha``, extracted under ``tree``."""
    pathspec = f"{subdir.strip('/')}/" if subdir.strip("/") else "."
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha, pathspec], cwd=root, capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise BuildError(
            f"git archive {sha} {pathspec} failed: {exc.stderr.decode(errors='replace').strip()}"
        ) from None
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            extract_tar(tar, tree)
    except UnsafeArchive as exc:
        raise BuildError(f"git archive {sha} {pathspec}: {exc}") from None
    return tree / subdir.strip("/") if subdir.strip("/") else tree


def build(root: Path, sha: str, workdir: Path, *, source: str, build_info: str = "") -> Artifact:
    """The sdist of ``source`` (a directory of ``root``) as committed at ``sha``, built into ``workdir``.

    ``build_info``, a file path inside ``source``, is written with ``SHA = "<sha>"`` before the build (so the
    running code can only answer the SHA it was built from)."""
    tree, out = _dirs(workdir)
    tree_source = committed_tree(root, sha, source, tree)
    if build_info:
        (tree_source / build_info).write_text(
            f'"""Written by envfixtures when the artifact was built."""\n\nSHA = "{sha}"\n'
        )
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=tree_source, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"building the sdist of {source}/ at {sha[:12]} failed: {result.stderr.strip()[-500:]}")
    path = out / result.stdout.strip().splitlines()[-1]
    return Artifact(path=path, sha256=_sha256(path), top_dir=path.name.removesuffix(".tar.gz"))


def build_with_command(root: Path, sha: str, workdir: Path, *, command: str) -> Artifact:
    """The one file ``command`` (run by ``sh`` in the checkout as committed at ``sha``) writes into
    ``$ENVFIXTURES_ARTIFACT_DIR``; ``$ENVFIXTURES_SHA`` is the SHA."""
    tree, out = _dirs(workdir)
    committed_tree(root, sha, "", tree)
    env = {**os.environ, "ENVFIXTURES_SHA": sha, "ENVFIXTURES_ARTIFACT_DIR": str(out)}
    result = subprocess.run(["sh", "-c", command], cwd=tree, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(
            f"artifact command {command!r} at {sha[:12]} exited {result.returncode}: {result.stderr.strip()[-500:]}"
        )
    made = sorted(p for p in out.iterdir() if p.is_file())
    if len(made) != 1:
        raise BuildError(
            f"artifact command {command!r} must write exactly one file into $ENVFIXTURES_ARTIFACT_DIR; "
            f"it wrote {len(made)}: {', '.join(p.name for p in made) or 'none'}"
        )
    return Artifact(path=made[0], sha256=_sha256(made[0]), top_dir="")


def _dirs(workdir: Path) -> tuple[Path, Path]:
    tree, out = workdir / "tree", workdir / "dist"
    for path in (tree, out):
        path.mkdir(parents=True, exist_ok=True)
    return tree, out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
