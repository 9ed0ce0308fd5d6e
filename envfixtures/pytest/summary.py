"""The run told to people: ``summary.md`` (the body of a PR comment) and ``report.html``, from one view.

Both are rendered from the dict :func:`envfixtures.pytest.reports.build_view` makes, so they cannot disagree.
The HTML is written by hand (html.escape, inline CSS, one self-contained file): pytest-html would add
a dependency and knows nothing of the build timeline or the promotion verdict, which are the point here.
"""

from __future__ import annotations

import html
import re
from typing import Any

COUNT_KEYS = ("tests", "passed", "failed", "error", "skipped", "xfailed", "xpassed", "deselected")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


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


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
h1 .PASSED{color:#1a7f37}h1 .FAILED{color:#cf222e}h1 .NO{color:#9a6700}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;white-space:pre-wrap}
code{background:#f6f8fa;padding:0 .2em}.meta{color:#555}
"""


def html_page(view: dict[str, Any]) -> str:
    """report.html: the same content as summary.md, plus each failure's traceback and evidence."""
    e = html.escape
    word = verdict(view)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>envfixtures {e(word)} {e(view['sha'][:12])}</title><style>{_CSS}</style></head><body>",
        f'<h1>envfixtures: <span class="{e(word.split()[0])}">{e(word)}</span></h1>',
        f'<p class="meta">SHA <code id="sha">{e(view["sha"])}</code>{" (dirty tree)" if view["dirty"] else ""} · '
        f'environment <code id="environment">{e(view["environment"])}</code> · '
        f"backend <code>{e(view['backend'])}</code>"
        f" · {e(view['started'])} → {e(view['ended'])} ({view['seconds']:.1f}s)</p>",
        '<h2>Counts</h2><table id="counts"><tr>'
        + "".join(f"<th>{e(k)}</th>" for k in view["counts"])
        + "</tr><tr>"
        + "".join(f'<td data-count="{e(k)}">{v}</td>' for k, v in view["counts"].items())
        + "</tr></table>",
    ]
    if view["failures"]:
        parts.append("<h2>Failures</h2>")
        for f in view["failures"]:
            parts.append(
                f'<details class="failure"><summary><code>{e(f["nodeid"])}</code> — {e(f["reason"])}</summary>'
                f"<h3>Traceback ({e(f['when'])})</h3><pre>{e(f['longrepr'])}</pre>"
                + (f"<h3>Evidence</h3><pre>{e(f['evidence'])}</pre>" if f["evidence"] else "")
                + "</details>"
            )
    parts.append("<h2>Build timeline</h2>")
    if view["timeline"]:
        parts.append("<table><tr><th>component</th><th>result</th><th>started</th><th>build</th><th>teardown</th></tr>")
        for row in view["timeline"]:
            result = row["status"] + (f": {row['error']}" if row["error"] else "")
            parts.append(
                f"<tr><td>{e(row['component'])}</td><td>{e(result)}</td><td>{_start(row['start'])}</td>"
                f"<td>{_seconds(row['seconds'])}</td><td>{_seconds(row['teardown_seconds'])}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>No component was built.</p>")
    if view["teardown_problems"]:
        problems = "".join(f"<li>{e(p)}</li>" for p in view["teardown_problems"])
        parts.append(f"<h2>Teardown problems</h2><ul>{problems}</ul>")
    parts.append("<h2>Promotion</h2>")
    if view["promotable"]:
        parts.append(f'<p id="promotion">promotion.json written: <code>{e(view["sha"])}</code> may be promoted.</p>')
    else:
        refusals = "".join(f"<li>{e(r)}</li>" for r in view["refusals"])
        parts.append(f'<p id="promotion">No promotion.json:</p><ul>{refusals}</ul>')
    parts.append("</body></html>\n")
    return "\n".join(parts)
