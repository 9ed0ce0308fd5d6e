"""Safe extraction refuses the same members with and without the stdlib ``data`` filter (absent before 3.11.4)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from envfixtures.core.archives import UnsafeArchive, extract_tar, extract_zip

# Both paths on every Python: the stdlib filter where this one has it, the hand-made checks always.
PATHS = [pytest.param(False, id="by-hand")]
if hasattr(tarfile, "data_filter"):
    PATHS.append(pytest.param(True, id="stdlib-filter"))


def _tar(*members: tuple[str, str, str | bytes]) -> tarfile.TarFile:
    """An in-memory tar of (kind, name, payload): kind is file, dir, sym, link, fifo or chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                info.size = len(data)
                info.mode = 0o6755 if name.endswith(".suid") else 0o644
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind in ("sym", "link"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(payload)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = 1, 3
            tf.addfile(info, io.BytesIO(data) if data else None)
    buf.seek(0)
    return tarfile.open(fileobj=buf)


@pytest.mark.parametrize("stdlib", PATHS)
def test_a_plain_tree_is_extracted(tmp_path: Path, stdlib: bool) -> None:
    tar = _tar(
        ("dir", "pkg", ""), ("file", "pkg/a.py", "x = 1\n"), ("sym", "pkg/b.py", "a.py"), ("link", "pkg/c", "pkg/a.py")
    )
    extract_tar(tar, tmp_path / "out", stdlib_filter=stdlib)
    assert (tmp_path / "out/pkg/a.py").read_text() == "x = 1\n"
    assert (tmp_path / "out/pkg/b.py").read_text() == "x = 1\n"
    assert (tmp_path / "out/pkg/c").read_text() == "x = 1\n"


@pytest.mark.parametrize("stdlib", PATHS)
@pytest.mark.parametrize(
    "members",
    [
        pytest.param([("file", "/etc/evil", "x")], id="absolute-path"),
        pytest.param([("file", "../evil", "x")], id="dotdot"),
        pytest.param([("file", "pkg/../../evil", "x")], id="dotdot-inside"),
        pytest.param([("sym", "pkg", "/etc")], id="symlink-absolute"),
        pytest.param([("sym", "up", "../..")], id="symlink-outside"),
        pytest.param([("sym", "d", "."), ("sym", "l1", "d/..")], id="symlink-chain-outside"),
        pytest.param([("link", "hard", "/etc/passwd")], id="hardlink-outside"),
        pytest.param([("fifo", "pipe", "")], id="fifo"),
        pytest.param([("chr", "null", "")], id="device"),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, stdlib: bool, members: list) -> None:
    target = tmp_path / "jail" / "out"
    with pytest.raises(UnsafeArchive):
        extract_tar(_tar(*members), target, stdlib_filter=stdlib)
    outside = {p.name for p in (tmp_path / "jail").iterdir()} - {"out"}
    assert not outside, f"written outside the target: {outside}"
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("stdlib", PATHS)
def test_setuid_bits_are_dropped(tmp_path: Path, stdlib: bool) -> None:
    extract_tar(_tar(("file", "tool.suid", "#!/bin/sh\n")), tmp_path, stdlib_filter=stdlib)
    mode = (tmp_path / "tool.suid").stat().st_mode
    assert not mode & (stat.S_ISUID | stat.S_ISGID)


def test_zip_outside_names_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "no")
    with zipfile.ZipFile(buf) as zf, pytest.raises(UnsafeArchive):
        extract_zip(zf, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
