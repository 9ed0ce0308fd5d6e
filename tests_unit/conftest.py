"""The static stage's per-file summary (the policy rules a platform turns off left out)."""

from __future__ import annotations

import pytest

from envfixtures import rules
from envfixtures.rules import policy


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line per template: its errors and warnings (cfn-lint aside: tox -e lint runs it)."""
    from envfixtures.rules import cloudformation, marathon, rabbitmq

    base = rules.templates_dir(config.rootpath)
    files = [base / "cloudformation" / "environment.yaml", *sorted((base / "marathon").glob("*.json"))]
    files.append(base / "rabbitmq" / "definitions.json")
    try:
        found = cloudformation.check_file(files[0]) + marathon.check_dir(base / "marathon")
        found += rabbitmq.check_file(files[-1])
        lines = rules.summary(policy.without(found, policy.from_pytest(config)), files)
    except Exception as exc:  # the summary never hides the tests' own verdict
        lines = [f"(no summary: {exc})"]
    terminalreporter.write_sep("-", "static rules, per template")
    for line in lines:
        terminalreporter.write_line(line)
