"""Bench: the local scheduler deploying a group, and verifying the health of 200 apps with one call.

Phases, each a median of >= 3 cold runs (a fresh scheduler process per run):
- start: spawn the scheduler until /ping answers;
- deploy-1: PUT a group shaped like the platform's (an API of 2 instances and a worker of 1, HTTP checks;
  ``python3 -m http.server`` stands in for the services, which need a database and a broker — the gate's
  own bench, bench/run.py, times the real platform's deploy as the ``apps`` build) until healthy;
- deploy-200: PUT a group of 200 apps (1 instance each, ``exec sleep``, a COMMAND health check) until healthy;
- verify-200: one GET /v2/apps?embed=apps.tasks and the per-app health verdict (goal: <= 2 s).
Prints a table and writes bench/results/marathon.json. Usage: python bench/bench_marathon.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envfixtures.core.ports import free_port  # noqa: E402
from envfixtures.core.processes import standalone_spawner  # noqa: E402
from envfixtures.core.waiting import wait_for  # noqa: E402
from envfixtures.drivers.marathon import auth, render  # noqa: E402
from envfixtures.drivers.marathon.client import MarathonClient, Unavailable  # noqa: E402

GOAL_VERIFY_200 = 2.0
SHA = "0" * 40


def many_apps(n: int) -> dict:
    check = {
        "protocol": "COMMAND",
        "command": {"value": "true"},
        "gracePeriodSeconds": 30,
        "intervalSeconds": 10,
        "timeoutSeconds": 5,
        "maxConsecutiveFailures": 3,
        "delaySeconds": 0,
    }
    return {
        "id": "/bench200",
        "apps": [
            {
                "id": f"app-{i:03d}",
                "cmd": "exec sleep 600",
                "cpus": 0.01,
                "mem": 8,
                "labels": {"GIT_SHA": SHA},
                "healthChecks": [check],
            }
            for i in range(n)
        ],
    }


def verify(client: MarathonClient, group: str) -> tuple[float, int]:
    """One listing call and the health verdict of every app in it; returns (seconds, healthy apps)."""
    start = time.perf_counter()
    apps = client.list_apps(embed=("apps.tasks",), app_id=group + "/")
    healthy = sum(
        1
        for a in apps
        if not a.deployments
        and a.tasks_healthy == a.instances
        and sum(1 for t in a.tasks or [] if t.healthy) == a.instances
    )
    return time.perf_counter() - start, healthy


def wait_healthy(client: MarathonClient, group: str, count: int, timeout: float) -> None:
    wait_for(
        lambda: verify(client, group)[1] == count,
        what=f"{count} healthy apps in {group}",
        timeout=timeout,
        first_delay=0.2,
    )


def one_run(workdir: Path) -> dict[str, float]:
    port = free_port()
    spawn = standalone_spawner(workdir, f"ef-bench-{workdir.name}", component="scheduler")
    t0 = time.perf_counter()
    argv = [sys.executable, "-m", "envfixtures.drivers.marathon.server", "--port", str(port),
            "--workdir", str(workdir / "w"), "--log-level", "WARNING"]  # fmt: skip
    credentials = (f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(24))
    process = spawn("marathon", argv, env={**os.environ, auth.CREDENTIALS_ENV: auth.join(*credentials)})
    try:
        client = MarathonClient(f"http://127.0.0.1:{port}", timeout=30, auth=credentials)
        process.wait_ready(client.ping, what="scheduler", timeout=30, retry_on=(Unavailable,))
        out = {"start": time.perf_counter() - t0}

        apps = [platform_like_app("orders-api", 2), platform_like_app("fulfilment-worker", 1)]
        t = time.perf_counter()
        result = client.put_group("/ef-bench", render.group_body("/ef-bench", apps), force=True)
        client.wait_for_deployment(result.deployment_id, timeout=120)
        wait_healthy(client, "/ef-bench", len(apps), 60)
        out["deploy-1"] = time.perf_counter() - t

        t = time.perf_counter()
        result = client.put_group("/bench200", many_apps(200), force=True)
        client.wait_for_deployment(result.deployment_id, timeout=300)
        wait_healthy(client, "/bench200", 200, 120)
        out["deploy-200"] = time.perf_counter() - t

        seconds, healthy = verify(client, "/bench200")
        assert healthy == 200, healthy
        out["verify-200"] = seconds
        return out
    finally:
        process.stop(timeout=60)  # SIGTERM to its group: the scheduler stops its tasks, SIGKILL after 60 s


def platform_like_app(name: str, instances: int) -> dict:
    return {
        "id": name,
        "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
        "instances": instances,
        "cpus": 0.1,
        "mem": 64,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "labels": {"GIT_SHA": SHA},
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": "/",
                "portIndex": 0,
                "gracePeriodSeconds": 20,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 3,
            }
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for i in range(max(args.runs, 3)):
        with tempfile.TemporaryDirectory(prefix="bench-marathon-") as tmp:
            runs.append(one_run(Path(tmp)))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.3f}s" for k, v in runs[-1].items()), flush=True)
    phases = list(runs[0])
    medians = {p: statistics.median(r[p] for r in runs) for p in phases}
    print(f"\n{'phase':<12} {'median s':>9} {'min s':>8} {'max s':>8}")
    for p in phases:
        values = [r[p] for r in runs]
        print(f"{p:<12} {medians[p]:>9.3f} {min(values):>8.3f} {max(values):>8.3f}")
    ok = medians["verify-200"] <= GOAL_VERIFY_200
    print(f"\nverify-200 goal <= {GOAL_VERIFY_200}s: {'met' if ok else 'MISSED'}")
    out = ROOT / "bench" / "results" / "marathon.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "runs": runs,
                "medians": medians,
                "goal_verify_200_s": GOAL_VERIFY_200,
                "goal_met": ok,
                "cpus": os.cpu_count(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            indent=2,
        )
    )
    print(f"written {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
