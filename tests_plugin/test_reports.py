"""The reports of a run — junit.xml, summary.md, report.html, promotion.json — proven on pytester projects.

Green runs (serial and -n 2) write all four, schema-valid and in agreement; a failing test's JUnit
entry carries its evidence; a narrowed selection (-k) or a failure writes no promotion record and
says why; no secret the run generated reaches reports/ or the terminal.
"""

from __future__ import annotations

import json
import re
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import SHA, Project
from envfixtures.core.environment import Environment
from envfixtures.core.facts import MASK
from envfixtures.core.redaction import Redactor
from envfixtures.pytest import promotion, reports, summary
from envfixtures.testing import SECRET

XSD = Path(__file__).parent / "data" / "junit-10.xsd"
WORKERS = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])

GREEN = """
import pytest

def test_a(sleeper):
    assert sleeper["pid"] > 0

def test_b(dependent, sleeper):
    assert dependent["sleeper_pid"] == sleeper["pid"]

def test_c(sleeper):
    assert sleeper["pid"] > 0

def test_plain():
    assert 1 + 1 == 2

@pytest.mark.skip(reason="skips are allowed and counted")
def test_skipped():
    pass
"""

FAILING = """
def test_ok(sleeper):
    assert sleeper["pid"] > 0

def test_bad(sleeper):
    print("the token is", sleeper["token"])
    assert sleeper["token"] == "what the test expected"

def test_fine(dependent):
    assert dependent["pid"] > 0
"""


# ---------------------------------------------------------------------- helpers


def schema():  # type: ignore[no-untyped-def]
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema validates junit.xml against the Jenkins XSD")
    return xmlschema.XMLSchema(str(XSD))


def junit(project: Project) -> ET.Element:
    path = project.path / "reports" / "junit.xml"
    schema().validate(str(path))  # raises XMLSchemaValidationError naming the element
    return ET.parse(path).getroot().find("testsuite")


def cases_by_name(suite: ET.Element) -> dict[str, ET.Element]:
    return {f"{tc.get('classname')}.{tc.get('name')}": tc for tc in suite.iter("testcase")}


def summary_counts(text: str) -> dict[str, int]:
    line = next(line for line in text.splitlines() if line.startswith("**Counts:**"))
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line.split("—")[0])}


def html_counts(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)<', text)}


def secrets_of(project: Project) -> list[str]:
    """Every secret the run generated. A torn-down environment forgets them once its reports are written,
    so they are read from the journal of generated secrets while it exists, else known by construction:
    the test components generate exactly one, ``SECRET``."""
    env = Environment.open(project.path / ".envfixtures", project.env().name)
    values = env.secret_values() or [SECRET]
    assert SECRET in values, "the sleeper records its secret: a redaction test needs something to redact"
    return values


def assert_no_secret(project: Project, result: pytest.RunResult) -> None:
    """No secret of the run in any file of reports/, nor in what the run printed."""
    values = secrets_of(project)
    files = [p for p in (project.path / "reports").rglob("*") if p.is_file()]
    assert files
    for value in values:
        for path in files:
            assert value not in path.read_text(errors="replace"), f"a secret in {path.name}"
        assert value not in result.stdout.str() and value not in result.stderr.str(), "a secret in the output"


# ---------------------------------------------------------------------- runs


@WORKERS
def test_green_run_writes_four_reports_that_agree(project: Project, workers: list[str]) -> None:
    project.pytester.makepyfile(test_x=GREEN)
    sha = project.sha = project.commit()  # promotable: a git checkout at the SHA it builds, clean
    result = project.run(*workers, "--junitxml=reports/junit.xml")
    result.assert_outcomes(passed=4, skipped=1)
    out = project.path / "reports"
    env_name = project.env().name
    assert f"{reports.PROMOTION} written for {sha}" in result.stdout.str()

    suite = junit(project)
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert (props["envfixtures.sha"], props["envfixtures.env"]) == (sha, env_name)
    junit_counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    assert junit_counts == {"tests": 5, "failures": 0, "errors": 0, "skipped": 1}

    record = json.loads((out / "promotion.json").read_text())
    md = (out / "summary.md").read_text()
    page = (out / "report.html").read_text()
    expected = dict(tests=5, passed=4, failed=0, error=0, skipped=1, xfailed=0, xpassed=0, deselected=0)
    assert record["counts"] == expected
    assert summary_counts(md) == expected
    assert html_counts(page) == expected
    for text in (md, page):
        assert sha in text and env_name in text
    assert (record["sha"], record["environment"], record["backend"]) == (sha, env_name, "local")
    assert record["versions"] == {"sleep": "600"}  # the sleeper's "versions" fact
    assert record["started"] <= record["ended"]
    assert record["inputs"] == {}, "the sleepers deploy no file of the checkout"
    assert "envfixtures: PASSED" in md and "may be promoted" in md

    # The build timeline: each component, its build and its teardown.
    table = [line for line in md.splitlines() if line.startswith("| ") and "component" not in line]
    rows = {line.split("|")[1].strip(): line for line in table}
    assert set(rows) == {"sleeper", "dependent"}
    assert all("| built |" in row for row in rows.values())
    assert_no_secret(project, result)


@pytest.mark.parametrize(
    ("workers", "seen_by"),
    [([], "serial"), (["-n", "2"], "xdist")],
    ids=["serial", "xdist"],
)
def test_failing_test_carries_its_evidence_and_blocks_promotion(
    project: Project, workers: list[str], seen_by: str
) -> None:
    project.pytester.makepyfile(test_x=FAILING)
    stale = project.path / "reports" / "promotion.json"
    stale.parent.mkdir()
    stale.write_text('{"sha": "an earlier run"}')
    result = project.run(*workers, "--junitxml=reports/junit.xml")
    result.assert_outcomes(passed=2, failed=1)
    assert not stale.exists(), "a failed run leaves no promotion record, not even an earlier one"
    assert "no promotion.json: not every test passed (1 failed)" in result.stdout.str()

    cases = cases_by_name(junit(project))
    bad = cases["test_x.test_bad"]
    failure = bad.find("failure")
    assert failure.get("message").startswith(f"AssertionError: assert '{MASK}' == 'what the test expected'")
    evidence = "".join(e.text or "" for e in bad.findall("system-out"))
    sleeper_pid = _facts(project, "sleeper")["pid"]
    assert "envfixtures evidence" in evidence
    assert f"== sleeper (built)\nsleeper pid {sleeper_pid} (alive), token {MASK}" in evidence
    assert "built sleeper in" in evidence  # the environment's last progress lines
    for name in ("test_x.test_ok", "test_x.test_fine"):
        assert cases[name].find("system-out") is None, "evidence belongs to the failing test only"

    md = (project.path / "reports" / "summary.md").read_text()
    failures = [line for line in md.splitlines() if line.startswith("- `")]
    masked = "\\*" * len(MASK)  # markdown-escaped
    assert failures == [f"- `test_x.py::test_bad` — AssertionError: assert '{masked}' == 'what the test expected'"]
    assert "envfixtures: FAILED" in md and "- not every test passed (1 failed)" in md
    page = (project.path / "reports" / "report.html").read_text()
    assert "test_x.py::test_bad" in page and f"sleeper pid {sleeper_pid}" in page
    assert f"token {MASK}" in result.stdout.str(), "the terminal shows the evidence too, redacted"
    assert_no_secret(project, result)


def test_failed_build_evidence_without_junitxml_goes_to_rootdir_reports(project: Project) -> None:
    project.pytester.makepyfile(test_x=FAILING)
    result = project.run("--env-set", "sleeper_fail=true")
    result.assert_outcomes(errors=3)
    out = project.path / "reports"
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "summary.md"]
    md = (out / "summary.md").read_text()
    assert "- `test_x.py::test_bad` — error in setup: " in md
    assert "| sleeper | failed: sleeper was told to fail (and its secret is " in md
    page = (out / "report.html").read_text()
    assert f"== sleeper (failed)\nsleeper was told to fail (and its secret is {MASK})" in page
    assert_no_secret(project, result)


def test_narrowed_selection_writes_no_promotion_and_says_why(project: Project) -> None:
    project.pytester.makepyfile(test_x=GREEN)
    result = project.run("-n", "2", "--junitxml=reports/junit.xml", "-k", "test_a or test_plain")
    result.assert_outcomes(passed=2)
    assert not (project.path / "reports" / "promotion.json").exists()
    why = "the selection was narrowed (-k 'test_a or test_plain'); 3 test(s) were deselected"
    assert f"no promotion.json: {why}" in result.stdout.str()
    md = (project.path / "reports" / "summary.md").read_text()
    assert "- the selection was narrowed (-k 'test\\_a or test\\_plain')" in md
    assert "- 3 test(s) were deselected" in md
    assert summary_counts(md)["deselected"] == 3


# ---------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, []),
        ({"keyword": "smoke"}, ["-k 'smoke'"]),
        ({"markexpr": "not fault"}, ["-m 'not fault'"]),
        ({"lf": True}, ["--lf"]),
        ({"deselect": ["tests/test_a.py::test_x"]}, ["--deselect tests/test_a.py::test_x"]),
    ],
)
def test_selection_narrowed_names_each_option(options: dict, expected: list[str]) -> None:
    assert promotion.selection_narrowed(types.SimpleNamespace(**options)) == expected


def test_versions_of_two_components_naming_one_thing_keep_both() -> None:
    def state(versions: dict) -> dict:
        return {"facts": {"values": {"versions": versions}, "secrets": []}}

    states = {"broker": state({"rabbitmq": "3.10.8", "erlang": "25"}), "apps": state({"rabbitmq": "3.11.0"})}
    assert promotion.versions(states) == {"erlang": "25", "broker.rabbitmq": "3.10.8", "apps.rabbitmq": "3.11.0"}


def test_redaction_keeps_the_failure_structure() -> None:
    """Redacting a real pytest failure keeps its crash message (JUnit's one-line message), masked."""
    try:
        assert SECRET == "x"
    except AssertionError:
        info = pytest.ExceptionInfo.from_current()
    sections = [("Captured stdout call", SECRET)]
    report = pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "failed", info.getrepr(), "call", sections)
    reports.redact_report(report, Redactor([SECRET]))
    assert SECRET not in str(report.longrepr) and MASK in str(report.longrepr)
    assert report.longrepr.reprcrash.message.startswith(f"AssertionError: assert '{MASK}' == 'x'")
    assert report.sections == [("Captured stdout call", MASK)]


def test_report_html_escapes_what_the_run_reports() -> None:
    """The page is rendered with autoescape on: a failure reason carrying markup shows as text, never as markup."""
    reason = "AssertionError: assert '<script>alert(1)</script>' == \"x & y\""
    failure = {"nodeid": "t.py::t[<b>]", "reason": reason, "when": "call", "longrepr": "E   <script>", "evidence": ""}
    view = {
        "sha": SHA,
        "environment": "env",
        "backend": "local",
        "dirty": False,
        "started": "2026-01-01T00:00:00+00:00",
        "ended": "2026-01-01T00:00:01+00:00",
        "seconds": 1.0,
        "counts": {"tests": 1, "failed": 1},
        "failures": [failure],
        "timeline": [],
        "teardown_problems": [],
        "promotable": False,
        "refusals": ["not every test passed (1 failed)"],
    }
    page = summary.html_page(view)
    assert "<script>" not in page and "<b>" not in page
    escaped = "AssertionError: assert &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39; == &#34;x &amp; y&#34;"
    assert f"<summary><code>t.py::t[&lt;b&gt;]</code> — {escaped}</summary>" in page
    assert "<pre>E   &lt;script&gt;</pre>" in page
    assert html_counts(page) == {"tests": 1, "failed": 1}
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</body></html>\n")


def _facts(project: Project, component: str) -> dict:
    return json.loads((project.env() / "components" / f"{component}.json").read_text())["facts"]["values"]
