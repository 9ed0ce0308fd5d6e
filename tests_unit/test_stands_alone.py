"""The project stands alone: nothing in the repository reads or cites a path outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Written in pieces so that this file does not match itself.
OUTSIDE = re.compile(
    "|".join(
        [
            re.escape(".." + "/shared"),
            re.escape("/work" + "/"),
            re.escape("shared" + "/notes"),
            re.escape("shared" + "/reference"),
            re.escape("notes" + "/moto-fidelity"),
            re.escape("notes" + "/local-services"),
        ]
    )
)


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    )
    hits = []
    for name in filter(None, files):
        path = ROOT / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not hits, "paths outside the repository:\n" + "\n".join(hits)


def test_the_marathon_reference_ships_with_its_licence_and_provenance() -> None:
    ref = ROOT / "reference" / "marathon"
    assert (ref / "README.md").read_text().count("Apache-2.0") >= 1
    assert sorted(p.name for p in ref.glob("LICENSE-*")) == [
        "LICENSE-go-marathon-Apache-2.0.txt",
        "LICENSE-marathon-Apache-2.0.txt",
        "LICENSE-marathon-lb-Apache-2.0.txt",
    ]
