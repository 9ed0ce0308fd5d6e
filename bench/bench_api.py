"""API bench: latency (median, p99) and throughput of the orders API under a bounded load from loopback.

Run against a base URL, a kept environment, or one built for the occasion::

    python bench/bench_api.py --base-url http://127.0.0.1:PORT
    python bench/bench_api.py --env NAME [--home .envfixtures]   # e.g. after `envfixtures up api`
    python bench/bench_api.py --up [--home DIR] [--set broker_nodes=1]   # envfixtures up api, bench, down

Load: ``--threads`` client threads (default 2), each with its own keep-alive session, sending
``--requests`` requests (default 200) per phase, bounded by ``--max-seconds`` per phase. Phases:
``POST /orders`` (new orders), ``GET /orders/{id}`` (the ids just created), ``GET /orders?limit=20``.
With an environment (``--env``/``--up``) the same phases also run against one API task directly, so
the proxy's share shows. Prints a table; writes ``bench/results/api.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envfixtures.drivers.marathon.client import facts_auth  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "api.json"


def order_body() -> dict[str, Any]:
    return {"customer_id": f"bench-{uuid.uuid4().hex[:10]}", "items": [{"sku": "SKU-1", "quantity": 1}],
            "currency": "EUR"}  # fmt: skip


def run_phase(
    name: str, threads: int, per_thread: int, max_seconds: float, call: Callable[[requests.Session, int, int], bool]
) -> dict[str, Any]:
    """``threads`` × ``per_thread`` calls of ``call(session, thread, i)`` (True: a good answer), bounded in time."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    deadline = time.monotonic() + max_seconds
    start = threading.Barrier(threads + 1)

    def client(t: int) -> None:
        with requests.Session() as session:
            start.wait()
            for i in range(per_thread):
                if time.monotonic() > deadline:
                    break
                t0 = time.perf_counter()
                try:
                    ok = call(session, t, i)
                except requests.RequestException:
                    ok = False
                latencies[t].append(time.perf_counter() - t0)
                errors[t] += 0 if ok else 1

    workers = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    values = sorted(v for per in latencies for v in per)
    n = len(values)
    return {
        "phase": name,
        "requests": n,
        "errors": sum(errors),
        "wall_s": round(wall, 3),
        "throughput_rps": round(n / wall, 1) if wall else None,
        "median_ms": round(statistics.median(values) * 1000, 2) if n else None,
        "p99_ms": round(values[max(0, math.ceil(0.99 * n) - 1)] * 1000, 2) if n else None,
        "mean_ms": round(statistics.fmean(values) * 1000, 2) if n else None,
        "max_ms": round(values[-1] * 1000, 2) if n else None,
        "truncated_by_time": n < threads * per_thread,
    }


def bench(base_url: str, threads: int, per_thread: int, max_seconds: float) -> list[dict[str, Any]]:
    base_url = base_url.rstrip("/")
    with requests.Session() as warm:  # warm-up: connections, caches, the proxy's task list
        for _ in range(20):
            warm.post(f"{base_url}/orders", json=order_body(), timeout=10).raise_for_status()
    ids: list[list[str]] = [[] for _ in range(threads)]

    def create(session: requests.Session, t: int, _i: int) -> bool:
        r = session.post(f"{base_url}/orders", json=order_body(), timeout=30)
        if r.status_code == 201:
            ids[t].append(r.json()["id"])
        return r.status_code == 201

    def read(session: requests.Session, t: int, i: int) -> bool:
        mine = ids[t]
        return bool(mine) and session.get(f"{base_url}/orders/{mine[i % len(mine)]}", timeout=30).status_code == 200

    def page(session: requests.Session, _t: int, _i: int) -> bool:
        return session.get(f"{base_url}/orders", params={"limit": 20}, timeout=30).status_code == 200

    return [
        run_phase("POST /orders", threads, per_thread, max_seconds, create),
        run_phase("GET /orders/{id}", threads, per_thread, max_seconds, read),
        run_phase("GET /orders?limit=20", threads, per_thread, max_seconds, page),
    ]


def one_task_url(scheduler: dict[str, Any], app_id: str) -> str | None:
    """A healthy task of the API app, for the direct comparison (None if the scheduler says none)."""
    url = f"{scheduler['url']}/v2/apps/{app_id.strip('/')}?embed=app.tasks"
    r = requests.get(url, auth=facts_auth(scheduler), timeout=10)
    r.raise_for_status()
    for task in r.json()["app"].get("tasks") or []:
        if task.get("state") == "TASK_RUNNING" and all(h.get("alive") for h in task.get("healthCheckResults") or []):
            return f"http://{task['host']}:{task['ports'][0]}"
    return None


def env_facts(home: Path, name: str, component: str) -> dict[str, Any]:
    from envfixtures.core.environment import Environment

    return dict(Environment.open(home, name).facts(component))


def up(home: Path, settings: list[str]) -> str:
    argv = [sys.executable, "-m", "envfixtures.cli", "--home", str(home), "up", "api"]
    for item in settings:
        argv += ["--set", item]
    t0 = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True, timeout=900).stdout
    name = out.splitlines()[0].strip()
    print(f"envfixtures up api: {name} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return name


def down(home: Path, name: str) -> None:
    subprocess.run([sys.executable, "-m", "envfixtures.cli", "--home", str(home), "down", name], cwd=ROOT,
                   check=False, timeout=300)  # fmt: skip


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    rows = [("target", "phase", "n", "err", "median ms", "p99 ms", "req/s")]
    for target, phases in results.items():
        for p in phases:
            rows.append((target, p["phase"], str(p["requests"]), str(p["errors"]), f"{p['median_ms']}",
                         f"{p['p99_ms']}", f"{p['throughput_rps']}"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--base-url", help="the API's base URL (loopback)")
    where.add_argument("--env", help="a kept environment whose `api` component is built")
    where.add_argument("--up", action="store_true", help="envfixtures up api, bench, then tear it down")
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("ENVFIXTURES_HOME", ROOT / ".envfixtures")))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --up: a setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200, help="requests per thread per phase")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="bound of each phase")
    parser.add_argument("--no-direct", action="store_true", help="skip the comparison against one task directly")
    args = parser.parse_args(argv)

    built = up(args.home, args.set) if args.up else None
    try:
        name = built or args.env
        facts = env_facts(args.home, name, "api") if name else {"base_url": args.base_url}
        results = {"base URL": bench(facts["base_url"], args.threads, args.requests, args.max_seconds)}
        direct = None
        if name and facts.get("marathon_url") and not args.no_direct:
            direct = one_task_url(env_facts(args.home, name, "scheduler"), facts["app_id"])
            if direct:
                results["one task, direct"] = bench(direct, args.threads, args.requests, args.max_seconds)
    finally:
        if built:
            down(args.home, built)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "bench": "api",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1m": os.getloadavg()[0]},
        "load": {"threads": args.threads, "requests_per_thread": args.requests, "max_seconds": args.max_seconds},
        "target": "environment " + name if name else "base URL given",
        "results": results,
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(table(results))
    print(f"(written to {RESULTS.relative_to(ROOT)}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
