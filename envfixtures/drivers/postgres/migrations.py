"""The platform's schema migrations: ``NNNN_name.sql`` files of a directory applied in order, once each.

Written here rather than with Alembic/yoyo: plain ordered SQL files and one bookkeeping table are all
the platform needs, and the files must be read from the SHA under test (``git show``), not the tree.

Each migration runs in its own transaction together with its row in ``schema_migrations`` (version,
name, sha256 of the file, applied_at), so a failing migration leaves nothing half-applied. A file whose
content changed after it was applied is refused. An advisory lock serialises concurrent runners.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from envfixtures.core.errors import BuildError, ConfigError, TemplateError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
#: Any constant shared by all runners of this schema (pg_advisory_lock key).
_LOCK_KEY = 0x6566_6D69  # "efmi"

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version (the number in its name), name, text and where it came from."""

    version: int
    name: str
    sql: str
    origin: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def _parse(files: dict[str, str], origin: str) -> list[Migration]:
    """Migrations from {file name: text}, ordered, names and versions checked."""
    found: dict[int, Migration] = {}
    for name in sorted(files):
        where = f"{origin}/{name}"
        match = NAME_RE.match(name)
        if not match:
            raise TemplateError(where, "name", "a migration is named NNNN_lowercase_words.sql (e.g. 0001_accounts.sql)")
        version = int(match.group(1))
        if version in found:
            raise TemplateError(where, "name", f"version {version} is also used by {found[version].name}")
        if not files[name].strip():
            raise TemplateError(where, "1", "the migration is empty")
        found[version] = Migration(version, name, files[name], where)
    if not found:
        raise ConfigError(f"{origin}: no migrations (*.sql) found")
    return [found[v] for v in sorted(found)]


def from_directory(path: Path) -> list[Migration]:
    """Migrations from the files of a directory (tests; the tree, not a SHA)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: migrations directory does not exist")
    return _parse({p.name: p.read_text() for p in path.glob("*.sql")}, str(path))


def from_git(repo: Path, sha: str, subdir: str) -> list[Migration]:
    """Migrations of ``subdir`` (relative to ``repo``, which may be a directory inside a git repository) as
    committed at ``sha`` (what the environment deploys), whatever the working tree holds."""
    subdir = f"./{subdir.strip('/')}"  # relative to repo, not to the repository's top

    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise ConfigError(f"{repo}: git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    listing = git("ls-tree", "--full-tree", "--name-only", f"{sha}:{subdir}")  # not filtered by the cwd
    names = [n for n in listing.splitlines() if n.endswith(".sql")]
    return _parse({n: git("show", f"{sha}:{subdir}/{n}") for n in names}, f"{subdir[2:]}@{sha[:12]}")


def apply(conninfo: str, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied now (in order)."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(BOOKKEEPING)
            done = {v: s for v, s in conn.execute("SELECT version, sha256 FROM schema_migrations").fetchall()}
            for mig in migrations:
                if mig.version in done:
                    if done[mig.version] != mig.sha256:
                        raise TemplateError(
                            mig.origin, "content", "changed after it was applied; add a new migration instead"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(mig.sql)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.sha256),
                        )
                except psycopg.Error as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise BuildError(f"{mig.origin}: migration failed: {first}") from None
                log.info("applied migration %s", mig.name)
                applied_now.append(mig.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def applied(conninfo: str) -> list[str]:
    """Names of the migrations recorded in ``schema_migrations``, in order."""
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()]
