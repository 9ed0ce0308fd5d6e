"""What a run reports, and where: JUnit suite properties and evidence, redaction of every test report,
the run's results, and the files of ``reports/`` (summary.md, report.html, promotion.json).

Reports go to the directory of ``--junitxml`` (``reports/`` in the gate), else ``<rootdir>/reports``.
Every file written here goes through the environment's redactor.

Evidence reaches the failing test's JUnit entry as a ``<system-out>`` element — what Jenkins' JUnit
plugin shows as the test's "Standard Output". It is collected in the process that ran the test
(:mod:`envfixtures.pytest.evidence`), travels in the report's sections (xdist serialises them), and is
written into the test's JUnit entry by the controller. Testcase ``<properties>`` (``record_property``)
would not do: they are invalid in xunit2.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from envfixtures.core.redaction import RedactingFormatter, Redactor
from envfixtures.pytest import evidence, promotion, summary

if TYPE_CHECKING:
    from envfixtures.pytest.run import Run

log = logging.getLogger(__name__)

SUMMARY, HTML, PROMOTION = "summary.md", "report.html", "promotion.json"
REASON_CHARS = 400
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def redact_report(report: pytest.TestReport | pytest.CollectReport, redactor: Redactor) -> None:
    """Mask secrets in a test report's failure text, captured sections and user properties, in place.

    The failure's structure is kept (pytest's repr objects are dataclasses of strings), so the JUnit
    ``message`` stays the one-line crash message; a repr of another kind becomes its redacted text.
    """
    if not redactor:
        return
    if report.longrepr is not None:
        text = str(report.longrepr)
        if redactor.finds(text):
            try:
                report.longrepr = _redact_structure(report.longrepr, redactor)
            except (TypeError, AttributeError, dataclasses.FrozenInstanceError):
                report.longrepr = redactor.redact(text)
            if redactor.finds(str(report.longrepr)):  # a secret cut between two of its strings
                report.longrepr = redactor.redact(str(report.longrepr))
    report.sections = [(title, redactor.redact(content)) for title, content in report.sections]
    properties = getattr(report, "user_properties", None)
    if properties:  # record_property: JUnit <property> elements
        report.user_properties = [(name, _redact_value(value, redactor)) for name, value in properties]


def redact_warning(warning: warnings.WarningMessage, redactor: Redactor) -> None:
    """Mask secrets in a warning's message, in place, before the terminal's warnings summary shows it."""
    text = str(warning.message)
    if redactor and redactor.finds(text):
        warning.message = Warning(redactor.redact(text))  # its category (``warning.category``) stays as it was


def _redact_value(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str) or not isinstance(value, (int, float, bool, type(None))):
        text = str(value)
        return redactor.redact(text) if redactor.finds(text) else value
    return value


def _redact_structure(value: Any, redactor: Redactor) -> Any:
    """Every string inside ``value`` (strings, lists, tuples, dicts, dataclasses) redacted; dataclasses in place."""
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, list):
        return [_redact_structure(v, redactor) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact_structure(v, redactor) for v in value)
    if isinstance(value, dict):
        return {k: _redact_structure(v, redactor) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            setattr(value, f.name, _redact_structure(getattr(value, f.name), redactor))
        return value
    if value is None or isinstance(value, (int, float, bool)):
        return value
    raise TypeError(f"cannot redact a {type(value).__name__} in place")


# ---------------------------------------------------------------------- evidence


def attach_evidence(item: pytest.Item, report: pytest.TestReport, run: "Run") -> None:
    """Add the evidence of a test that failed in setup or call to its report (in the process that ran it)."""
    if not report.failed or report.when not in ("setup", "call"):
        return
    text = evidence.collect(run.env, item.fixturenames)
    if text:
        report.sections.append((evidence.SECTION, text))


def evidence_of(report: pytest.TestReport) -> str:
    return "\n".join(content for title, content in report.sections if title == evidence.SECTION)


# ---------------------------------------------------------------------- results


@dataclass
class Failure:
    nodeid: str
    when: str
    reason: str
    evidence: str
    longrepr: str


@dataclass
class Results:
    """The outcome of every test as the controller saw it, and how the selection was made."""

    narrowed: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    counts: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    nodeids: set[str] = field(default_factory=set)
    deselected: int = 0
    interrupted: bool = False

    def add(self, report: pytest.TestReport, category: str) -> None:
        """Count a setup/call/teardown report under the terminal's category ("" for an uneventful phase)."""
        self.nodeids.add(report.nodeid)
        if category:
            self.counts[category] += 1
        if report.failed:
            reason, text = failure_reason(report), str(report.longrepr)
            self.failures.append(Failure(report.nodeid, report.when or "", reason, evidence_of(report), text))

    def add_collect_error(self, report: pytest.CollectReport) -> None:
        self.counts["error"] += 1
        self.failures.append(Failure(report.nodeid, "collect", failure_reason(report), "", str(report.longrepr)))

    @property
    def ran(self) -> int:
        return len(self.nodeids)

    def counts_for_people(self) -> dict[str, int]:
        counts = {"tests": self.ran}
        counts.update({k: self.counts.get(k, 0) for k in OUTCOMES})
        counts.update({k: v for k, v in sorted(self.counts.items()) if k not in counts})
        counts["deselected"] = self.deselected
        return counts

    @property
    def started_iso(self) -> str:
        return _iso(self.started)

    @property
    def ended_iso(self) -> str:
        return _iso(self.ended or time.time())


def failure_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """One line saying why a test failed: the crash message's first paragraph (its lines joined with `` | ``),
    else the first ``E`` line, else the last line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = [line for line in str(report.longrepr or "").splitlines() if line.strip()]
        errors = [line[1:].strip() for line in lines if line.startswith("E ")]
        text = errors[0] if errors else (lines[-1] if lines else "no detail")
    # The first paragraph, its lines joined: a failed task's message carries its stderr tail on the next lines.
    paragraph = []
    for line in text.strip().splitlines():
        if not line.strip():
            break
        paragraph.append(" ".join(line.split()))
    reason = " | ".join(paragraph) or "no detail"
    if report.when in ("setup", "teardown"):
        reason = f"error in {report.when}: {reason}"
    return reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 3] + "..."


# ---------------------------------------------------------------------- the files


def junit_path(config: pytest.Config) -> Path | None:
    """The file of ``--junitxml`` (as pytest's junitxml plugin resolves it), or None."""
    value = config.option.xmlpath
    if not value or hasattr(config, "workerinput"):
        return None
    return Path(os.path.abspath(os.path.expanduser(os.path.expandvars(value))))


def reports_dir(config: pytest.Config) -> Path:
    """The directory of the JUnit file, or ``<rootdir>/reports`` without ``--junitxml``."""
    path = junit_path(config)
    return path.parent if path is not None else Path(config.rootpath) / "reports"


def complete_junit(config: pytest.Config, run: "Run", results: "Results", redactor: Redactor) -> None:
    """Add to the JUnit file pytest wrote: the SHA, environment and backend as suite properties, and each failing
    test's evidence as its ``<system-out>``. Done on the file itself, after pytest's junitxml plugin wrote it, so
    nothing private of pytest is used."""
    path = junit_path(config)
    if path is None or not path.exists():
        return
    import xml.etree.ElementTree as ET

    tree = ET.parse(path)
    root = tree.getroot()
    _redact_tree(root, redactor)  # every text and attribute (record_testsuite_property too)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        tree.write(path, encoding="utf-8", xml_declaration=True)
        return
    env = run.env
    properties = suite.find("properties")
    if properties is None:
        properties = ET.Element("properties")
        suite.insert(0, properties)
    for name, value in (
        ("envfixtures.sha", env.sha),
        ("envfixtures.env", env.name),
        ("envfixtures.backend", env.backend),
        ("envfixtures.dirty", str(bool((env.description or {}).get("dirty"))).lower()),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    header = f" {evidence.SECTION} ".center(80, "-")
    done: set[str] = set()
    for failure in results.failures:
        if not failure.evidence or failure.nodeid in done:
            continue
        case = cases.get(_junit_case(failure.nodeid, config.option.junitprefix))
        if case is not None:
            out = ET.SubElement(case, "system-out")
            out.text = _XML_ILLEGAL.sub("?", redactor.redact(f"{header}\n{failure.evidence}\n"))
            done.add(failure.nodeid)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _redact_tree(root: Any, redactor: Redactor) -> None:
    if not redactor:
        return
    for element in root.iter():
        if element.text:
            element.text = redactor.redact(element.text)
        if element.tail:
            element.tail = redactor.redact(element.tail)
        for name, value in list(element.attrib.items()):
            element.set(name, redactor.redact(value))


#: Characters XML 1.0 cannot carry (pytest's junitxml escapes them too).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _junit_case(nodeid: str, prefix: str | None) -> tuple[str, str]:
    """The (classname, name) pytest's junitxml gives a test: the documented mangling of its node id."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    classname = ".".join(names[:-1])
    return (f"{prefix}.{classname}" if prefix else classname), names[-1]


def forget_promotion(config: pytest.Config) -> None:
    """Remove an earlier run's promotion record: only this run may say whether this SHA is promotable."""
    (reports_dir(config) / PROMOTION).unlink(missing_ok=True)


def write(config: pytest.Config, run: "Run", results: Results, exitstatus: int) -> str:
    """Write summary.md, report.html and (when promotable) promotion.json; returns a line for the terminal."""
    results.ended = results.ended or time.time()
    env = run.env
    refusals = promotion.refusals(
        results,
        env,
        exitstatus=int(exitstatus),
        provenance=run.provenance(),
        teardown_problems=run.teardown_problems,
    )
    redactor = env.redactor()
    # Redacted before rendering as well as after: Markdown and HTML escape the text they show.
    view = _redact_structure(build_view(run, results, refusals), redactor)
    complete_junit(config, run, results, redactor)
    out = reports_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / SUMMARY, summary.markdown(view), redactor)
    _write(out / HTML, summary.html_page(view), redactor)
    record_path = out / PROMOTION
    if refusals:
        record_path.unlink(missing_ok=True)
        return f"envfixtures: reports in {out}; no {PROMOTION}: " + "; ".join(refusals)
    _write(record_path, json.dumps(promotion.record(results, env), indent=2, sort_keys=True) + "\n", redactor)
    return f"envfixtures: reports in {out}; {PROMOTION} written for {env.sha}"


def build_view(run: "Run", results: Results, refusals: list[str]) -> dict[str, Any]:
    """Everything summary.md and report.html show, in one place, so that they cannot disagree."""
    env = run.env
    states = env.states() if env.exists else {}
    return {
        "sha": env.sha,
        "environment": env.name,
        "backend": env.backend,
        "dirty": bool((env.description or {}).get("dirty")),
        "started": results.started_iso,
        "ended": results.ended_iso,
        "seconds": round((results.ended or time.time()) - results.started, 1),
        "counts": results.counts_for_people(),
        "failures": [f.__dict__ for f in results.failures],
        "timeline": timeline(states, results.started),
        "teardown_problems": list(run.teardown_problems),
        "promotable": not refusals,
        "refusals": refusals,
    }


def timeline(states: dict[str, dict[str, Any]], origin: float) -> list[dict[str, Any]]:
    """Each component's build: when it started (seconds after the run started), how long it took, its teardown."""
    rows = []
    for name, state in sorted(states.items(), key=lambda kv: (kv[1].get("started") or kv[1].get("ended") or 0, kv[0])):
        started, ended = state.get("started"), state.get("ended")
        rows.append(
            {
                "component": name,
                "status": _build_outcome(state),
                "start": round(started - origin, 1) if started else None,
                "seconds": state.get("seconds", round(ended - started, 1) if started and ended else None),
                "teardown_seconds": state.get("teardown_seconds"),
                "error": state.get("error"),
            }
        )
    return rows


def _build_outcome(state: dict[str, Any]) -> str:
    """built / failed / building (interrupted) — what the build did, not that everything is torn down by now."""
    if state.get("seconds") is not None:
        return "built"
    if state.get("error"):
        return "failed"
    return str(state.get("status", "?"))


def redact_live_output(config: pytest.Config, source: Callable[[], Redactor]) -> None:
    """Redact what pytest's live logging (``log_cli``) and ``--log-file`` write, as they write it.

    Their formatters are wrapped (the records are left alone: ``caplog`` sees what was logged; the captured log
    sections are redacted with the report).
    """
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    for name in ("log_cli_handler", "log_file_handler"):
        handler = getattr(plugin, name, None)
        if isinstance(handler, logging.Handler):
            RedactingFormatter.install(handler, source)


def _write(path: Path, text: str, redactor: Redactor) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(redactor.redact(text))
    os.replace(tmp, path)


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")
