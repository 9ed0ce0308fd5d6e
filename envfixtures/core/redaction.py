"""Redaction: secret values never appear in logs, reports, exception messages or files that envfixtures writes.

A :class:`Redactor` knows the secrets of an environment and masks every form of them that can reach an output:

- the value itself, and its encodings: URL-encoded (``quote``, ``quote_plus``), JSON-escaped, ``repr``-escaped,
  HTML-escaped (``html.escape`` and Jinja's ``&#34;``/``&#39;``), Markdown-escaped (summary.md), and those
  encodings of each other (the HTML page of a JSON string);
- base64 (an HTTP Basic ``Authorization`` header is ``base64(user:password)``): the characters that encode the
  secret alone, at each of the three byte alignments it can sit at, in the standard and the URL-safe alphabets;
  such a match masks the whole base64 word around it (``Basic ********``: the user goes too);
- any run of at least :data:`MIN_RUN` consecutive characters of one of those forms: what pytest leaves of a long
  value when it cuts a repr in the middle (``'AbCdEfGh...wXyZ'``, a prefix and a suffix), or a diff that skips a
  string's identical leading characters.

Runs are found by their windows: every substring of :data:`MIN_RUN` characters of every form goes into one regular
expression, built as a trie (one branch per next character), so the text is scanned once whatever the number of
secrets; a window found is then extended left and right as far as the text goes on agreeing with the form it came
from. A window made of one kind of character only (lowercase letters, say) is left out: generated secrets are random
tokens, where such a window is rare (and a longer run is still found from its other windows), while a secret chosen
by a person (``--env-set broker_admin_password=...``) would otherwise mask ordinary words. A value shorter than
:data:`MIN_SECRET` is not a secret worth masking (it would shred the text); one shorter than :data:`MIN_RUN` is
masked whole only.

:func:`secret_like` says whether a key names a secret (the static rules use it on templates; the environment masks
the settings it names in what it writes). :func:`scrub_tree` redacts the files under a directory in place; a gzip file
whose content holds a secret (the registry's ``docker.tar.gz``: base64 of ``user:password``, compressed) is removed,
as its bytes never show one.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import logging
import os
import re
import stat
import sys
import threading
from base64 import b64encode, urlsafe_b64encode
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

from envfixtures.core.facts import MASK

log = logging.getLogger(__name__)

#: The shortest value masked (whole); shorter ones would mask ordinary text.
MIN_SECRET = 4
#: The shortest run of a secret's characters masked wherever it appears (a truncated prefix, a suffix).
MIN_RUN = 8
#: Files up to this size are rewritten redacted by :func:`scrub_tree`; a larger one holding a secret is removed.
SCRUB_MAX_BYTES = 64 * 1024 * 1024

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")  # as envfixtures.pytest.summary escapes Markdown
_BASE64_WORD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"


class Redactor:
    """Masks every known secret value, in every form listed in the module's docstring, with :data:`MASK`."""

    def __init__(self, secrets: Iterable[object]) -> None:
        values = sorted({str(v) for v in secrets if v is not None and len(str(v)) >= MIN_SECRET})
        self._matcher = _Matcher.of(tuple(values)) if values else None

    def redact(self, text: str) -> str:
        if self._matcher is None or not text:
            return text
        return self._matcher.redact(text)

    def finds(self, text: str) -> bool:
        """Whether ``text`` holds any form of a secret (what :meth:`redact` would mask)."""
        return self._matcher is not None and bool(text) and self._matcher.pattern.search(text) is not None

    def redact_bytes(self, data: bytes) -> bytes:
        """``data`` (a log, a config, a crash dump) redacted; bytes that are not UTF-8 are kept as they are."""
        if not self.finds_bytes(data):
            return data
        return self.redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    def finds_bytes(self, data: bytes) -> bool:
        """Whether ``data`` holds the UTF-8 bytes of any form of a secret."""
        return self._matcher is not None and bool(data) and self._matcher.search_bytes(data)

    @property
    def longest(self) -> int:
        """The longest form matched at once (how much two chunks of a scanned file must overlap)."""
        return self._matcher.longest if self._matcher is not None else 0

    def __bool__(self) -> bool:
        return self._matcher is not None


# ---------------------------------------------------------------------- the forms of a secret


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


_JINJA = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})


def _jinja(text: str) -> str:
    """As Jinja's autoescape (markupsafe) escapes text."""
    return text.translate(_JINJA)


#: Encodings a secret goes through on its way to an output (each applied to the others' results once more).
ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda s: quote(s, safe=""),
    quote,
    quote_plus,
    lambda s: json.dumps(s)[1:-1],
    lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    lambda s: repr(s)[1:-1],
    html.escape,
    lambda s: html.escape(s, quote=False),
    _jinja,
    _md,
)


def text_forms(value: str) -> set[str]:
    """``value`` and its encodings, and their encodings (the HTML page of a JSON-escaped value, say)."""
    forms = {value}
    for _ in range(2):
        forms |= {encode(form) for form in forms for encode in ENCODINGS}
    return {form for form in forms if len(form) >= MIN_SECRET}


def base64_forms(value: str) -> set[str]:
    """The base64 characters that encode ``value`` alone, wherever it starts in the encoded bytes (3 alignments),
    in the standard and URL-safe alphabets: what shows of it in ``base64(user + ":" + value)`` for any user."""
    data = value.encode()
    forms = set()
    for skip in range(3):
        for encode in (b64encode, urlsafe_b64encode):
            encoded = encode(b"\0" * skip + data).decode().rstrip("=")
            # Character i holds bits [6i, 6i + 6): keep the characters whose bits all come from ``value``.
            first, last = -(-8 * skip // 6), 8 * (skip + len(data)) // 6
            core = encoded[first:last]
            if len(core) >= MIN_RUN:
                forms.add(core)
    return forms


def _kinds(text: str) -> int:
    """How many of lowercase letters, uppercase letters and digits ``text`` holds."""
    return sum(any(test(c) for c in text) for test in (_is_lower, _is_upper, str.isdigit))


def _is_lower(c: str) -> bool:
    return "a" <= c <= "z"


def _is_upper(c: str) -> bool:
    return "A" <= c <= "Z"


# ---------------------------------------------------------------------- the matcher


class _Matcher:
    """One regular expression for every form and window of a set of secrets, and how to extend what it finds."""

    def __init__(self, values: tuple[str, ...]) -> None:
        forms: dict[str, bool] = {}  # form -> whether it is a base64 form
        for value in values:
            for form in text_forms(value):
                forms.setdefault(form, False)
            for form in base64_forms(value):
                forms[form] = forms.get(form, False) or True
        self.forms = list(forms)
        self.base64 = [forms[f] for f in self.forms]
        #: window -> (form index, position of the window in the form)
        self.windows: dict[str, list[tuple[int, int]]] = {}
        literals = set()
        for index, form in enumerate(self.forms):
            literals.add(form)  # whole, however ordinary (a short secret, or one a person chose)
            for pos in range(len(form) - MIN_RUN + 1):
                window = form[pos : pos + MIN_RUN]
                if _kinds(window) >= 2:
                    self.windows.setdefault(window, []).append((index, pos))
                    literals.add(window)
        self.whole = {form: index for index, form in enumerate(self.forms)}
        self.longest = max(len(w) for w in literals)
        self.pattern = re.compile(_trie_pattern(literals))
        self._literals = literals
        self._bytes_pattern: re.Pattern[bytes] | None = None
        # Every 4 bytes of every form, as the integers a memoryview of 4-byte items yields (see search_bytes); none
        # when a form is shorter than a run (a short secret): then every byte is searched.
        self._grams: frozenset[int] | None = None
        if min(len(w) for w in literals) >= MIN_RUN:
            self._grams = frozenset(
                int.from_bytes(data[i : i + 4], sys.byteorder)
                for data in (form.encode() for form in self.forms)
                for i in range(len(data) - 3)
            )

    @property
    def bytes_pattern(self) -> re.Pattern[bytes]:
        """:attr:`pattern` for UTF-8 bytes: a file is searched as it is, decoded only when it holds a secret."""
        if self._bytes_pattern is None:
            self._bytes_pattern = re.compile(_trie_pattern(w.encode() for w in self._literals).encode("latin-1"))
        return self._bytes_pattern

    def search_bytes(self, data: bytes, block: int = 16384) -> bool:
        """Whether ``data`` holds a form of a secret: first, cheaply, whether it holds any 4 bytes of one at an offset
        that is a multiple of 4 — a run of 8 or more always covers such 4 bytes — then the regular expression, only
        around the blocks that do (a set lookup per 4 bytes is some ten times faster than the expression per byte).
        """
        if self._grams is None or len(data) < 4 * block:
            return self.bytes_pattern.search(data) is not None
        view = memoryview(data)[: len(data) - len(data) % 4].cast("I")
        reach = 4 * self.longest + 4  # a match around 4 bytes starts and ends within this many bytes of them
        for start in range(0, len(view), block):
            if not self._grams.isdisjoint(view[start : start + block]):
                low, high = max(0, 4 * start - reach), min(len(data), 4 * (start + block) + reach)
                if self.bytes_pattern.search(data, low, high) is not None:
                    return True
        return False

    @classmethod
    @functools.lru_cache(maxsize=32)
    def of(cls, values: tuple[str, ...]) -> "_Matcher":
        return cls(values)

    def redact(self, text: str) -> str:
        out: list[str] = []
        done = 0  # text[:done] is in ``out`` already
        pos = 0
        while (match := self.pattern.search(text, pos)) is not None:
            start, end = self._span(text, match.group(), match.start(), done)
            if start > done:
                out.append(text[done:start])
            if not out or out[-1] != MASK or start > done:
                out.append(MASK)
            done = pos = max(end, match.end())
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def _span(self, text: str, found: str, at: int, floor: int) -> tuple[int, int]:
        """The whole run of a secret's form around ``found`` (at ``at``), not reaching left of ``floor``."""
        start, end = at, at + len(found)
        base64 = self.base64[self.whole[found]] if found in self.whole else False
        for index, pos in self.windows.get(found[:MIN_RUN], ()):  # every form whose window ``found`` starts with
            form = self.forms[index]
            left = 0
            while at - left - 1 >= floor and pos - left - 1 >= 0 and text[at - left - 1] == form[pos - left - 1]:
                left += 1
            right, fpos = at + MIN_RUN, pos + MIN_RUN
            while right < len(text) and fpos < len(form) and text[right] == form[fpos]:
                right += 1
                fpos += 1
            start, end = min(start, at - left), max(end, right)
            base64 = base64 or self.base64[index]
        if base64:  # the whole base64 word: a Basic credential, user and all
            while start > floor and text[start - 1] in _BASE64_WORD:
                start -= 1
            while end < len(text) and text[end] in _BASE64_WORD:
                end += 1
            while end < len(text) and text[end] == "=":
                end += 1
        return start, end


def _trie_pattern(words: Iterable[str | bytes]) -> str:
    """A regular expression matching any of ``words``, the longest one where several match at the same place (for
    bytes: a pattern whose characters are the bytes, to encode in latin-1)."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for char in word.decode("latin-1") if isinstance(word, bytes) else word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        # A chain of single-child nodes is a plain literal: no group, no recursion.
        parts = []
        while len(node) == 1 and "" not in node:
            ((char, node),) = node.items()
            parts.append(re.escape(char))
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if branches:
            group = "(?:" + "|".join(branches) + ")" if len(branches) > 1 or "" in node else branches[0]
            parts.append(group + ("?" if "" in node else ""))
        return "".join(parts)

    return build(trie)


# ---------------------------------------------------------------------- live outputs: log handlers, streams

#: What gives the redactor of the moment: an environment's secrets grow while it is built.
RedactorSource = Callable[[], Redactor]
WITHHELD = "(envfixtures withheld this output: its secrets could not be read to redact it: {})"


def _redacted(source: RedactorSource, text: str) -> str:
    try:
        return source().redact(text)
    except Exception as exc:  # noqa: BLE001 - fail closed: nothing unredacted goes out
        return WITHHELD.format(type(exc).__name__)


class RedactingFormatter(logging.Formatter):
    """A log handler's formatter, its output redacted (the record itself is left alone for other handlers)."""

    def __init__(self, inner: logging.Formatter | None, source: RedactorSource) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self._source = source

    def format(self, record: logging.LogRecord) -> str:
        return _redacted(self._source, self.inner.format(record))

    @classmethod
    def install(cls, handler: logging.Handler, source: RedactorSource) -> None:
        """Redact what ``handler`` writes from now on (once: a second install leaves it as it is)."""
        if not isinstance(handler.formatter, cls):
            handler.setFormatter(cls(handler.formatter, source))


class RedactingStream:
    """A text stream (``sys.stdout``) whose writes are redacted a line at a time (a secret is not cut between two
    writes), passed on at each newline and on ``flush``; every other attribute is the wrapped stream's.

    What bypasses it is not redacted: writes to ``.buffer`` or to the file descriptor (a child process's output).
    """

    def __init__(self, stream: TextIO, source: RedactorSource) -> None:
        self.wrapped = stream
        self._source = source
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending or len(self._pending) > 65536:
                head, newline, self._pending = self._pending.rpartition("\n")
                if not newline:  # a very long line: passed on without waiting for its end
                    head, self._pending = self._pending, ""
                self.wrapped.write(_redacted(self._source, head + newline))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.wrapped.write(_redacted(self._source, self._pending))
                self._pending = ""
        self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


@contextmanager
def redacting_output(source: RedactorSource) -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` redacted inside (put back after, unless somebody replaced them meanwhile)."""
    out, err = RedactingStream(sys.stdout, source), RedactingStream(sys.stderr, source)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in (out, err):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if sys.stdout is out:
            sys.stdout = out.wrapped
        if sys.stderr is err:
            sys.stderr = err.wrapped


# ---------------------------------------------------------------------- keys that name secrets

#: Keys whose value is a secret when literal (matched case-insensitively, anywhere in the key).
SECRET_KEY_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "credential",
    "passphrase",
    "privatekey",
    "private_key",
)
#: Keys that contain such a word and are not secrets.
NOT_SECRET_KEYS = frozenset({"httptokens", "secret_ref", "secretsmanagersecretid"})
#: The last word of a key that names *where* a secret is, or something about it, not the secret itself
#: (``ParentSecretStack``, ``DbSecretArn``, ``TokenLength``, ``PASSWORD_FILE``).
NOT_SECRET_LAST_WORDS = frozenset(
    {"stack", "arn", "id", "ids", "name", "names", "length", "policy", "type", "enabled", "version", "kmskeyid"}
    | {"file", "path", "ref", "url", "uri", "rotation", "template", "string"}
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def key_words(key: object) -> list[str]:
    """``ParentSecretStack`` -> parent, secret, stack; ``DB_PASSWORD_FILE`` -> db, password, file."""
    return [w.lower() for w in _WORDS.findall(str(key))]


def secret_like(key: object) -> bool:
    """Whether ``key`` names a secret (``DbPassword``, ``API_TOKEN``, ``client-secret`` ...).

    Not a key whose last word says it names a stack, an ARN, an id, a file ... (``ParentSecretStack``).
    """
    lowered = str(key).lower()
    if lowered in NOT_SECRET_KEYS:
        return False
    if not any(word in lowered for word in SECRET_KEY_WORDS):
        return False
    words = key_words(key)
    return not (len(words) > 1 and words[-1] in NOT_SECRET_LAST_WORDS)


# ---------------------------------------------------------------------- files


def scrub_tree(root: Path, redactor: Redactor, *, skip: Iterable[Path] = ()) -> list[str]:
    """Redact, in place, every regular file under ``root`` that holds a form of a secret; returns the problems met.

    Symbolic links are neither followed nor changed. A file is rewritten (same mode) through a new file renamed over
    it; one larger than :data:`SCRUB_MAX_BYTES` that holds a secret, or one that cannot be rewritten, is removed.
    """
    problems: list[str] = []
    if not redactor or not root.is_dir():
        return problems
    skipped = {Path(p) for p in skip}
    for directory, _dirnames, filenames in os.walk(root, onerror=lambda exc: problems.append(f"scrub: {exc}")):
        for name in filenames:  # os.walk follows no symbolic link to a directory; _scrub_file skips one to a file
            path = Path(directory, name)
            if path in skipped:
                continue
            try:
                _scrub_file(path, redactor)
            except OSError as exc:
                problems.append(f"{path}: could not be scrubbed of secrets ({exc.strerror or exc})")
    return problems


def _scrub_file(path: Path, redactor: Redactor) -> None:
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return
    if _gzip_holds_secret(path, redactor):
        log.warning("%s is compressed and holds a secret: removed", path)
        path.unlink()
        return
    if info.st_size > SCRUB_MAX_BYTES:
        if _holds_secret(path, redactor):
            log.warning("%s holds a secret and is too large to rewrite: removed", path)
            path.unlink()
        return
    with open(path, "rb") as fh:
        data = fh.read()
    redacted = redactor.redact_bytes(data)
    if redacted == data:
        return
    tmp = path.with_name(f".{path.name}.scrub-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(redacted)
        os.chmod(tmp, stat.S_IMODE(info.st_mode) | stat.S_IRUSR)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        path.unlink()  # cannot rewrite it (a directory we may not write): the secret must go anyway


def _gzip_holds_secret(path: Path, redactor: Redactor) -> bool:
    """``path`` is gzip-compressed and its content holds a secret within its first :data:`SCRUB_MAX_BYTES` (a bound
    against a compression bomb); of a stream cut short or corrupt, what could be read counts."""
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return False
    return _holds_secret(path, redactor, opener=gzip.open, limit=SCRUB_MAX_BYTES)


def _holds_secret(
    path: Path, redactor: Redactor, chunk: int = 4 * 1024 * 1024, opener: Callable = open, limit: int | None = None
) -> bool:
    overlap = max(redactor.longest * 4, 64)  # in bytes: a character takes up to 4
    tail, seen = b"", 0
    with opener(path, "rb") as fh:
        while limit is None or seen < limit:
            try:
                block = fh.read(chunk)
            except (OSError, EOFError):  # a gzip stream cut short or corrupt
                break
            if not block:
                break
            seen += len(block)
            if redactor.finds_bytes(tail + block):
                return True
            tail = block[-overlap:]
    return False
