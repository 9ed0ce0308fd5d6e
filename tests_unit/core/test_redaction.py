"""Redaction of every form of a secret (core/redaction.py), and secrets forgotten on disk (core/state.py,
core/environment.py): what reaches an output or stays in the state directory."""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
import logging
import os
import secrets
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from envfixtures.core import redaction, registry
from envfixtures.core.environment import TEARDOWN_FAILED, TORN_DOWN, Environment
from envfixtures.core.errors import ComponentFailed
from envfixtures.core.facts import MASK
from envfixtures.core.redaction import (
    RedactingFormatter,
    RedactingStream,
    Redactor,
    redacting_output,
    scrub_tree,
    secret_like,
)
from envfixtures.drivers.containers import registry as registry_driver

#: A generated secret as components make them (secrets.token_urlsafe(24)), fixed so that failures reproduce.
SECRET = "Zq3xW9-vK2mLp7Tn_bR4yHc8dFjE1sGu"
#: A secret a person chose (a setting): characters that every encoding changes.
CHOSEN = 'p@ss w0rd/"quoted" & <tag> é+%'


def runs(value: str, n: int = redaction.MIN_RUN) -> list[str]:
    """Every substring of ``n`` characters of ``value``."""
    return [value[i : i + n] for i in range(len(value) - n + 1)]


def leaks(text: str, value: str) -> list[str]:
    return [run for run in runs(value) if run in text]


# ---------------------------------------------------------------------- the forms of a secret


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s,
        lambda s: quote(s, safe=""),
        quote,
        quote_plus,
        lambda s: json.dumps(s)[1:-1],
        lambda s: repr(s)[1:-1],
        html.escape,
        lambda s: html.escape(json.dumps(s)[1:-1]),  # report.html showing a JSON body
        lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;"),  # Jinja
    ],
    ids=["plain", "quote-all", "quote", "quote_plus", "json", "repr", "html", "html-of-json", "jinja"],
)
@pytest.mark.parametrize("value", [SECRET, CHOSEN], ids=["generated", "chosen"])
def test_each_encoding_of_a_secret_is_masked(encode, value: str) -> None:  # noqa: ANN001
    form = encode(value)
    text = f"before {form} after"
    redacted = Redactor([value]).redact(text)
    assert redacted == f"before {MASK} after"


def test_markdown_escaped_secret_is_masked() -> None:
    """summary.md escapes ``_`` (and more): a generated token often holds one."""
    escaped = SECRET.replace("_", "\\_")
    assert escaped != SECRET
    assert Redactor([SECRET]).redact(f"- `t` — {escaped}") == f"- `t` — {MASK}"


@pytest.mark.parametrize("user", ["", "a", "ab", "abc", "admin", "envfixtures-admin"])
def test_basic_auth_header_is_masked_whoever_the_user(user: str) -> None:
    """base64(user:secret): the secret starts at each of the 3 byte alignments as the user's length varies."""
    token = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    text = f"GET / HTTP/1.1\r\nAuthorization: Basic {token}\r\nHost: x"
    assert Redactor([SECRET]).redact(text) == f"GET / HTTP/1.1\r\nAuthorization: Basic {MASK}\r\nHost: x"


def test_the_registry_credentials_of_a_docker_config_are_masked() -> None:
    """The images component's registry credentials as podman's --authfile and a task's docker.tar.gz hold them
    (``auth``: base64 of user:password): what a report or a log quoting that file shows."""
    user = "envfixtures-0a1b2c3d"
    text = registry_driver.docker_config("127.0.0.1:5000", user, SECRET)
    token = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    assert token in text
    redacted = Redactor([SECRET]).redact(text)
    assert json.loads(redacted) == {"auths": {"127.0.0.1:5000": {"auth": MASK}}}


@pytest.mark.parametrize("skip", [0, 1, 2])
def test_base64_of_a_secret_inside_other_bytes_is_masked(skip: int) -> None:
    """Standard and URL-safe alphabets, the secret anywhere in the encoded bytes, the encoding cut short after it."""
    data = os.urandom(skip) + SECRET.encode() + os.urandom(7)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(data).decode()
        redacted = Redactor([SECRET]).redact(f"body={encoded[:-4]}... (truncated)")
        assert redacted == f"body={MASK}... (truncated)"


@pytest.mark.parametrize("length", [8, 9, 13, 20, len(SECRET) - 1])
def test_a_prefix_of_eight_characters_or_more_is_masked(length: int) -> None:
    """What pytest leaves of a value when it cuts a repr in the middle: ``'AbCdEfGh...``."""
    text = f"assert {{'password': '{SECRET[:length]}...'pid': 1}} == {{}}"
    assert Redactor([SECRET]).redact(text) == f"assert {{'password': '{MASK}...'pid': 1}} == {{}}"


def test_a_suffix_and_a_middle_run_are_masked() -> None:
    """The other side of the cut (``...wXyZ'}``), and a diff that skipped a string's identical leading characters."""
    redactor = Redactor([SECRET])
    assert redactor.redact(f"...{SECRET[-9:]}'}}") == f"...{MASK}'}}"
    assert redactor.redact(f"Skipping 5: {SECRET[5:20]}!") == f"Skipping 5: {MASK}!"


def test_a_run_shorter_than_eight_characters_stays() -> None:
    """Seven characters of a random token are not worth shredding text for: they are not enough to guess it."""
    text = f"x{SECRET[:7]}... and {SECRET[-7:]}"
    assert Redactor([SECRET]).redact(text) == text


def test_a_short_secret_is_masked_whole_only_and_a_tiny_one_not_at_all() -> None:
    redactor = Redactor(["s3cr3T", "abc"])
    assert redactor.redact("is s3cr3T; s3cr3 stays; abc stays") == f"is {MASK}; s3cr3 stays; abc stays"


def test_innocent_text_is_untouched() -> None:
    """Words, paths, numbers, other tokens — even those sharing a few characters with the secrets — stay as they are;
    a secret a person chose does not mask the ordinary words it is made of."""
    redactor = Redactor([SECRET, secrets.token_urlsafe(24), secrets.token_hex(20), "password-for-everything"])
    text = (
        "envfixtures [ef-0123456-abcd] built sleeper in 0.3s; logs in /tmp/x/logs/sleeper-sleep.log\n"
        "AssertionError: assert {'pid': 12345, 'token': 'abc'} == {'pid': 0}\n"
        "Authorization: Basic YWRtaW46YWRtaW4=  (admin:admin, not ours)\n"
        f"{secrets.token_urlsafe(24)} {secrets.token_hex(20)} 0123456789abcdef0123456789abcdef01234567\n"
        "the password for everything is not here; everything-password; Zq3xW9- is seven characters\n"
    )
    assert redactor.redact(text) == text


def test_every_secret_masked_in_one_pass_and_masks_merge() -> None:
    other = secrets.token_urlsafe(24)
    redactor = Redactor([SECRET, other])
    assert redactor.redact(f"{SECRET}{other} and {other}") == f"{MASK} and {MASK}"
    assert redactor.redact(redactor.redact(f"a {SECRET} b")) == f"a {MASK} b"  # idempotent


def test_redacting_bytes_keeps_what_is_not_utf8() -> None:
    data = b"\xff\xfe\x00binary " + SECRET.encode() + b" \x80tail"
    assert Redactor([SECRET]).redact_bytes(data) == b"\xff\xfe\x00binary " + MASK.encode() + b" \x80tail"


@pytest.mark.parametrize("at", [0, 1, 2, 3, 65536 - 5, 65536 - 4, 65536 + 1, 200_000 - 8])
def test_a_run_of_eight_is_found_anywhere_in_a_large_file(at: int) -> None:
    """Large data is first sampled 4 bytes at a time, then searched around the samples that hit: a run of 8 at any
    offset, across the sampled blocks' boundaries too, is found; data without one is not."""
    redactor = Redactor([SECRET])
    data = bytearray(b"2024-01-01 info: connection accepted\n" * 6000)[:200_000]
    assert not redactor.finds_bytes(bytes(data))
    run = SECRET[11:19].encode()
    data[at : at + 8] = run
    assert redactor.finds_bytes(bytes(data))
    assert run not in redactor.redact_bytes(bytes(data))


def test_settings_keys_that_name_a_secret() -> None:
    assert secret_like("broker_admin_password") and secret_like("api_token") and secret_like("DbPassword")
    assert not secret_like("broker_nodes") and not secret_like("ssh_identity_file") and not secret_like("quiet")


# ---------------------------------------------------------------------- live outputs


def test_stream_redacts_a_secret_written_in_pieces() -> None:
    out = io.StringIO()
    stream = RedactingStream(out, lambda: Redactor([SECRET]))
    stream.write("token: " + SECRET[:10])
    stream.write(SECRET[10:] + "\nnext ")
    assert out.getvalue() == f"token: {MASK}\n", "a line is passed on whole, at its newline"
    stream.write(SECRET[:12])
    stream.flush()
    assert out.getvalue() == f"token: {MASK}\nnext {MASK}"


def test_redacting_output_wraps_and_restores_sys_streams(capsys: pytest.CaptureFixture[str]) -> None:
    with redacting_output(lambda: Redactor([SECRET])):
        print("printed", SECRET)
        print("to stderr", SECRET[:12] + "...", file=__import__("sys").stderr)
    print("after", SECRET)
    captured = capsys.readouterr()
    assert captured.out == f"printed {MASK}\nafter {SECRET}\n"
    assert captured.err == f"to stderr {MASK}...\n"


def test_log_formatter_redacts_message_and_traceback_and_leaves_the_record() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    RedactingFormatter.install(handler, lambda: Redactor([SECRET]))
    RedactingFormatter.install(handler, lambda: Redactor([]))  # a second install changes nothing
    logger = logging.getLogger("test_redaction.live")
    logger.addHandler(handler)
    logger.propagate = False
    records = []
    logger.addFilter(lambda record: records.append(record) or True)
    try:
        logger.warning("connecting with %s", SECRET)
        try:
            raise RuntimeError(f"refused {SECRET[:9]}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert f"WARNING connecting with {MASK}" in text and f"RuntimeError: refused {MASK}" in text
    assert not leaks(text, SECRET)
    assert records[0].getMessage() == f"connecting with {SECRET}", "other handlers (caplog) see the record as logged"


def test_log_formatter_fails_closed() -> None:
    def broken() -> Redactor:
        raise OSError("state directory gone")

    handler = logging.StreamHandler(io.StringIO())
    RedactingFormatter.install(handler, broken)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "password %s", (SECRET,), None)
    assert SECRET not in handler.format(record) and "withheld" in handler.format(record)


# ---------------------------------------------------------------------- files


def test_scrub_tree_rewrites_files_holding_a_secret_and_nothing_else(tmp_path: Path) -> None:
    conf = tmp_path / "node-1" / "rabbitmq.conf"
    conf.parent.mkdir()
    conf.write_text(f"default_user = admin\ndefault_pass = {SECRET}\n")
    conf.chmod(0o600)
    cookie = tmp_path / "home" / ".erlang.cookie"
    cookie.parent.mkdir()
    cookie.write_text(SECRET)
    cookie.chmod(0o400)
    dump = tmp_path / "erl_crash.dump"
    dump.write_bytes(b"\x83binary\xff" + base64.b64encode(f"admin:{SECRET}".encode()) + b"\x00")
    clean = tmp_path / "node-1" / "node.log"
    clean.write_text("started\n")
    before = clean.stat().st_mtime_ns
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text(SECRET)
    (tmp_path / "link").symlink_to(outside)

    assert scrub_tree(tmp_path, Redactor([SECRET])) == []
    assert conf.read_text() == f"default_user = admin\ndefault_pass = {MASK}\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert cookie.read_text() == MASK and stat.S_IMODE(cookie.stat().st_mode) == 0o400
    assert dump.read_bytes() == b"\x83binary\xff" + MASK.encode() + b"\x00"
    assert clean.stat().st_mtime_ns == before, "a file without a secret is not rewritten"
    assert outside.read_text() == SECRET, "a symbolic link is not followed"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["node-1", "rabbitmq.conf", "node.log", "home", ".erlang.cookie", "erl_crash.dump", "link"]
    ), "no temporary file left behind"


def test_scrub_tree_removes_a_large_file_holding_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redaction, "SCRUB_MAX_BYTES", 1000)
    big = tmp_path / "big.log"
    big.write_bytes(b"x" * 5000 + SECRET.encode() + b"y" * 5000)
    large_clean = tmp_path / "clean.log"
    large_clean.write_bytes(b"z" * 20000)
    assert scrub_tree(tmp_path, Redactor([SECRET])) == []
    assert not big.exists() and large_clean.exists()


# ---------------------------------------------------------------------- forgetting: core/state.py, environment.py

PARTS = {"base": "Base", "other": "Other", "standing": "Standing", "leaky": "Leaky"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    for name, cls in PARTS.items():
        monkeypatch.setitem(registry.COMPONENTS, name, {registry.ANY: f"secret_parts:{cls}"})
    environment = Environment(
        name="ef-0123456-scrt", sha="0" * 40, backend="local", root=tmp_path, home=tmp_path / "home",
        settings={"quiet": "true", "broker_admin_password": CHOSEN}, components=list(PARTS),
    )  # fmt: skip
    environment.description = environment.describe()
    return environment


def files_holding(root: Path, values: list[str]) -> list[str]:
    """Files under ``root`` holding any run of 8 characters of any of ``values`` (in any form the redactor masks)."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        if any(run.encode() in data for value in values for run in runs(value)):
            found.append(str(path.relative_to(root)))
    return found


def test_a_secret_setting_is_masked_in_env_json_and_read_back_from_the_secrets(env: Environment) -> None:
    env.ensure("base")
    meta = json.loads((env.dir / "env.json").read_text())
    assert meta["settings"] == {"quiet": "true", "broker_admin_password": MASK}
    assert files_holding(env.dir, [CHOSEN]) == ["secrets.jsonl"]
    assert Environment.open(env.home, env.name).settings["broker_admin_password"] == CHOSEN
    assert env.redactor().redact(f"x {CHOSEN} y") == f"x {MASK} y", "a secret setting is redacted"


def test_forget_after_a_green_teardown_leaves_no_secret_anywhere(env: Environment) -> None:
    facts = [env.ensure(name) for name in ("base", "other")]
    values = [f["password"] for f in facts] + [CHOSEN]
    assert files_holding(env.dir, values), "the test needs secrets on disk to begin with"
    assert env.teardown() == []
    assert env.forget_secrets() == []
    assert files_holding(env.home, values) == []
    assert not (env.dir / "secrets.jsonl").exists()
    assert "started with password ********" in (env.dir / "logs" / "base-server.log").read_text()
    state = json.loads((env.dir / "components" / "base.json").read_text())
    assert state["facts"]["values"] == {"user": "base", "password": MASK}


def test_a_failed_build_keeps_its_work_directory_as_evidence_without_its_secrets(env: Environment) -> None:
    with pytest.raises(ComponentFailed):
        env.ensure("leaky")
    password = json.loads((env.dir / "secrets.jsonl").read_text().splitlines()[-1])["value"]
    conf = env.dir / "work" / "leaky" / "server.conf"
    assert password in conf.read_text()
    assert env.teardown() == []
    assert conf.read_text() == f"listen = 127.0.0.1\npassword = {MASK}\n", "kept, scrubbed by the teardown"
    assert env.forget_secrets() == []
    assert files_holding(env.home, [password, CHOSEN]) == []


def test_a_failed_teardown_keeps_the_secrets_of_what_it_left_standing_until_a_retry_succeeds(
    env: Environment,
) -> None:
    """``standing`` (and ``base``, which it requires) keep their secrets for ``envfixtures down`` to retry with; the
    secrets of ``other``, torn down, go at once."""
    base, standing, other = (env.ensure(name)["password"] for name in ("base", "standing", "other"))
    (env.dir / "fail-teardown").touch()
    problems = env.teardown()
    assert problems == ["teardown of standing: its server would not stop"]
    assert env.meta["status"] == TEARDOWN_FAILED
    assert sorted(env.left_standing()) == ["base", "standing"]

    assert env.forget_secrets() == []
    assert files_holding(env.home, [other]) == []
    assert files_holding(env.home, [base, standing]) != []
    reopened = Environment.open(env.home, env.name)  # as `envfixtures down NAME` does
    assert {base, standing, CHOSEN} <= set(reopened.secret_values())
    assert reopened.settings["broker_admin_password"] == CHOSEN

    (env.dir / "fail-teardown").unlink()
    assert reopened.teardown() == []
    assert reopened.meta["status"] == TORN_DOWN
    assert reopened.forget_secrets() == []
    assert files_holding(env.home, [base, standing, other, CHOSEN]) == []


def test_scrub_tree_removes_a_compressed_file_whose_content_holds_a_secret(tmp_path: Path) -> None:
    """The registry's docker.tar.gz (base64 of user:password inside a gzip stream) shows no secret in its bytes: a
    failed images build's work/ kept it, credentials included, until the scrub looked inside."""
    docker_tarball = registry_driver.write_docker_tarball(tmp_path / "docker.tar.gz", "127.0.0.1:5000", "u", SECRET)
    assert not Redactor([SECRET]).finds_bytes(docker_tarball.read_bytes()), "the secret is not in its bytes"
    clean = tmp_path / "layer.tar.gz"
    clean.write_bytes(gzip.compress(b"no secret here\n" * 100))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(b"x" * 100 + SECRET.encode() + b"y" * 100000)[:200])
    assert scrub_tree(tmp_path, Redactor([SECRET])) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layer.tar.gz"]
