"""What a run reports: suite properties in the JUnit XML, and redaction of every test report."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .redaction import Redactor

if TYPE_CHECKING:
    from .run import Run


def add_suite_properties(config: pytest.Config, run: "Run") -> None:
    """SHA, environment name and backend (and a dirty tree) as properties of the JUnit test suite."""
    from _pytest.junitxml import xml_key  # the same object record_testsuite_property uses

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    env = run.env
    xml.add_global_property("envfixtures.sha", env.sha)
    xml.add_global_property("envfixtures.env", env.name)
    xml.add_global_property("envfixtures.backend", env.backend)
    xml.add_global_property("envfixtures.dirty", str(bool(env.meta.get("dirty"))).lower())


def redact_report(report: pytest.TestReport, redactor: Redactor) -> None:
    """Mask secrets in a test report's failure text and captured sections, in place."""
    if not redactor:
        return
    if report.longrepr is not None:
        text = str(report.longrepr)
        redacted = redactor.redact(text)
        if redacted != text:
            report.longrepr = redacted
    report.sections = [(title, redactor.redact(content)) for title, content in report.sections]
