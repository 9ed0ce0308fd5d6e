"""The soak: the gate run again and again, and cut short every way a Jenkins job ends badly; nothing may leak.

A bench, not a test (it takes minutes). Each case runs the gate (``pytest tests_infra tests_api -n 2``) in its own
process group with a state directory of its own, then counts, for every environment the case made: processes still
carrying the environment's marker, listening sockets of such processes, and environments not torn down.

    python bench/soak.py [--runs 10] [--skip-matrix] [--skip-parallel]

- ``green``: the gate to its end, ``--runs`` times in a row; each must pass (a failure is a flaky gate).
- the signal matrix, each at two moments (``mid-build``: the first component is building; ``mid-verify``: every
  component is built and tests run): Ctrl-C to the pytest controller (SIGINT, as a terminal delivers it), SIGTERM
  to the whole process group (a Jenkins abort), SIGKILL to the whole group followed at once by
  ``envfixtures reap`` (a hard abort and a ``post { always }`` step).
- ``parallel``: two gates at once (two executors on one agent); both must pass.

Prints a table and exits 1 on any leak or any failed green run. Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envfixtures.drivers.containers import podman  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GATE = ["tests_infra", "tests_api", "-n", "2", "-q", "-p", "no:cacheprovider"]
MARKER = "ENVFIXTURES_ENV"
MOMENT_TIMEOUT = 240.0
RUN_TIMEOUT = 600.0


@dataclass
class Outcome:
    case: str
    exit_codes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    leaked_processes: list[str] = field(default_factory=list)
    listeners: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)  # of docker apps (labelled with their environment)
    not_torn_down: list[str] = field(default_factory=list)
    failed_runs: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.leaked_processes or self.listeners or self.containers or self.not_torn_down or self.failed_runs
        )

    def add(self, other: Outcome) -> None:
        self.leaked_processes += other.leaked_processes
        self.listeners += other.listeners
        self.containers += other.containers
        self.not_torn_down += other.not_torn_down


def start_gate(home: Path) -> subprocess.Popen:
    env = {**os.environ, "ENVFIXTURES_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    log = open(home / f"gate-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *GATE, f"--junitxml={home / 'junit.xml'}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def environments(home: Path) -> list[Path]:
    root = home / "envs"
    return sorted(p for p in root.iterdir() if (p / "env.json").exists()) if root.exists() else []


def statuses(env_dir: Path) -> list[str]:
    folder = env_dir / "components"
    return [json.loads(p.read_text()).get("status", "") for p in folder.glob("*.json")] if folder.exists() else []


def wait_moment(home: Path, moment: str, proc: subprocess.Popen) -> bool:
    """Until the run reaches ``moment``; False if it ended first."""
    deadline = time.monotonic() + MOMENT_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        for env_dir in environments(home):
            found = statuses(env_dir)
            if moment == "mid-build" and "building" in found:
                return True
            wanted = json.loads((env_dir / "env.json").read_text()).get("components") or []
            if moment == "mid-verify" and found and len(found) >= len(wanted) and all(s == "built" for s in found):
                return True
        time.sleep(0.05)
    return False


def marked(names: set[str]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            if proc.environ().get(MARKER) in names and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def count(home: Path, outcome: Outcome) -> None:
    """Leaks of every environment under ``home``, a moment after the case ended (teardown has returned)."""
    names = {p.name for p in environments(home)}
    leaked = marked(names)
    outcome.leaked_processes = [f"{p.pid}:{p.info['name']}" for p in leaked]
    pids = {p.pid for p in leaked}
    outcome.listeners = [
        f"{c.laddr.ip}:{c.laddr.port} (pid {c.pid})"
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    ]
    for name in names:
        outcome.containers += [f"{name}: {c}" for c in podman.labelled_containers(name)]
    for env_dir in environments(home):
        status = json.loads((env_dir / "env.json").read_text()).get("status")
        if status != "torn_down":
            outcome.not_torn_down.append(f"{env_dir.name}: {status}")


def reap(home: Path) -> int:
    env = {**os.environ, "ENVFIXTURES_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "envfixtures.cli", "reap"], cwd=ROOT, env=env, timeout=300).returncode


def green(runs: int, base: Path) -> Outcome:
    outcome = Outcome(f"green x{runs}")
    t0 = time.monotonic()
    for i in range(runs):
        home = base / f"green-{i}"
        home.mkdir()
        proc = start_gate(home)
        code = proc.wait(timeout=RUN_TIMEOUT)
        outcome.exit_codes.append(code)
        outcome.failed_runs += code != 0
        one = Outcome("")
        count(home, one)
        outcome.add(one)
    outcome.seconds = time.monotonic() - t0
    return outcome


def cut(how: str, moment: str, base: Path) -> Outcome:
    outcome = Outcome(f"{how} {moment}")
    home = base / f"{how}-{moment}"
    home.mkdir()
    t0 = time.monotonic()
    proc = start_gate(home)
    reached = wait_moment(home, moment, proc)
    if not reached:
        outcome.failed_runs += 1  # the run ended (or hung) before the moment: the case did not happen
    if how == "sigint-controller":
        proc.send_signal(signal.SIGINT)
    elif how == "sigterm-group":
        os.killpg(proc.pid, signal.SIGTERM)
    elif how == "sigkill-group-then-reap":
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        outcome.exit_codes.append(proc.wait(timeout=RUN_TIMEOUT))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        outcome.exit_codes.append(proc.wait())
        outcome.failed_runs += 1
    if how == "sigkill-group-then-reap":
        outcome.exit_codes.append(reap(home))  # at once: the killed controller may still be a zombie
    outcome.seconds = time.monotonic() - t0
    count(home, outcome)
    return outcome


def parallel(base: Path) -> Outcome:
    outcome = Outcome("two gates at once")
    homes = [base / "parallel-a", base / "parallel-b"]
    t0 = time.monotonic()
    procs = []
    for home in homes:
        home.mkdir()
        procs.append(start_gate(home))
    for proc in procs:
        code = proc.wait(timeout=RUN_TIMEOUT)
        outcome.exit_codes.append(code)
        outcome.failed_runs += code != 0
    outcome.seconds = time.monotonic() - t0
    for home in homes:
        one = Outcome("")
        count(home, one)
        outcome.add(one)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="green runs in a row (default 10)")
    parser.add_argument("--skip-matrix", action="store_true")
    parser.add_argument("--skip-parallel", action="store_true")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="envfixtures-soak-"))
    outcomes = []
    try:
        if args.runs:
            outcomes.append(green(args.runs, base))
        if not args.skip_matrix:
            for how in ("sigint-controller", "sigterm-group", "sigkill-group-then-reap"):
                for moment in ("mid-build", "mid-verify"):
                    outcomes.append(cut(how, moment, base))
                    print(f"soak: {outcomes[-1].case}: {'ok' if outcomes[-1].ok else 'LEAK or FAILURE'}", flush=True)
        if not args.skip_parallel:
            outcomes.append(parallel(base))
    finally:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "soak.json").write_text(json.dumps([asdict(o) for o in outcomes], indent=2) + "\n")
    rows = [("case", "exit codes", "seconds", "leaked processes", "listeners", "containers", "not torn down",
             "failed runs", "")]  # fmt: skip
    for o in outcomes:
        rows.append((
            o.case, " ".join(map(str, o.exit_codes)), f"{o.seconds:.0f}", str(len(o.leaked_processes)),
            str(len(o.listeners)), str(len(o.containers)), str(len(o.not_torn_down)), str(o.failed_runs),
            "ok" if o.ok else "FAIL",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows))
    bad = [o for o in outcomes if not o.ok]
    for o in bad:
        print(f"{o.case}: {asdict(o)}", file=sys.stderr)
    if not bad:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"soak: state and logs kept in {base}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
