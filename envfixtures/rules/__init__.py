"""Static rules on a platform's templates (the paths its ``[tool.envfixtures]`` configuration names): each rule is a
small function returning :class:`Finding` s.

A finding names the file, the place in it (``line N`` for YAML, a JSON path for JSON) and what is
wrong; the rule that found it is kept so that a test can prove each mistake is caught by the rule meant
for it. Nothing here builds or starts anything: these run as the ``static_rules`` items of a pytest run (one per
input file, alone with ``--env-static-only``) and in ``envfixtures check``, before anything is built.

Two kinds of finding. A *validation* finding says the real system (CloudFormation, Marathon, RabbitMQ's
definitions import) would refuse the input; it cannot be turned off. A *policy* finding says the input breaks
this project's own rule, stricter than the real system (encryption, image tags, open CIDRs ...): each policy
rule has an id and a reason in :mod:`.policy`, and a platform turns it off with the setting ``rules_off``.
A *warning* (``severity="warning"``) is reported and never refuses (a field Marathon ignores, say).

Modules: :mod:`.cloudformation` (the stack template, as rendered, and cfn-lint), :mod:`.marathon`
(the app templates), :mod:`.rabbitmq` (the broker's definitions), :mod:`.policy` (the policy rules' ids and
reasons, and which are turned off).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envfixtures.core.errors import TemplateError
from envfixtures.core.redaction import (  # noqa: F401 - part of this module's interface: the rules use them
    NOT_SECRET_KEYS,
    NOT_SECRET_LAST_WORDS,
    SECRET_KEY_WORDS,
    key_words,
    secret_like,
)

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    """One problem: ``file:place: message [rule]`` (``file:place: warning: message [rule]`` for a warning)."""

    file: str
    place: str
    rule: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        note = "warning: " if self.severity == WARNING else ""
        return f"{self.file}:{self.place}: {note}{self.message} [{self.rule}]"

    @property
    def refuses(self) -> bool:
        return self.severity != WARNING


def from_error(exc: TemplateError, rule: str) -> Finding:
    """A finding from a :class:`TemplateError` raised by a loader or validator."""
    return Finding(exc.path, exc.where, rule, exc.problem)


def report(findings: Iterable[Finding]) -> str:
    """One line per finding, for an assertion message."""
    return "\n".join(str(f) for f in findings)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that refuse (not warnings)."""
    return [f for f in findings if f.refuses]


def summary(findings: Iterable[Finding], files: Iterable[Path | str] = ()) -> list[str]:
    """One line per file: ``FILE: N error(s), M warning(s) (rule ids)``; ``FILE: ok`` for a file in ``files``
    without findings."""
    by_file: dict[str, list[Finding]] = {str(f): [] for f in files}
    for f in findings:
        by_file.setdefault(f.file, []).append(f)
    lines = []
    for name, found in by_file.items():
        if not found:
            lines.append(f"{name}: ok")
            continue
        n_err = len(errors(found))
        n_warn = len(found) - n_err
        ids = ", ".join(sorted({f.rule for f in found}))
        lines.append(f"{name}: {n_err} error(s), {n_warn} warning(s) ({ids})")
    return lines


def refuse(findings: list[Finding]) -> None:
    """Raise the first refusing finding as a one-line :class:`TemplateError`, saying how many more there are.

    Components call this from ``check()``, so a template that breaks a rule is refused at configure
    time, before anything is built, however the gate was started; ``envfixtures check`` (and the static items
    of the pytest run) list every finding. Warnings never refuse.
    """
    findings = errors(findings)
    if findings:
        first = findings[0]
        more = f" (and {len(findings) - 1} more: `envfixtures check` lists them)" if len(findings) > 1 else ""
        raise TemplateError(first.file, first.place, f"{first.message} [{first.rule}]{hint(first.rule)}{more}")


def hint(rule: str) -> str:
    """How to silence a finding of ``rule``, when it can be (a policy rule), for the end of its message."""
    from envfixtures.rules import policy

    if policy.reason(rule) is None:
        return ""
    return f"; a policy rule ({policy.reason(rule)}): fix it, or turn it off with [tool.envfixtures.rules] off"
