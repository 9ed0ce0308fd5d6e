"""The run told to people: ``summary.md`` (the body of a PR comment) and ``report.html``, from one view.

Both are rendered from the dict :func:`envfixtures.pytest.reports.build_view` makes, so they cannot disagree.
The HTML is rendered from a Jinja2 template shipped with the package (``templates/report.html.j2``) with
autoescape on, so every value of the view is escaped; the page is one self-contained file (inline CSS).
pytest-html would add a plugin and knows nothing of the build timeline or the promotion verdict, which are
the point here.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jinja2

COUNT_KEYS = ("tests", "passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
HTML_TEMPLATE = "report.html.j2"  # in envfixtures/pytest/templates/, package data


def verdict(view: dict[str, Any]) -> str:
    counts = view["counts"]
    if counts.get("failed") or counts.get("error") or counts.get("xpassed") or view["teardown_problems"]:
        return "FAILED"
    return "PASSED" if counts.get("tests") else "NO TESTS"


def counts_line(view: dict[str, Any], sep: str = " · ") -> str:
    counts = view["counts"]
    keys = list(COUNT_KEYS) + [k for k in counts if k not in COUNT_KEYS]
    return sep.join(f"{k} {counts.get(k, 0)}" for k in keys)


def _seconds(value: Any) -> str:
    return "—" if value is None else f"{value:.1f}s"


def _start(value: Any) -> str:
    return "—" if value is None else f"+{value:.1f}s"


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown(view: dict[str, Any]) -> str:
    """summary.md: verdict, counts, each failure in one line, the build timeline, the promotion verdict."""
    out = [
        f"## envfixtures: {verdict(view)} — `{view['sha'][:12]}` on `{view['environment']}` ({view['backend']})",
        "",
        f"**Counts:** {counts_line(view)} — in {view['seconds']:.1f}s",
        "",
    ]
    if view["failures"]:
        out += ["### Failures", ""]
        out += [f"- `{f['nodeid']}` — {_md(f['reason'])}" for f in view["failures"]]
        out.append("")
    out += ["### Build timeline", ""]
    if view["timeline"]:
        out += ["| component | result | started | build | teardown |", "|---|---|---|---|---|"]
        for row in view["timeline"]:
            result = row["status"] + (f": {_md(row['error'])}" if row["error"] else "")
            out.append(
                f"| {row['component']} | {result} | {_start(row['start'])} | {_seconds(row['seconds'])} "
                f"| {_seconds(row['teardown_seconds'])} |"
            )
    else:
        out.append("No component was built.")
    out.append("")
    if view["teardown_problems"]:
        out += ["### Teardown problems", ""] + [f"- {_md(p)}" for p in view["teardown_problems"]] + [""]
    out += ["### Promotion", ""]
    if view["promotable"]:
        out.append(f"`promotion.json` written: `{view['sha']}` may be promoted.")
    else:
        out.append("No `promotion.json`:")
        out += [f"- {_md(r)}" for r in view["refusals"]]
    out += [
        "",
        f"SHA `{view['sha']}`{' (dirty tree)' if view['dirty'] else ''} · environment `{view['environment']}` · "
        f"backend `{view['backend']}` · {view['started']} → {view['ended']}",
        "",
    ]
    return "\n".join(out)


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("envfixtures.pytest", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=True),
        undefined=jinja2.StrictUndefined,  # a key missing from the view fails the run, as a KeyError would
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["seconds"] = _seconds
    env.filters["start"] = _start
    return env


def html_page(view: dict[str, Any]) -> str:
    """report.html: the same content as summary.md, plus each failure's traceback and evidence."""
    return _templates().get_template(HTML_TEMPLATE).render(view=view, word=verdict(view))
