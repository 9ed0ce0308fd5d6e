"""Broker bench: time to a formed 3-node cluster next to one node's start, and verifying 10,000 queues.

Run: ``python bench/bench_broker.py [--runs 3] [--queues 10000]``. Prints a table of medians and
writes ``bench/results/broker.json``. Every cluster runs in a temporary directory and is stopped.

- start: one node until its management API answers, then 3 nodes (classic_config, formed at boot)
  until node 1 sees all three running; alternating, ``--runs`` times each.
- verify: a 3-node cluster with ``--queues`` classic queues in vhost ``bench``; the whole topology
  checked with bulk management reads + diff (4 requests) next to one passive declare per queue over
  one AMQP channel.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envfixtures.core.processes import standalone_spawner  # noqa: E402
from envfixtures.drivers.rabbitmq import cluster as rmq  # noqa: E402
from envfixtures.drivers.rabbitmq import definitions as defs  # noqa: E402
from envfixtures.drivers.rabbitmq import topology as topo  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "broker.json"


def start_once(size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-rmq-") as tmp:
        spec = rmq.plan(Path(tmp) / "c", size, prefix=f"bench{size}")
        cluster = rmq.Cluster(spec, standalone_spawner(Path(tmp), f"ef-bench-{Path(tmp).name}", component="broker"))
        t0 = time.monotonic()
        try:
            cluster.start(timeout=180)
            took = time.monotonic() - t0
        finally:
            stopped = cluster.stop()
        return took, stopped


def verify_bench(queues: int, runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-rmq-") as tmp:
        spec = rmq.plan(Path(tmp) / "c", 3, prefix="benchq")
        cluster = rmq.Cluster(spec, standalone_spawner(Path(tmp), f"ef-bench-{Path(tmp).name}", component="broker"))
        try:
            cluster.start(timeout=180)
            mgmt = spec.management(0, timeout=120)
            mgmt.put_vhost("bench")
            raw = {
                "exchanges": [],
                "bindings": [],
                "policies": [],
                "queues": [
                    {"name": f"bench.q{i:05d}", "durable": True, "auto_delete": False, "arguments": {}}
                    for i in range(queues)
                ],
            }
            desired = defs.validate(raw, Path("<bench>"))
            conn = pika.BlockingConnection(
                pika.ConnectionParameters(
                    rmq.LOOPBACK,
                    spec.nodes[0].amqp_port,
                    "bench",
                    pika.PlainCredentials(spec.admin_user, spec.admin_password),
                )
            )
            ch = conn.channel()
            t0 = time.monotonic()
            for q in raw["queues"]:
                ch.queue_declare(q["name"], durable=True)
            create = time.monotonic() - t0
            bulk, passive = [], []
            for _ in range(runs):
                t0 = time.monotonic()
                lines = topo.diff(desired, topo.read_live(mgmt, "bench"))
                bulk.append(time.monotonic() - t0)
                assert lines == [], lines[:5]
                t0 = time.monotonic()
                for q in raw["queues"]:
                    ch.queue_declare(q["name"], passive=True)
                passive.append(time.monotonic() - t0)
            conn.close()
            mgmt.close()
        finally:
            cluster.stop()
    return {
        "queues": queues,
        "create_by_amqp_s": round(create, 2),
        "bulk_runs_s": [round(x, 3) for x in bulk],
        "passive_runs_s": [round(x, 3) for x in passive],
        "bulk_median_s": round(statistics.median(bulk), 3),
        "passive_median_s": round(statistics.median(passive), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queues", type=int, default=10_000)
    args = parser.parse_args()
    one, three, stops = [], [], []
    for _ in range(args.runs):
        took, stop = start_once(1)
        one.append(took)
        took, stop3 = start_once(3)
        three.append(took)
        stops += [stop, stop3]
    verify = verify_bench(args.queues, args.runs)
    result = {
        "runs": args.runs,
        "one_node_start_s": [round(x, 2) for x in one],
        "three_node_cluster_s": [round(x, 2) for x in three],
        "one_node_median_s": round(statistics.median(one), 2),
        "three_node_median_s": round(statistics.median(three), 2),
        "ratio": round(statistics.median(three) / statistics.median(one), 2),
        "stop_sigkill_max_s": round(max(stops), 3),
        "verify": verify,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    rows = [
        ("one node, start to management API answering", f"{result['one_node_median_s']:.2f} s", ""),
        (
            "3-node cluster, start to formed",
            f"{result['three_node_median_s']:.2f} s",
            f"{result['ratio']}x (goal <= 1.5x)",
        ),
        (
            f"verify {args.queues} queues, bulk management reads + diff",
            f"{verify['bulk_median_s']:.3f} s",
            "goal <= 3 s",
        ),
        (f"verify {args.queues} queues, passive declares", f"{verify['passive_median_s']:.3f} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{f'measure (median of {args.runs})':<{width}}  {'time':>9}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>9}  {note}")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
