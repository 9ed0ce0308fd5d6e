"""Per-phase timings of the gate, as medians over cold runs, then the component benchmarks.

Each run builds a fresh environment (cold), verifies it and tears it down, exactly as
``tox -e build-and-verify`` does; the phases are read from the environment's state afterwards:
each component's build, the verification (wall time minus builds and teardown, i.e. the tests),
and the teardown. Results: bench/results/gate.json and a table on stdout.

    python bench/run.py [--runs 3] [--skip-components] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COMPONENT_BENCHES = [("bench_broker.py", []), ("bench_marathon.py", []), ("bench_api.py", ["--up"])]


def one_gate_run(index: int, pytest_args: list[str]) -> dict:
    junit = RESULTS / f"gate-run-{index}.xml"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests_infra",
            "tests_api",
            "-n",
            "2",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            *pytest_args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    env_dir = ROOT / ".envfixtures" / "envs" / props["envfixtures.env"]
    builds = {}
    for path in sorted((env_dir / "components").glob("*.json")):
        state = json.loads(path.read_text())
        builds[state["name"]] = {"build": state.get("seconds"), "teardown": state.get("teardown_seconds")}
    meta = json.loads((env_dir / "env.json").read_text())
    teardown = meta.get("teardown_seconds") or 0.0
    # Builds overlap (independent components build concurrently): the build phase is first start to last end.
    starts = [json.loads(p.read_text()).get("started") for p in (env_dir / "components").glob("*.json")]
    ends = [json.loads(p.read_text()).get("ended") for p in (env_dir / "components").glob("*.json")]
    build_span = (max(e for e in ends if e) - min(s for s in starts if s)) if starts and ends else 0.0
    return {
        "exit": proc.returncode,
        "result": tail[0] if tail else "",
        "wall": wall,
        "build_span": build_span,
        "verification": wall - build_span - teardown,
        "teardown": teardown,
        "components": builds,
    }


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-components", action="store_true", help="only the gate's phases")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = [one_gate_run(i, args.pytest_args) for i in range(args.runs)]
    names = sorted({n for r in runs for n in r["components"]})
    summary = {
        "runs": args.runs,
        "exit_codes": [r["exit"] for r in runs],
        "wall": median([r["wall"] for r in runs]),
        "build_span": median([r["build_span"] for r in runs]),
        "verification": median([r["verification"] for r in runs]),
        "teardown": median([r["teardown"] for r in runs]),
        "components": {
            n: {
                "build": median([r["components"].get(n, {}).get("build") for r in runs]),
                "teardown": median([r["components"].get(n, {}).get("teardown") for r in runs]),
            }
            for n in names
        },
        "raw": runs,
    }
    (RESULTS / "gate.json").write_text(json.dumps(summary, indent=2))
    print(f"gate, medians of {args.runs} cold runs (exit codes {summary['exit_codes']})")
    print(f"  {'phase':<28}{'seconds':>9}")
    for label, key in (
        ("whole run (wall)", "wall"),
        ("building (first start..last end)", "build_span"),
        ("verification", "verification"),
        ("teardown", "teardown"),
    ):
        print(f"  {label:<28}{summary[key]:>9.2f}")
    for n in names:
        c = summary["components"][n]
        print(f"  build {n:<22}{c['build']:>9.2f}   (its teardown {c['teardown']:.2f})")
    status = 0 if all(code == 0 for code in summary["exit_codes"]) else 1
    if not args.skip_components:
        for bench, bench_args in COMPONENT_BENCHES:
            print(f"\n== {bench}", flush=True)
            status |= subprocess.run([sys.executable, str(ROOT / "bench" / bench), *bench_args], cwd=ROOT).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
