"""Static rules on ``templates/``: each rule is a small function returning :class:`Finding` s.

A finding names the file, the place in it (``line N`` for YAML, a JSON path for JSON) and what is
wrong; the rule that found it is kept so that a test can prove each mistake is caught by the rule meant
for it. Nothing here builds or starts anything: these run in ``tests_unit`` (``tox -e unit``), the
first stage of ``build-and-verify``.

Modules: :mod:`.cloudformation` (the stack template, as rendered, and cfn-lint), :mod:`.marathon`
(the app templates), :mod:`.rabbitmq` (the broker's definitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from envfixtures.core.errors import TemplateError

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


@dataclass(frozen=True)
class Finding:
    """One problem: ``file:place: message [rule]``."""

    file: str
    place: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.place}: {self.message} [{self.rule}]"


def from_error(exc: TemplateError, rule: str) -> Finding:
    """A finding from a :class:`TemplateError` raised by a loader or validator."""
    return Finding(exc.path, exc.where, rule, exc.problem)


def secret_like(key: object) -> bool:
    """Whether ``key`` names a secret (``DbPassword``, ``API_TOKEN``, ``client-secret`` ...)."""
    lowered = str(key).lower()
    if lowered in NOT_SECRET_KEYS:
        return False
    return any(word in lowered for word in SECRET_KEY_WORDS)


def report(findings: list[Finding]) -> str:
    """One line per finding, for an assertion message."""
    return "\n".join(str(f) for f in findings)


def refuse(findings: list[Finding]) -> None:
    """Raise the first finding as a one-line :class:`TemplateError`, saying how many more there are.

    Components call this from ``check()``, so a template that breaks a rule is refused at configure
    time, before anything is built, however the gate was started; ``tox -e unit`` lists every finding.
    """
    if findings:
        first = findings[0]
        more = f" (and {len(findings) - 1} more: tox -e unit lists them)" if len(findings) > 1 else ""
        raise TemplateError(first.file, first.place, f"{first.message} [{first.rule}]{more}")


def templates_dir(root: Path | str) -> Path:
    """The templates of the project at ``root``."""
    return Path(root) / "templates"


def check_all(root: Path | str) -> list[Finding]:
    """Every static rule on the templates of the project at ``root`` (cfn-lint included)."""
    from envfixtures.rules import cloudformation, marathon, rabbitmq

    base = templates_dir(root)
    findings = cloudformation.check_file(base / "cloudformation" / "environment.yaml", lint=True)
    findings += marathon.check_dir(base / "marathon")
    findings += rabbitmq.check_file(base / "rabbitmq" / "definitions.json")
    return findings
