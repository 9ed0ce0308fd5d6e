"""The broken-template corpus: each case of ``manifest.yaml`` generated from the real template it patches.

Run as a script to write every case file into a directory for reading::

    python3 tests_unit/broken/corpus.py /tmp/broken
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MANIFEST = HERE / "manifest.yaml"


@dataclass(frozen=True)
class Case:
    file: str
    template: str
    mistake: str
    patch: list[dict[str, Any]]
    rule: str
    place: Any


def cases(manifest: Path = MANIFEST) -> list[Case]:
    data = yaml.safe_load(manifest.read_text())
    return [Case(file=name, **spec) for name, spec in data.items()]


def source(template: str, root: Path = ROOT) -> Path:
    """The real template a case is a copy of."""
    base = root / "templates"
    if template == "cloudformation":
        return base / "cloudformation" / "environment.yaml"
    if template == "rabbitmq":
        return base / "rabbitmq" / "definitions.json"
    if template == "marathon":
        found = sorted((base / "marathon").glob("*.json"))
        if not found:
            raise AssertionError(f"no Marathon templates in {base / 'marathon'}")
        return found[0]
    raise AssertionError(f"unknown template kind {template!r}")


def materialize(case: Case, dest: Path, root: Path = ROOT) -> Path:
    """Write the case's file under ``dest`` (Marathon cases in a directory of their own) and return it."""
    text = source(case.template, root).read_text()
    doc: Any = None
    for step in case.patch:
        if "replace" in step:
            if doc is not None:
                text, doc = _dump(doc), None
            text = _replace(case, text, step)
        else:
            if doc is None:
                doc = json.loads(text)
            _json_patch(case, doc, step)
    if doc is not None:
        text = _dump(doc)
    folder = dest / Path(case.file).stem if case.template == "marathon" else dest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / case.file
    path.write_text(text)
    return path


def expected_line(case: Case, path: Path) -> int | None:
    """The 1-based line a ``{line_of: ...}`` place designates in the case file (None for a JSON path)."""
    if not isinstance(case.place, dict):
        return None
    text = path.read_text()
    start = 0
    if case.place.get("after"):
        start = text.index(case.place["after"])
    needle = case.place["line_of"]
    at = text.rindex(needle) if case.place.get("last") else text.index(needle, start)
    return text.count("\n", 0, at) + 1


def _replace(case: Case, text: str, step: dict[str, Any]) -> str:
    old, new, count = step["replace"], step["with"], step.get("count")
    found = text.count(old)
    if count is None and found != 1:
        raise AssertionError(
            f"{case.file}: patch anchor found {found} times (want once) in the real template; update the case: {old!r}"
        )
    if found == 0:
        raise AssertionError(f"{case.file}: patch anchor not found in the real template; update the case: {old!r}")
    if count == -1:  # the last occurrence
        head, _, tail = text.rpartition(old)
        return head + new + tail
    return text.replace(old, new, count or 1)


def _json_patch(case: Case, doc: Any, step: dict[str, Any]) -> None:
    if "set" in step:
        parent, key = _parent(case, doc, step["set"])
        parent[key] = copy.deepcopy(step["value"])
    elif "delete" in step:
        parent, key = _parent(case, doc, step["delete"])
        del parent[key]
    elif "copy" in step:
        src_parent, src_key = _parent(case, doc, step["copy"]["from"])
        parent, key = _parent(case, doc, step["copy"]["to"])
        parent[key] = copy.deepcopy(src_parent[src_key])
    else:
        raise AssertionError(f"{case.file}: unknown patch step {step}")


def _parent(case: Case, doc: Any, path: list[Any]) -> tuple[Any, Any]:
    node = doc
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise AssertionError(f"{case.file}: path {path} not in the real template; update the case") from None
    return node, path[-1]


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2) + "\n"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "broken-corpus")
    for c in cases():
        print(materialize(c, out))
