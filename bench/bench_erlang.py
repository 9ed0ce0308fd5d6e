"""Erlang on two cores: what a 3-node cluster's start costs under each choice, against one node, in the same go.

Run: ``python bench/bench_erlang.py [--runs 3] [--variants a,b,...]``. Prints a markdown table of medians and
writes ``bench/results/erlang.json``. Every cluster runs in a temporary directory and is stopped (SIGKILL).

Variants (each a 3-node start to formed, alternating with a one-node start of the same settings):

- ``driver``: the driver as it is (``envfixtures.drivers.rabbitmq.cluster``, its defaults);
- ``baseline``: the driver as it was before issue 17 (management on every node, readiness polled every 0.25-0.5 s
  through every node's management API);
- ``S1``: ``+S 1:1`` (one scheduler per node: three VMs share two cores);
- ``S1_A1_dirty1``: ``+S 1:1 +A 1 +SDcpu 1:1 +SDio 1`` (fewer async and dirty threads as well);
- ``mgmt_first``: the management plugin on node 1 only, the agent on the others (only the plugins needed);
- ``sequential``: node 1 first, the others once node 1's API answers (against the concurrent boot);
- ``join_node1``: formed as soon as node 1's API sees every node running (not waiting for each node's own
  management API, i.e. the slowest node's full boot);
- ``fast_poll``: readiness polled every 0.05-0.1 s.

The one-node start of each variant runs with the same Erlang flags and plugins, so the ratio is the variant's. Beside
the wall time, the CPU seconds the cluster's processes used until formed (psutil): on a shared machine the wall
time moves with whatever else runs, the CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envfixtures.core.processes import standalone_spawner  # noqa: E402
from envfixtures.core.waiting import wait_for  # noqa: E402
from envfixtures.drivers.rabbitmq import cluster as rmq  # noqa: E402
from envfixtures.drivers.rabbitmq.management import ManagementError  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "erlang.json"
OLD_DEFAULTS = {"erl_args": "", "management": "all", "ready": "all_apis", "poll": (0.25, 0.5)}

VARIANTS: dict[str, dict] = {
    "driver": {},
    "baseline": dict(OLD_DEFAULTS),
    "S1": {**OLD_DEFAULTS, "erl_args": "+S 1:1"},
    "S1_A1_dirty1": {**OLD_DEFAULTS, "erl_args": "+S 1:1 +A 1 +SDcpu 1:1 +SDio 1"},
    "mgmt_first": {**OLD_DEFAULTS, "management": "first"},
    "sequential": {**OLD_DEFAULTS, "sequential": True},
    "join_node1": {**OLD_DEFAULTS, "ready": "node1"},
    "fast_poll": {**OLD_DEFAULTS, "poll": (0.05, 0.1)},
}


def cpu_seconds(cluster: rmq.Cluster) -> float:
    """CPU seconds (user + system) the cluster's processes and their children have used so far: less sensitive than
    the wall time to what else runs on the machine."""
    total = 0.0
    for process in [cluster.epmd, *cluster.nodes.values()]:
        if process is None:
            continue
        try:
            root = psutil.Process(process.pid)
            for proc in [root, *root.children(recursive=True)]:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def start_once(size: int, variant: dict) -> tuple[float, float]:
    """Seconds from spawning epmd to a formed cluster (as the variant judges it), and the CPU seconds it used."""
    with tempfile.TemporaryDirectory(prefix="bench-erl-") as tmp:
        kwargs = {}
        if "erl_args" in variant:
            kwargs["erl_args"] = variant["erl_args"]
        if "management" in variant:
            kwargs["management_on"] = variant["management"]
        spec = rmq.plan(Path(tmp) / "c", size, prefix=f"erl{size}", **kwargs)
        cluster = rmq.Cluster(spec, standalone_spawner(Path(tmp), f"ef-bench-{Path(tmp).name}", component="broker"))
        t0 = time.monotonic()
        try:
            if "ready" not in variant and "poll" not in variant and not variant.get("sequential"):
                cluster.start(timeout=180)
            else:
                _start_variant(cluster, variant)
            return time.monotonic() - t0, cpu_seconds(cluster)
        finally:
            cluster.stop()


def _start_variant(cluster: rmq.Cluster, variant: dict) -> None:
    spec = cluster.spec
    environ = spec.node_environ(spec.nodes[0])
    cluster.epmd = cluster._spawn(
        "epmd", [rmq.EPMD, "-port", str(spec.epmd_port), "-address", rmq.LOOPBACK], env=environ
    )
    cluster.epmd.wait_ready(lambda: rmq._port_open(spec.epmd_port), what="epmd", timeout=10)
    first, rest = spec.nodes[0], spec.nodes[1:]
    cluster._start_node(first)
    if variant.get("sequential"):
        _wait(cluster, variant, [0], {first.name})
    for node in rest:
        cluster._start_node(node)
    apis = [0] if variant.get("ready") == "node1" else [n.index - 1 for n in spec.nodes if spec.has_management(n)]
    _wait(cluster, variant, apis, {n.name for n in spec.nodes})


def _wait(cluster: rmq.Cluster, variant: dict, apis: list[int], names: set[str]) -> None:
    first_delay, max_delay = variant.get("poll", (0.25, 0.5))
    clients = [cluster.spec.management(i, timeout=5) for i in apis]

    def formed() -> bool:
        for client in clients:
            client.overview()
        return {n["name"] for n in clients[0].nodes() if n.get("running")} >= names

    try:
        wait_for(
            formed,
            what="cluster formed",
            timeout=180,
            retry_on=(ManagementError,),
            failed=cluster._dead_reason,
            first_delay=first_delay,
            max_delay=max_delay,
        )
    finally:
        for client in clients:
            client.close()


def measure(names: list[str], runs: int) -> dict[str, dict]:
    raw: dict[str, dict[str, list[float]]] = {n: {"one": [], "three": [], "cpu1": [], "cpu3": []} for n in names}
    for _ in range(runs):  # interleaved: every variant sees the same machine state in each round
        for name in names:
            for size, wall, cpu in ((1, "one", "cpu1"), (3, "three", "cpu3")):
                took, used = start_once(size, VARIANTS[name])
                raw[name][wall].append(took)
                raw[name][cpu].append(used)
    out = {}
    for name in names:
        one, three = statistics.median(raw[name]["one"]), statistics.median(raw[name]["three"])
        cpu1, cpu3 = statistics.median(raw[name]["cpu1"]), statistics.median(raw[name]["cpu3"])
        out[name] = {
            "one_node_cpu_s": [round(x, 2) for x in raw[name]["cpu1"]],
            "three_node_cpu_s": [round(x, 2) for x in raw[name]["cpu3"]],
            "one_node_cpu_median_s": round(cpu1, 2),
            "three_node_cpu_median_s": round(cpu3, 2),
            "one_node_s": [round(x, 2) for x in raw[name]["one"]],
            "three_node_s": [round(x, 2) for x in raw[name]["three"]],
            "one_node_median_s": round(one, 2),
            "three_node_median_s": round(three, 2),
            "ratio_three_to_one": round(three / one, 2),
        }
    base = out.get("baseline")
    if base:
        for name in names:
            out[name]["three_vs_baseline"] = round(out[name]["three_node_median_s"] / base["three_node_median_s"], 2)
            out[name]["three_cpu_vs_baseline"] = round(
                out[name]["three_node_cpu_median_s"] / base["three_node_cpu_median_s"], 2
            )
    return out


def table(results: dict[str, dict], runs: int) -> str:
    lines = [
        f"| variant (median of {runs}) | one node s | 3 nodes s | 3 ÷ 1 | 3 nodes ÷ baseline's | "
        "one node CPU s | 3 nodes CPU s | 3 nodes CPU ÷ baseline's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['one_node_median_s']:.2f} | {r['three_node_median_s']:.2f} | "
            f"{r['ratio_three_to_one']:.2f}× | {r.get('three_vs_baseline', float('nan')):.2f}× | "
            f"{r['one_node_cpu_median_s']:.2f} | {r['three_node_cpu_median_s']:.2f} | "
            f"{r.get('three_cpu_vs_baseline', float('nan')):.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    results = measure(names, args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": args.runs, "variants": results}, indent=2))
    print(table(results, args.runs))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
