"""Safe extraction of tar and zip archives, the same on every Python from 3.11.2 on.

Written by hand only where the standard library is missing it: ``tarfile``'s ``data`` filter (PEP 706)
arrived in 3.11.4, and Debian 12 ships 3.11.2. Where the filter exists it is used; where it does not, the
same refusals are made here: absolute paths, ``..``, links that point outside the target, device files and
FIFOs — and set-uid/set-gid bits are dropped, as the ``data`` filter does.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path


class UnsafeArchive(Exception):
    """An archive member would land outside the target directory, or is not a plain file, directory or link."""


def extract_tar(archive: tarfile.TarFile, into: Path, *, stdlib_filter: bool | None = None) -> None:
    """Extract every member of ``archive`` under ``into``; an unsafe member raises :class:`UnsafeArchive`.

    ``stdlib_filter``: use tarfile's ``data`` filter (default: when this Python has it). The checks made by
    hand when it does not are the same, so both paths are tested on every version.
    """
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    if stdlib_filter is None:
        stdlib_filter = hasattr(tarfile, "data_filter")
    if stdlib_filter:

        def data(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
            _check_name(member.name)  # the filter would strip a leading "/" and accept "a/../b"; we refuse both
            return tarfile.data_filter(member, path)

        try:
            archive.extractall(into, filter=data)
        except tarfile.FilterError as exc:
            raise UnsafeArchive(str(exc)) from None
        return
    # One member at a time, each checked against what is on disk by then (as the stdlib filter does): a link
    # extracted earlier is resolved by realpath, so a later member cannot leave the target through it.
    for member in archive.getmembers():
        _check_tar_member(member, into)
        member.mode = _safe_mode(member.mode, member.isdir())
        member.uid = member.gid = os.geteuid()  # owned by whoever extracts, never by the archive's ids
        member.uname = member.gname = ""
        archive.extract(member, into, set_attrs=not member.issym())


def extract_zip(archive: zipfile.ZipFile, into: Path) -> None:
    """Extract ``archive`` under ``into``; zip has no links or devices, only names to check."""
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    for name in archive.namelist():
        _check_inside(name, into, name)
    archive.extractall(into)


def _check_tar_member(member: tarfile.TarInfo, into: Path) -> None:
    name = member.name
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"{name!r} is a special file (device or FIFO)")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeArchive(f"{name!r} is not a file, directory or link")
    target = _check_inside(name, into, name)
    if member.issym():
        if os.path.isabs(member.linkname):
            raise UnsafeArchive(f"{name!r} is a symlink to an absolute path ({member.linkname!r})")
        _check_inside(os.path.join(os.path.dirname(target), member.linkname), into, name, absolute=True)
    elif member.islnk():
        _check_inside(member.linkname, into, name)


def _check_inside(path: str, into: Path, member: str, *, absolute: bool = False) -> str:
    """The resolved destination of ``path``; refuses an absolute path, ``..`` and a path leaving ``into``."""
    if not absolute:
        _check_name(path)
    root = os.path.realpath(into)
    resolved = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, resolved]) != root:
        raise UnsafeArchive(f"{member!r} would be written outside the target directory")
    return resolved


def _check_name(name: str) -> None:
    if os.path.isabs(name) or name.startswith(("/", "\\")):
        raise UnsafeArchive(f"{name!r} has an absolute path")
    # Refused outright, not normalised: nothing this project extracts needs it, and it is the usual vehicle of
    # an escape through a link extracted earlier.
    if ".." in Path(name).parts:
        raise UnsafeArchive(f"{name!r} contains '..'")


def _safe_mode(mode: int, is_dir: bool) -> int:
    """The ``data`` filter's modes: no set-uid/set-gid/sticky, no group or other write."""
    mode &= ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWGRP | stat.S_IWOTH)
    return mode | (stat.S_IRWXU if is_dir else stat.S_IRUSR | stat.S_IWUSR)
