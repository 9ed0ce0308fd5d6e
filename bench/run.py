"""The issue-17 targets, each a median of ``--runs`` runs in the same go, with its target and whether it is met.

    python bench/run.py [--runs 3] [--only ROW,...] [--components]     (make bench = tox -e bench)

1. cold ``make verify`` (``.tox/build-and-verify`` removed first: the tox env created anew), ``--runs`` times;
2. warm ``make verify`` (static stage + gate, end to end), ``--runs`` times; from each run of 1 and 2, its
   environment's state: build wall (first component start to last end) ÷ its slowest component, the teardown
   (until its last process has exited: the teardown's own backstop looks for the environment's marker, and this
   bench looks again after ``make`` returned), and the slowest tests (its JUnit);
3. a kept environment (``pytest tests_infra tests_api -n 2 --env-keep``), then ``--env-reuse NAME`` runs with
   ``-n 2`` and ``-n 0``, alternating: to the first test, the verification alone, and ``-n 2`` ÷ ``-n 0``;
   the environment is torn down at the end (``envfixtures down NAME``) whatever happened;
4. ``bench_erlang.py`` (3-node cluster ÷ one node, the driver's choices against the old driver's) and
   ``bench_peers.py`` (database and broker start ÷ pytest-postgresql's and pytest-rabbitmq's);
5. the gate's static stage alone (the first command of tox.ini's ``[testenv:build-and-verify]``, in that tox env's
   interpreter when it exists, else this one), ``--runs`` times: wall and CPU (user + system of the whole process
   tree); with ``--static-before``, alternating with the static stage as it was before issue 17 (the unit suite,
   ``pytest tests_unit -q -n 2 -m "not integration"``), in the same go.

``make verify`` and tox run as subprocesses of the project root with the bench's own tox variables and virtualenv
taken out of their environment (this runs inside ``tox -e bench``). Results: ``bench/results/targets.json``
(everything, raw runs included) and the table on stdout (markdown). ``--components`` also runs the older
component benches (``bench_broker.py``, ``bench_marathon.py``, ``bench_api.py --up``; about 10 minutes).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from envfixtures.core.processes import find_marked  # noqa: E402

COMPONENT_BENCHES = [
    ("bench_broker.py", []),
    ("bench_marathon.py", []),
    ("bench_api.py", ["--up"]),
    ("bench_containers.py", []),
]
ROWS = ("cold", "warm", "kept", "erlang", "peers", "static")
SUITES = ["tests_infra", "tests_api"]
#: the gate's static stage before issue 17: the whole unit suite (``--static-before`` measures it beside today's)
STATIC_BEFORE = ["pytest", "tests_unit", "-q", "-n", "2", "-m", "not integration"]
#: "a static stage of a few seconds" (issue 17), as a number
STATIC_TARGET = 5.0


# --- running things ------------------------------------------------------------------------------------------


def project_environ() -> dict[str, str]:
    """This process's environment without what ``tox -e bench`` put in it (its virtualenv on PATH, TOX_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOX_") and k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    bench_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bench_bin)
    return env


def run(argv: list[str], *, log: Path, env: dict[str, str] | None = None, timeout: float = 1200) -> tuple[int, float]:
    """Run ``argv`` in the project root, its output to ``log``; (exit code, wall seconds)."""
    t0 = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            argv, cwd=ROOT, env=env or project_environ(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    return proc.returncode, time.monotonic() - t0


def run_cpu(argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> tuple[int, float, float]:
    """:func:`run`, and the CPU seconds (user + system) of ``argv``'s whole process tree: the children it waited for
    are counted in its own, as it is in ours (a shared machine's load stretches the wall, far less the CPU)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, wall = run(argv, log=log, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return code, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(values: list[float | None]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


# --- one gate's facts -----------------------------------------------------------------------------------------


def junit_facts(junit: Path) -> dict:
    """The environment's name and every test's time, from a JUnit report."""
    root = ET.parse(junit).getroot()
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    tests = {
        f"{c.get('classname')}::{c.get('name')}": float(c.get("time") or 0)
        for c in root.iter("testcase")
        if c.find("skipped") is None
    }
    return {"env": props.get("envfixtures.env"), "tests": tests}


def env_phases(name: str) -> dict:
    """Build wall, each component's build, the teardown, and whatever of it still runs, from its state files."""
    env_dir = ROOT / ".envfixtures" / "envs" / name
    states = [json.loads(p.read_text()) for p in sorted((env_dir / "components").glob("*.json"))]
    meta = json.loads((env_dir / "env.json").read_text())
    starts = [s["started"] for s in states if s.get("started")]
    ends = [s["ended"] for s in states if s.get("ended")]
    builds = {s["name"]: s.get("seconds") for s in states}
    slowest = max((v for v in builds.values() if v), default=None)
    span = max(ends) - min(starts) if starts and ends else None
    return {
        "env": name,
        "status": meta.get("status"),
        "build_wall": span,
        "builds": builds,
        "slowest_component": max(builds, key=lambda n: builds[n] or 0) if builds else None,
        "build_wall_over_slowest": span / slowest if span and slowest else None,
        "teardown": meta.get("teardown_seconds"),
        "teardowns": {st["name"]: st.get("teardown_seconds") for st in states},
        "left_running": find_marked(name),
    }


def make_verify(kind: str, index: int) -> dict:
    if kind == "cold":
        shutil.rmtree(ROOT / ".tox" / "build-and-verify", ignore_errors=True)
    junit = ROOT / "reports" / "junit.xml"
    junit.unlink(missing_ok=True)
    code, wall = run(["make", "verify"], log=RESULTS / f"verify-{kind}-{index}.log")
    result: dict = {"exit": code, "wall": wall}
    # tox's own account: "build-and-verify: OK (83.69=setup[0.90]+cmd[30.24,52.55] seconds)"
    pattern = r"build-and-verify: .*\(([\d.]+)=setup\[([\d.]+)\]\+cmd\[([\d.]+),([\d.]+)\]"
    if found := re.search(pattern, (RESULTS / f"verify-{kind}-{index}.log").read_text(errors="replace")):
        result.update(tox_setup=float(found[2]), static_stage=float(found[3]), gate=float(found[4]))
    if junit.exists():
        shutil.copy(junit, RESULTS / f"verify-{kind}-{index}.xml")
        facts = junit_facts(junit)
        result["tests"] = facts["tests"]
        if facts["env"]:
            result.update(env_phases(facts["env"]))
    print(f"  {kind} make verify #{index + 1}: exit {code}, {wall:.1f}s", flush=True)
    return result


# --- a kept environment ---------------------------------------------------------------------------------------


def pytest_argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *SUITES, "-q", "-p", "no:cacheprovider", "-p", "bench_first_test", *extra]


def reuse_run(name: str, workers: int, index: int) -> dict:
    stamp = RESULTS / f"first-test-{workers}-{index}"
    stamp.unlink(missing_ok=True)
    env = {**project_environ(), "PYTHONPATH": str(BENCH), "BENCH_FIRST_TEST": str(stamp)}
    t0 = time.time()
    code, wall = run(
        pytest_argv("-n", str(workers), "--env-reuse", name, f"--junitxml={RESULTS / f'reuse-{workers}-{index}.xml'}"),
        log=RESULTS / f"reuse-{workers}-{index}.log",
        env=env,
    )
    first = float(stamp.read_text()) - t0 if stamp.exists() else None
    print(f"  --env-reuse -n {workers} #{index + 1}: exit {code}, {wall:.1f}s (first test at {first}s)", flush=True)
    return {"exit": code, "wall": wall, "to_first_test": first, "verification": wall - first if first else None}


def env_names() -> set[str]:
    return {p.name for p in (ROOT / ".envfixtures" / "envs").glob("*") if p.is_dir()}


def kept_environment(runs: int) -> dict:
    """Keep an environment, rerun on it, and tear down every environment this made, whatever happened."""
    junit = RESULTS / "kept-build.xml"
    junit.unlink(missing_ok=True)
    env = {**project_environ(), "PYTHONPATH": str(BENCH)}
    out: dict = {"n2": [], "n0": [], "down": {}}
    before = env_names()
    try:
        argv = pytest_argv("-n", "2", "--env-keep", f"--junitxml={junit}")
        code, wall = run(argv, log=RESULTS / "kept-build.log", env=env)
        name = junit_facts(junit)["env"] if junit.exists() else None
        out["build_run"] = {"exit": code, "wall": wall, "env": name}
        print(f"  kept environment {name}: exit {code}, {wall:.1f}s", flush=True)
        for i in range(runs if name else 0):
            out["n2"].append(reuse_run(name, 2, i))
            out["n0"].append(reuse_run(name, 0, i))
    finally:
        for made in sorted(env_names() - before):
            down = subprocess.run(
                [sys.executable, "-m", "envfixtures.cli", "down", made], cwd=ROOT, capture_output=True, text=True
            )
            out["down"][made] = {"exit": down.returncode, "left_running": find_marked(made)}
            print(f"  envfixtures down {made}: exit {down.returncode}", flush=True)
    return out


# --- the static stage ------------------------------------------------------------------------------------------


def static_command() -> list[str]:
    """The first command of the gate (tox.ini's ``[testenv:build-and-verify]``): its static stage."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    first = next(ln.strip() for ln in ini["testenv:build-and-verify"]["commands"].splitlines() if ln.strip())
    return shlex.split(first.replace("{posargs}", ""))


def static_stage(runs: int, before: bool) -> dict:
    """The static stage alone, ``runs`` times (alternating with the one before issue 17 when ``before``). Each run's
    JUnit file (and what the plugin writes beside it) goes to bench/results/, never to reports/."""
    tox_python = ROOT / ".tox" / "build-and-verify" / "bin" / "python"
    python = str(tox_python) if tox_python.exists() else sys.executable
    kinds = {"now": static_command()} | ({"before": STATIC_BEFORE} if before else {})
    out: dict = {"python": python, "commands": kinds, **{kind: [] for kind in kinds}}
    for i in range(runs):
        for kind, argv in kinds.items():
            argv = [a for a in argv if not a.startswith("--junitxml")]
            argv = [python, "-m", *argv, f"--junitxml={RESULTS / f'static-{kind}-{i}.xml'}"]  # argv[0]: pytest
            code, wall, cpu = run_cpu(argv, log=RESULTS / f"static-{kind}-{i}.log")
            out[kind].append({"exit": code, "wall": wall, "cpu": cpu})
            print(f"  static stage ({kind}) #{i + 1}: exit {code}, {wall:.2f}s wall, {cpu:.2f}s CPU", flush=True)
    return out


# --- the table ------------------------------------------------------------------------------------------------


def component_bench(script: str, runs: int, result_file: str) -> dict:
    code, _ = run([sys.executable, str(BENCH / script), "--runs", str(runs)], log=RESULTS / f"{script}.log")
    print((RESULTS / f"{script}.log").read_text(), flush=True)
    path = RESULTS / result_file
    return {"exit": code, **(json.loads(path.read_text()) if code == 0 and path.exists() else {})}


def row(measure: str, value: float | None, unit: str, limit: float, runs: list, *, at_least: bool = False) -> list[str]:
    """One line of the table: the median, how many runs it is of, the target and whether it is met."""
    target = f"{'≥' if at_least else '≤'} {limit:g}{' s' if unit == 's' else '×'}"
    if value is None or value != value:  # missing or NaN
        return [measure, "n/a", str(len(runs)), target, "n/a"]
    ok = value >= limit if at_least else value <= limit
    shown = f"{value:.2f} s" if unit == "s" else f"{value:.2f}×"
    return [measure, shown, str(len(runs)), target, "yes" if ok else "**no**"]


def table(s: dict, runs: int) -> str:
    warm, cold = s.get("warm", []), s.get("cold", [])
    gates = warm + cold
    kept = s.get("kept", {})
    n2, n0 = kept.get("n2", []), kept.get("n0", [])
    erl = s.get("erlang", {}).get("variants", {}).get("driver", {})
    peers = s.get("peers", {})
    raw = peers.get("raw_s", {})
    speedup = median([r["verification"] for r in n0]) / median([r["verification"] for r in n2]) if n2 and n0 else None
    static = s.get("static", {})
    static_ok = [r for r in static.get("now", []) if r["exit"] == 0]  # a failing stage's time is not the stage's
    rows = [
        row("warm `make verify`, static stage + gate, end to end", median([r["wall"] for r in warm]), "s", 30, warm),
        row("cold `make verify` (tox envs created anew)", median([r["wall"] for r in cold]), "s", 45, cold),
        row("build wall ÷ slowest component", median([r.get("build_wall_over_slowest") for r in gates]), "x", 1.2,
            gates),
        row("3-node cluster ÷ one node", erl.get("ratio_three_to_one"), "x", 1.5, erl.get("three_node_s", [])),
        row("teardown, until the last process has exited", median([r.get("teardown") for r in gates]), "s", 2, gates),
        row("rerun on a kept environment to its first test", median([r["to_first_test"] for r in n2]), "s", 5, n2),
        row("verification alone on a kept environment, `-n 2`", median([r["wall"] for r in n2]), "s", 10, n2),
        row("`-n 2` ÷ `-n 0`, verification phase (speed-up)", speedup, "x", 1.6, n0, at_least=True),
        row("database start ÷ pytest-postgresql `postgresql_proc`", peers.get("database_ratio"), "x", 1.0,
            raw.get("ours_database", [])),
        row("broker start (one node) ÷ pytest-rabbitmq `rabbitmq_proc`", peers.get("broker_ratio"), "x", 1.0,
            raw.get("ours_broker", [])),
        row("static stage alone (the gate's first command), wall", median([r["wall"] for r in static_ok]), "s",
            STATIC_TARGET, static_ok),
    ]  # fmt: skip
    lines = ["| measure | median | runs | target | met |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if static:
        lines += [
            "",
            f"static stage (interpreter {static.get('python')}), medians:",
            "",
            "| static stage | runs | wall s | CPU s (user + system) | exits |",
            "|---|---|---|---|---|",
        ]
        for kind, label in (
            ("now", "now: " + " ".join(static["commands"]["now"])),
            ("before", "before issue 17: " + " ".join(STATIC_BEFORE)),
        ):
            if static.get(kind):
                rs = static[kind]
                lines.append(
                    f"| `{label}` | {len(rs)} | {median([r['wall'] for r in rs]):.2f} | "
                    f"{median([r['cpu'] for r in rs]):.2f} | {' '.join(str(r['exit']) for r in rs)} |"
                )
    tests: dict[str, list[float]] = {}
    for r in warm:
        for name, seconds in r.get("tests", {}).items():
            tests.setdefault(name, []).append(seconds)
    slowest = sorted(((median(t), n) for n, t in tests.items()), reverse=True)[:8]
    if slowest:
        lines += [
            "",
            f"slowest tests (JUnit, median of {len(warm)} warm gates; with `-n 2`, waits for builds included):",
        ]
        lines += ["", "| test | s |", "|---|---|"] + [f"| `{n}` | {t:.2f} |" for t, n in slowest]
    if gates:
        lines += [
            "",
            "| per gate | "
            + " | ".join(f"{k} {i + 1}" for k, rs in (("cold", cold), ("warm", warm)) for i in range(len(rs)))
            + " |",
        ]
        lines += ["|---|" + "---|" * len(gates)]
        for label, key in (
            ("exit", "exit"),
            ("wall s", "wall"),
            ("tox setup s", "tox_setup"),
            ("static stage s", "static_stage"),
            ("gate s", "gate"),
            ("build wall s", "build_wall"),
            ("teardown s", "teardown"),
        ):
            lines.append(f"| {label} | " + " | ".join(_fmt(r.get(key)) for r in cold + warm) + " |")
        slow = [f"{r.get('slowest_component')} {_fmt((r.get('builds') or {}).get(r.get('slowest_component')))}"
                for r in cold + warm]  # fmt: skip
        lines.append("| slowest component | " + " | ".join(slow) + " |")
        for label, key in (("builds s", "builds"), ("teardowns s", "teardowns")):
            cells = [", ".join(f"{n} {_fmt(t)}" for n, t in (r.get(key) or {}).items()) for r in cold + warm]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append(
            "| left running after | " + " | ".join(str(len(r.get("left_running", []))) for r in cold + warm) + " |"
        )
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measure (default 3)")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated of {', '.join(ROWS)}")
    parser.add_argument("--components", action="store_true", help="also the older component benches")
    parser.add_argument(
        "--static-before", action="store_true", help="static: also the static stage as it was before issue 17"
    )
    args = parser.parse_args()
    only = [o for o in args.only.split(",") if o]
    if unknown := sorted(set(only) - set(ROWS)):
        parser.error(f"unknown --only {unknown}; known: {', '.join(ROWS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary: dict = {"runs": args.runs, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = RESULTS / "targets.json"
    status = 0
    sections = {
        "cold": lambda: [make_verify("cold", i) for i in range(args.runs)],
        "warm": lambda: [make_verify("warm", i) for i in range(args.runs)],
        "kept": lambda: kept_environment(args.runs),
        "erlang": lambda: component_bench("bench_erlang.py", args.runs, "erlang.json"),
        "peers": lambda: component_bench("bench_peers.py", args.runs, "peers.json"),
        "static": lambda: static_stage(args.runs, args.static_before),
    }
    for key in [k for k in ROWS if k in only]:
        try:  # one section's failure is recorded; the others still run and the table is still printed
            summary[key] = sections[key]()
        except Exception as exc:  # noqa: BLE001
            summary.setdefault("errors", {})[key] = repr(exc)
            print(f"  {key}: {exc!r}", flush=True)
            status = 1
        finally:
            out.write_text(json.dumps(summary, indent=2, default=str))
    print(f"\n## issue 17 targets (medians of {args.runs} runs in one go; {summary['started']})\n")
    print(table(summary, args.runs))
    print(f"\nraw: {out}")
    exits = [r["exit"] for k in ("cold", "warm") for r in summary.get(k, [])]
    exits += [r["exit"] for r in summary.get("kept", {}).get("n2", []) + summary.get("kept", {}).get("n0", [])]
    exits += [r["exit"] for r in summary.get("static", {}).get("now", []) + summary.get("static", {}).get("before", [])]
    status |= int(any(exits))
    if args.components:
        for bench, bench_args in COMPONENT_BENCHES:
            print(f"\n== {bench}", flush=True)
            status |= subprocess.run([sys.executable, str(BENCH / bench), *bench_args], cwd=ROOT).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
