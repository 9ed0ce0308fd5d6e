"""The database and broker start beside the peers': pytest-postgresql's ``postgresql_proc`` and pytest-rabbitmq's
``rabbitmq_proc`` starting the same servers, in the same go, alternating.

Run: ``python bench/bench_peers.py [--runs 3]`` (pytest-postgresql and pytest-rabbitmq installed: the ``bench`` tox
env has them). Prints a markdown table of medians, writes ``bench/results/peers.json``.

- ours, database: :func:`envfixtures.drivers.postgres.server.start` (initdb ``--no-sync``, ``postgres`` as the
  managed process) until a connection answers;
- ours, broker: a one-node :class:`envfixtures.drivers.rabbitmq.cluster.Cluster` until its management API answers
  (what the ``broker`` component waits for);
- peers: each fixture's setup timed inside a pytest run of its own (a generated test calls
  ``request.getfixturevalue``), the fixture's teardown not counted; pytest's own start is not counted either.
  ``pg_ctl`` refuses root, so as root the peer's ``pg_ctl`` runs as the ``postgres`` user (through ``runuser``),
  the user our driver runs the server as; ``rabbitmq_proc`` is ready when its AMQP port accepts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envfixtures.core.ports import free_port  # noqa: E402
from envfixtures.core.processes import standalone_spawner  # noqa: E402
from envfixtures.drivers.postgres import server as pg  # noqa: E402
from envfixtures.drivers.rabbitmq import cluster as rmq  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"

PEER_TEST = """
import os, time
from pathlib import Path

def test_peer_start(request):
    t0 = time.monotonic()
    request.getfixturevalue(os.environ["PEER_FIXTURE"])
    Path(os.environ["PEER_OUT"]).write_text(repr(time.monotonic() - t0))
"""


def ours_database() -> float:
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        os.chmod(tmp, 0o755)
        spawn = standalone_spawner(Path(tmp) / "proc", f"ef-bench-{Path(tmp).name}", component="database")
        t0 = time.monotonic()
        server = pg.start(workdir=Path(tmp) / "work", port=free_port(), spawn=spawn, may_change_under=Path(tmp))
        took = time.monotonic() - t0
        server.stop(timeout=10)
        return took


def ours_broker() -> float:
    with tempfile.TemporaryDirectory(prefix="bench-rmq-") as tmp:
        spec = rmq.plan(Path(tmp) / "c", 1, prefix="peerbench")
        cluster = rmq.Cluster(spec, standalone_spawner(Path(tmp), f"ef-bench-{Path(tmp).name}", component="broker"))
        t0 = time.monotonic()
        try:
            cluster.start(timeout=120)
            return time.monotonic() - t0
        finally:
            cluster.stop()


def peer(fixture: str, options: list[str]) -> float:
    """The setup time of ``fixture`` in a pytest run of its own (the peers' plugins only)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    try:
        (tmp / "test_peer.py").write_text(PEER_TEST)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        out = tmp / "seconds"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp),
            "LANG": "C.UTF-8",
            "PEER_FIXTURE": fixture,
            "PEER_OUT": str(out),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        tmp.chmod(0o755)  # traversable by the server user (see PG_CTL_AS_SERVER_USER)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:envfixtures"]
        argv += [f"--basetemp={tmp / 'base'}", *options, "test_peer.py"]
        proc = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{fixture}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
        return float(out.read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# pg_ctl refuses root: as root, the peer's pg_ctl runs as the postgres user (the user our driver runs the server
# as), its data directory's parent (pytest's 0700 temp dir, where its log file goes too) handed to that user first.
PG_CTL_AS_SERVER_USER = """#!/bin/sh
prev=
for a in "$@"; do
  case "$prev" in
    --pgdata|-D) parent=$(dirname "$a"); chmod 0755 "$(dirname "$parent")"; chown {user}: "$parent" ;;
  esac
  prev=$a
done
exec runuser -u {user} -- {pg_ctl} "$@"
"""


def peer_database() -> float:
    pg_ctl = str(pg.BIN_DIR / "pg_ctl")
    if os.geteuid() != 0:
        return peer("postgresql_proc", [f"--postgresql-exec={pg_ctl}", "--postgresql-host=127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="bench-pgctl-") as tmp:
        wrapper = Path(tmp) / "pg_ctl"
        wrapper.write_text(PG_CTL_AS_SERVER_USER.format(user=pg.SERVER_USER, pg_ctl=pg_ctl))
        wrapper.chmod(0o755)
        return peer("postgresql_proc", [f"--postgresql-exec={wrapper}", "--postgresql-host=127.0.0.1"])


def peer_broker() -> float:
    return peer(
        "rabbitmq_proc",
        [
            f"--rabbitmq-server={rmq.RABBITMQ_BIN / 'rabbitmq-server'}",
            f"--rabbitmq-ctl={rmq.RABBITMQ_BIN / 'rabbitmqctl'}",
        ],
    )


def measure(runs: int) -> dict:
    raw: dict[str, list[float]] = {"ours_database": [], "peer_database": [], "ours_broker": [], "peer_broker": []}
    for _ in range(runs):
        raw["ours_database"].append(ours_database())
        raw["peer_database"].append(peer_database())
        raw["ours_broker"].append(ours_broker())
        raw["peer_broker"].append(peer_broker())
    med = {k: statistics.median(v) for k, v in raw.items()}
    return {
        "runs": runs,
        "raw_s": {k: [round(x, 3) for x in v] for k, v in raw.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "database_ratio": round(med["ours_database"] / med["peer_database"], 2),
        "broker_ratio": round(med["ours_broker"] / med["peer_broker"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    result = measure(args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    m = result["median_s"]
    print(f"| start (median of {args.runs}) | ours s | peer s | ours ÷ peer |")
    print("|---|---|---|---|")
    print(f"| PostgreSQL (postgresql_proc) | {m['ours_database']:.2f} | {m['peer_database']:.2f} | "
          f"{result['database_ratio']:.2f}× |")  # fmt: skip
    print(f"| RabbitMQ one node (rabbitmq_proc) | {m['ours_broker']:.2f} | {m['peer_broker']:.2f} | "
          f"{result['broker_ratio']:.2f}× |")  # fmt: skip
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
