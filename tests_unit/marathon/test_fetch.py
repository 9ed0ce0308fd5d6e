"""The local fetcher (no scheduler needed): digests checked, ``destPath`` confined, ``file://`` only from inside."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envfixtures.drivers.marathon import tasks


def tarball(name: str = "bundle/readme.txt", data: bytes = b"inside\n") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The environment's directory (the fetch root), a task sandbox in it, and a directory outside it."""
    env = tmp_path / "env"
    sandbox = env / "work" / "scheduler" / "sandboxes" / "task-1"
    sandbox.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    return env, sandbox, outside


def fetch(sandbox: Path, *items: dict, roots: tuple[Path, ...] = ()) -> None:
    tasks.fetch_all({"fetch": list(items)}, sandbox, file_roots=roots)


def everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ---------------------------------------------------------------------------- digests


def test_a_matching_digest_is_fetched_and_extracted(layout: tuple[Path, Path, Path]) -> None:
    env, sandbox, _ = layout
    data = tarball()
    (env / "app.tar.gz").write_bytes(data)
    fetch(sandbox, {"uri": f"file://{env}/app.tar.gz#sha256={sha256(data)}"}, roots=(env,))
    assert (sandbox / "bundle" / "readme.txt").read_text() == "inside\n"
    assert (sandbox / "app.tar.gz").read_bytes() == data


def test_a_tampered_artifact_is_refused_and_not_extracted(layout: tuple[Path, Path, Path]) -> None:
    env, sandbox, _ = layout
    built = tarball(data=b"as built\n")
    (env / "app.tar.gz").write_bytes(tarball(data=b"tampered\n"))  # replaced after the digest was taken
    with pytest.raises(tasks.FetchError) as caught:
        fetch(sandbox, {"uri": f"file://{env}/app.tar.gz#sha256={sha256(built)}"}, roots=(env,))
    message = str(caught.value)
    assert "sha256 mismatch" in message and sha256(built) in message and "refused" in message
    assert everything_under(sandbox) == [], "nothing of a refused download is left, nothing extracted"


@pytest.mark.parametrize("fragment", ["sha256=abc", "sha256=" + "g" * 64, "sha256=" + "a" * 64 + "&sha256=" + "b" * 64])
def test_a_malformed_digest_is_refused(layout: tuple[Path, Path, Path], fragment: str) -> None:
    env, sandbox, _ = layout
    (env / "app.tar.gz").write_bytes(tarball())
    with pytest.raises(tasks.FetchError, match="not one hex SHA-256 digest"):
        fetch(sandbox, {"uri": f"file://{env}/app.tar.gz#{fragment}"}, roots=(env,))
    assert everything_under(sandbox) == []


class _Files(http.server.BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).paths.append(self.path)
        body = self.served.get(self.path.split("?", 1)[0])
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_files() -> Iterator[tuple[str, type[_Files]]]:
    handler = type("Files", (_Files,), {"served": {}, "paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_over_http_the_digest_is_checked_and_the_fragment_never_sent(
    layout: tuple[Path, Path, Path], http_files: tuple[str, type[_Files]]
) -> None:
    _, sandbox, _ = layout
    url, files = http_files
    good, evil = tarball(data=b"good\n"), tarball(data=b"evil\n")
    files.served.update({"/good.tar.gz": good, "/evil.tar.gz": evil})
    signature = "X-Amz-Signature=" + "f" * 64
    fetch(sandbox, {"uri": f"{url}/good.tar.gz?{signature}#sha256={sha256(good)}"})
    assert (sandbox / "bundle" / "readme.txt").read_text() == "good\n"
    assert files.paths == [f"/good.tar.gz?{signature}"], "the fragment stays on this side"
    with pytest.raises(tasks.FetchError) as caught:
        fetch(sandbox, {"uri": f"{url}/evil.tar.gz?{signature}#sha256={sha256(good)}", "destPath": "evil.tar.gz"})
    assert "sha256 mismatch" in str(caught.value)
    assert signature not in str(caught.value), "a presigned URL's signature stays out of the message"
    assert not (sandbox / "evil.tar.gz").exists() and (sandbox / "bundle" / "readme.txt").read_text() == "good\n"


# ---------------------------------------------------------------------------- destPath confined


@pytest.mark.parametrize(
    ("dest_path", "says"),
    [
        ("../../x", "goes up"),
        ("sub/../../x", "goes up"),
        ("/tmp/envfixtures-fetch-escape", "absolute path"),
        (".", "names no file"),
    ],
)
def test_a_dest_path_out_of_the_sandbox_is_refused(layout: tuple[Path, Path, Path], dest_path: str, says: str) -> None:
    env, sandbox, _ = layout
    (env / "payload").write_bytes(b"payload")
    before = everything_under(env.parent)
    with pytest.raises(tasks.FetchError, match=says):
        fetch(sandbox, {"uri": f"file://{env}/payload", "destPath": dest_path}, roots=(env,))
    assert everything_under(env.parent) == before, "nothing written anywhere"
    assert not Path("/tmp/envfixtures-fetch-escape").exists()


def test_a_dest_path_through_a_symlink_out_of_the_sandbox_is_refused(layout: tuple[Path, Path, Path]) -> None:
    env, sandbox, outside = layout
    (env / "payload").write_bytes(b"payload")
    (sandbox / "out").symlink_to(outside)  # a directory link leading out
    (outside / "victim").write_bytes(b"victim")
    (sandbox / "victim").symlink_to(outside / "victim")  # a file link leading out
    (sandbox / "dangling").symlink_to(outside / "new")  # a link to a file that does not exist yet
    for dest_path in ("out/x", "out/deeper/x", "victim", "dangling"):
        with pytest.raises(tasks.FetchError, match="leads out of the task's sandbox through a symlink"):
            fetch(sandbox, {"uri": f"file://{env}/payload", "destPath": dest_path}, roots=(env,))
    assert everything_under(outside) == ["victim"] and (outside / "victim").read_bytes() == b"victim"


def test_a_dest_path_in_the_sandbox_lands_there(layout: tuple[Path, Path, Path]) -> None:
    env, sandbox, _ = layout
    (env / "payload").write_bytes(b"payload")
    (sandbox / "real").mkdir()
    (sandbox / "alias").symlink_to(sandbox / "real")  # a link that stays inside is fine
    fetch(
        sandbox,
        {"uri": f"file://{env}/payload", "destPath": "deep/dir/p1"},
        {"uri": f"file://{env}/payload", "destPath": "alias/p2"},
        roots=(env,),
    )
    assert (sandbox / "deep" / "dir" / "p1").read_bytes() == b"payload"
    assert (sandbox / "real" / "p2").read_bytes() == b"payload"


# ---------------------------------------------------------------------------- file:// only from inside


def test_file_uris_outside_the_environment_are_refused(layout: tuple[Path, Path, Path]) -> None:
    env, sandbox, outside = layout
    (outside / "secret").write_text("not the environment's")
    (env / "link-out").symlink_to(outside / "secret")  # inside by name, outside in fact
    for uri in (
        f"file://{outside}/secret",
        f"{outside}/secret",  # a bare path is a file:// URI too
        "file:///etc/passwd",
        f"file://{env}/link-out",
        f"file://{env}/../outside/secret",
    ):
        with pytest.raises(tasks.FetchError, match="file:// is refused outside the environment's own directories"):
            fetch(sandbox, {"uri": uri, "destPath": "copy"}, roots=(env,))
    with pytest.raises(tasks.FetchError, match="another host"):
        fetch(sandbox, {"uri": f"file://elsewhere{env}/x"}, roots=(env,))
    with pytest.raises(tasks.FetchError, match="outside the environment's own directories \\(allowed: none\\)"):
        fetch(sandbox, {"uri": f"file://{env}/link-out"})  # no roots: nothing local is allowed
    assert everything_under(sandbox) == []


def test_a_file_uri_must_name_a_regular_file(layout: tuple[Path, Path, Path]) -> None:
    env, sandbox, _ = layout
    os.mkfifo(env / "fifo")
    with pytest.raises(tasks.FetchError, match="not a regular file"):
        fetch(sandbox, {"uri": f"file://{env}/fifo", "destPath": "copy"}, roots=(env,))
