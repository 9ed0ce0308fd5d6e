"""A failing test's evidence: what each component it used says about itself, and the env's last progress lines.

Collected in the process that ran the test (an xdist worker or the single process), right after the
failure, while the environment is still up; the text travels with the test's report (see
:mod:`envfixtures.pytest.reports`) and is redacted here, before it leaves the process.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from envfixtures.core.environment import BUILT
from envfixtures.core.facts import Facts

if TYPE_CHECKING:
    from envfixtures.core.environment import Environment

log = logging.getLogger(__name__)

#: The title of the report section that carries the evidence (terminal, JUnit system-out, summary).
SECTION = "envfixtures evidence"
PROGRESS_LINES = 10
MAX_CHARS = 20_000  # per component: enough for a stack's events or a task's output, not a whole log


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a text file (none if it does not exist)."""
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except OSError:
        return []


def components_used(env: "Environment", fixturenames: Iterable[str]) -> list[str]:
    """The components of ``env`` among a test's fixtures, in the order the test requested them."""
    return [name for name in dict.fromkeys(fixturenames) if name in env.components]


def collect(env: "Environment", fixturenames: Iterable[str]) -> str:
    """The evidence for a failing test that requested ``fixturenames``, redacted; "" if it used no component."""
    used = components_used(env, fixturenames)
    if not used:
        return ""
    parts = [_component(env, name) for name in used]
    progress = tail(env.dir / "logs" / "progress.log", PROGRESS_LINES)
    if progress:
        parts.append("== environment progress (last lines)\n" + "\n".join(progress))
    return env.redactor().redact("\n\n".join(parts))


def _component(env: "Environment", name: str) -> str:
    state = env.component_state(name) or {}
    status = state.get("status", "not built")
    header = f"== {name} ({status})"
    if status != BUILT:
        error = state.get("detail") or state.get("error")
        return header + (f"\n{error}" if error else "")
    try:
        facts = Facts.from_json(state.get("facts") or {})
        text = env.component_class(name)().diagnose(env.context(name), facts) or "(no diagnosis)"
    except Exception as exc:  # noqa: BLE001 - a diagnosis that fails must not hide the test's own failure
        log.warning("diagnose of %s failed: %s", name, env.redactor().redact(str(exc)))
        text = f"(diagnose failed: {type(exc).__name__}: {exc})"
    if len(text) > MAX_CHARS:
        text = "... (cut)\n" + text[-MAX_CHARS:]
    return f"{header}\n{text}"
