"""Free loopback TCP ports for the processes of a local environment.

Two ways a port that was free a moment ago gets taken before its server binds it, both seen here:
the kernel hands it to an outgoing connection as its local port (``bind(0)`` picks from the same
ephemeral range that ``connect`` uses), or another build picks it too. So ports come from *below* the
kernel's ephemeral range (``connect`` never uses those), and every pick is written to a machine-wide
registry under a file lock, so that no two builds — in any worker or environment — get the same one
while its server is starting. A pick is kept out of circulation for ``HOLD_SECONDS``; after that,
a port still in use is refused by the bind check.
"""

from __future__ import annotations

import json
import random
import socket
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from envfixtures.core.errors import BuildError

LOWEST = 20000
HOLD_SECONDS = 1800
REGISTRY = Path(tempfile.gettempdir()) / "envfixtures-ports.json"


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free, outside the ephemeral range, and handed to nobody else lately."""
    low = LOWEST
    high = ephemeral_range()[0] - 1
    if high <= low:  # an unusual ephemeral range: fall back to the kernel's choice
        return _bindable(host, 0) or 0
    with FileLock(str(REGISTRY) + ".lock"):
        now = time.time()
        try:
            taken = {int(p): t for p, t in json.loads(REGISTRY.read_text()).items() if now - t < HOLD_SECONDS}
        except (OSError, ValueError):
            taken = {}
        for _ in range(500):
            port = random.randint(low, high)
            if port in taken or not _bindable(host, port):
                continue
            taken[port] = now
            REGISTRY.write_text(json.dumps(taken))
            return port
    raise BuildError(f"no free TCP port on {host} between {low} and {high} after 500 tries")


def _bindable(host: str, port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return None
        return sock.getsockname()[1]
