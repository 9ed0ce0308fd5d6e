"""Ports come from below the kernel's ephemeral range, are free, and are not handed out twice."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from envfixtures.core import ports


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ports.json"
    monkeypatch.setattr(ports, "REGISTRY", path)
    return path


def test_ports_are_below_the_ephemeral_range_and_distinct(registry: Path) -> None:
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == 50
    assert all(ports.LOWEST <= p < ports.ephemeral_range()[0] for p in picked)
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # each one really was free


def _busy_port_with_a_free_neighbour() -> tuple[socket.socket, int]:
    """A listening socket on a port below the ephemeral range whose next port is free: no outgoing connection can
    take either of them (the kernel picks local ports of connections from the ephemeral range only)."""
    for _ in range(200):
        port = random.randint(ports.LOWEST, ports.ephemeral_range()[0] - 2)
        busy = socket.socket()
        try:
            busy.bind(("127.0.0.1", port))
        except OSError:
            busy.close()
            continue
        if ports._bindable("127.0.0.1", port + 1):
            busy.listen()
            return busy, port
        busy.close()
    raise AssertionError("no busy/free pair of ports below the ephemeral range")


def test_a_port_in_use_is_never_handed_out(registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy, taken = _busy_port_with_a_free_neighbour()
    with busy:
        monkeypatch.setattr(ports, "LOWEST", taken)
        monkeypatch.setattr(ports, "ephemeral_range", lambda: (taken + 2, taken + 3))
        assert ports.free_port() == taken + 1  # the only free one in [taken, taken+1]
        with pytest.raises(ports.BuildError, match="no free TCP port"):
            ports.free_port()  # taken+1 is now held by the registry, taken is busy
