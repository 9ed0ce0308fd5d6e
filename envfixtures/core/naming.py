"""Environment names: one string valid as a CloudFormation stack name, a RabbitMQ vhost, a Marathon group
id and a directory name (lowercase letters, digits and single hyphens, starting with a letter, at most 63)."""

from __future__ import annotations

import re
import secrets
import string

PREFIX = "ef"
MAX_LENGTH = 63
_RUN_ALPHABET = string.ascii_lowercase + string.digits
NAME_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,62}$")
SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")


def new_run_id(length: int = 4) -> str:
    return "".join(secrets.choice(_RUN_ALPHABET) for _ in range(length))


def slug(text: str, max_length: int = 20) -> str:
    """Lowercase ``text`` to letters, digits and single hyphens, at most ``max_length`` characters."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:max_length].strip("-")


def env_name(sha: str, run_id: str, branch: str | None = None) -> str:
    """``ef-[branch-]SHA7-RUNID``; the branch part is a slug and is dropped when it slugs to nothing."""
    if not SHA_RE.match(sha):
        raise ValueError(f"not a git SHA: {sha!r}")
    run = slug(run_id, 12) or new_run_id()
    parts = [PREFIX]
    branch_slug = slug(branch or "")
    if branch_slug:
        parts.append(branch_slug)
    parts += [sha[:7], run]
    name = "-".join(parts)
    assert NAME_RE.match(name) and len(name) <= MAX_LENGTH, name
    return name


def is_valid(name: str) -> bool:
    return bool(NAME_RE.match(name))
