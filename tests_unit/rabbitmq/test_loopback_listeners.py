"""Every Erlang node the broker starts listens on loopback only: the servers and the CLI's own node (``rabbitmqctl``,
``rabbitmq-diagnostics``), and no short-lived node of RabbitMQ's own.

A thread samples the TCP listeners of the machine through the whole life of a cluster (start, CLI calls, stop) and
keeps those of the cluster's processes: the ones carrying the test's marker (every process the spawner starts, and
their descendants) and the descendants of this test process (the CLI calls). Left to itself, each server starts
an ``epmd-starter`` node that listens on 0.0.0.0 for about 10 ms (it registers with epmd and halts; the issue
caught one) and probes its distribution port by listening on it on every interface for less than that. A
sampler that scans every process's sockets (``ss -ltnp``, ``psutil.net_connections``: 50-100 ms a round here)
sees those only by chance. This one asks the kernel for its listening sockets (sock_diag over netlink, as ``ss``
does: 0.1 ms, where reading ``/proc/net/tcp`` takes 7 ms here) every few milliseconds, and looks for the owner of
a new one only among the cluster's processes, judged once each as they appear; a test checks that it sees a
marked process's 10 ms listener on 0.0.0.0. Every Erlang VM of the cluster lives long enough to be judged, so
the command line of each is checked too: distribution on loopback.

Before the fix (``ERL_ZFLAGS`` and the distribution started with the VM, see ``ClusterSpec.node_environ``), each
run of the cluster test failed here on ``beam.smp -sname epmd-starter-N on 0.0.0.0:<ephemeral port>``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from envfixtures.core.errors import WaitTimeout
from envfixtures.core.processes import MARKER, find_marked, standalone_spawner
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq import cluster as rmq

pytestmark = pytest.mark.integration

INTERVAL = 0.003

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_DONE, _NLMSG_ERROR = 3, 2
_TCP_LISTEN = 10
_INODE_OFFSET = 68  # in struct inet_diag_msg: 4 bytes, the 48-byte socket id, expires, rqueue, wqueue, uid


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    what: str  # the node's -sname, or the CLI tool, or the program: to tell the nodes apart in a failure
    ip: str
    port: int

    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.ip)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return address.is_loopback

    def __str__(self) -> str:
        return f"{self.name}[{self.pid}] {self.what} on {self.ip}:{self.port}"


def kernel_listeners() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket of this network namespace (IPv4 and IPv6),
    asked of the kernel over netlink (sock_diag, for listeners only)."""
    found = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        for family in (socket.AF_INET, socket.AF_INET6):
            request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN) + bytes(48)
            header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0)
            nl.send(header + request)
            done = False
            while not done:
                data = nl.recv(1 << 16)
                offset = 0
                while offset < len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == _NLMSG_DONE:
                        done = True
                        break
                    if kind == _NLMSG_ERROR:
                        raise OSError("sock_diag refused the dump of listening sockets")
                    msg = offset + 16
                    msg_family = data[msg]
                    port = struct.unpack_from(">H", data, msg + 4)[0]
                    raw = data[msg + 8 : msg + 8 + (4 if msg_family == socket.AF_INET else 16)]
                    inode = struct.unpack_from("=I", data, msg + _INODE_OFFSET)[0]
                    found[inode] = (socket.inet_ntop(msg_family, raw), port)
                    offset += (length + 3) & ~3
    return found


def test_kernel_listeners_sees_a_listener_on_every_address_with_its_inode() -> None:
    """The netlink reader itself: a wildcard IPv4 and IPv6 listener, and a loopback one, with their inodes."""
    sockets = [socket.socket(socket.AF_INET), socket.socket(socket.AF_INET6), socket.socket(socket.AF_INET)]
    try:
        for sock, host in zip(sockets, ["0.0.0.0", "::", "127.0.0.1"], strict=True):
            sock.bind((host, 0))
            sock.listen()
        listening = kernel_listeners()
        for sock in sockets:
            inode = os.fstat(sock.fileno()).st_ino
            host, port = sock.getsockname()[:2]
            assert listening[inode] == (host, port)
    finally:
        for sock in sockets:
            sock.close()


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _what(proc: psutil.Process) -> str:
    argv = proc.cmdline()
    for flag in ("-sname", "-name"):
        if flag in argv[:-1]:
            return f"{flag} {argv[argv.index(flag) + 1]}"
    if "-escript" in argv and "-extra" in argv[:-1]:  # a CLI node: erl ... -escript main ... -extra ESCRIPT args
        return f"escript {Path(argv[argv.index('-extra') + 1]).name}"
    return " ".join(argv[:3])


class ListenerSampler:
    """Samples, in a thread, the TCP listeners of the processes of ``marker`` and of this process's descendants."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.me = os.getpid()
        self.seen: set[Listener] = set()
        self.samples = 0
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener-sampler", daemon=True)
        self._judged: dict[int, psutil.Process | None] = {}  # pid -> the process when it is the cluster's
        self._attributed: set[int] = set()  # listening inodes already looked up (the cluster's or not)
        #: pid -> (what, command line), of every Erlang VM (beam.smp) of the cluster seen running
        self.nodes: dict[int, tuple[str, list[str]]] = {}
        #: a listener not on loopback -> its command line, marker and parents
        self.details: dict[Listener, str] = {}

    def __enter__(self) -> ListenerSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _ours(self, proc: psutil.Process) -> bool:
        try:
            if proc.environ().get(MARKER) == self.marker:
                return True
        except psutil.Error:
            pass
        try:
            return any(parent.pid == self.me for parent in proc.parents())
        except psutil.Error:
            return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(INTERVAL)
        except Exception as exc:  # noqa: BLE001 - reported by the test: a sampler that stopped proves nothing
            self.error = exc

    def _judge_new_processes(self) -> None:
        pids = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        for pid in self._judged.keys() - pids:
            del self._judged[pid]
        for pid in pids - self._judged.keys():
            try:
                proc = psutil.Process(pid)
                self._judged[pid] = proc if pid != self.me and self._ours(proc) else None
            except psutil.Error:
                continue

    def sample(self) -> None:
        listening = kernel_listeners()
        self._judge_new_processes()
        self.samples += 1
        new = listening.keys() - self._attributed
        ours = sorted((p for p in self._judged.values() if p is not None), key=lambda p: -p.pid)  # newest first
        for proc in ours:
            if proc.pid not in self.nodes:
                try:
                    argv = proc.cmdline()  # empty once the VM has exited and waits to be reaped: judged next time
                    if proc.name() == "beam.smp" and argv:
                        self.nodes[proc.pid] = (_what(proc), argv)
                except psutil.Error:
                    pass
        for proc in ours:
            if not new:
                break
            if not proc.is_running():  # exited, its PID perhaps taken by another process: judged again
                self._judged.pop(proc.pid, None)
                continue
            found = _socket_inodes(proc.pid) & new
            for inode in found:
                ip, port = listening[inode]
                try:
                    listener = Listener(proc.pid, proc.name(), _what(proc), ip, port)
                    if not listener.loopback():  # for the failure's message: what exactly it is, and whose
                        parents = [(p.pid, p.name()) for p in proc.parents()]
                        self.details[listener] = f"{proc.cmdline()} {MARKER}={proc.environ().get(MARKER)} {parents}"
                except psutil.Error:  # gone meanwhile: its /proc entry is needed for its name
                    listener = Listener(proc.pid, "?", "?", ip, port)
                self.seen.add(listener)
            new -= found
        self._attributed |= listening.keys()

    def exposed(self) -> list[Listener]:
        return sorted((x for x in self.seen if not x.loopback()), key=str)

    def report(self) -> str:
        lines = [f"{x}  {self.details.get(x, '')}".rstrip() for x in sorted(self.seen, key=str)]
        return f"{self.samples} samples; listeners seen:\n  " + "\n  ".join(lines)


def _stopped_cleanly(marker: str) -> None:
    try:  # erl_child_setup and its helpers have process groups of their own and exit just after the node
        wait_for(lambda: not find_marked(marker), what="the test's RabbitMQ processes gone", timeout=10)
    except WaitTimeout:
        raise AssertionError(f"processes of the test's RabbitMQ survived its stop: {find_marked(marker)}") from None


@pytest.fixture
def marker() -> Iterator[str]:
    marker = f"ef-test-{uuid.uuid4().hex[:10]}"
    yield marker
    _stopped_cleanly(marker)


def test_the_sampler_sees_a_short_lived_wildcard_listener_of_a_marked_process(tmp_path: Path, marker: str) -> None:
    """What the test below relies on: a marked process listening on 0.0.0.0 for 10 ms is seen, and exposed."""
    code = "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 0)); s.listen(); time.sleep(0.01)"
    spawn = standalone_spawner(tmp_path, marker)
    with ListenerSampler(marker) as sampler:
        time.sleep(0.1)
        process = spawn("brief", ["python3", "-c", code])
        process.popen.wait(timeout=30)
        time.sleep(0.1)
    assert sampler.error is None, f"the sampler failed: {sampler.error!r}"
    assert [(x.pid, x.ip) for x in sampler.exposed()] == [(process.pid, "0.0.0.0")], sampler.report()


@pytest.mark.parametrize("size", [1, 2])
def test_every_listener_of_a_cluster_start_cli_call_and_stop_is_on_loopback(
    tmp_path: Path, marker: str, size: int
) -> None:
    spec = rmq.plan(tmp_path / "cluster", size, prefix=f"loopback{size}")
    cluster = rmq.Cluster(spec, standalone_spawner(tmp_path / "processes", marker, component="broker"))
    with ListenerSampler(marker) as sampler:
        try:
            cluster.start(timeout=180)
            status = cluster.cli("rabbitmqctl", "status", node=size - 1)
            assert status.returncode == 0, status.stdout + status.stderr
            ping = cluster.cli("rabbitmq-diagnostics", "ping")
            assert ping.returncode == 0, ping.stdout + ping.stderr
        finally:
            cluster.stop()
            _stopped_cleanly(marker)
        time.sleep(0.05)

    assert sampler.error is None, f"the sampler failed: {sampler.error!r}"
    assert sampler.exposed() == [], f"listeners not on loopback: {sampler.exposed()}\n{sampler.report()}"
    # The sampler saw what it must have seen, or "nothing exposed" would mean nothing: each server's distribution,
    # AMQP and (where it runs) management listeners, epmd, the CLI nodes, and each server's epmd-starter node.
    ports = {x.port for x in sampler.seen}
    expected = {spec.epmd_port} | {p for n in spec.nodes for p in (n.amqp_port, n.dist_port)}
    expected |= {n.management_port for n in spec.nodes if spec.has_management(n)}
    assert expected <= ports, f"the sampler missed {sorted(expected - ports)}\n{sampler.report()}"
    cli_nodes = {x.what for x in sampler.seen if x.what.startswith("escript ")}
    assert {"escript rabbitmqctl", "escript rabbitmq-diagnostics"} <= cli_nodes, sampler.report()

    # Every Erlang VM of the cluster lives long enough to be judged (150 ms and more): the servers, the CLI nodes
    # and none other (RabbitMQ's epmd-starter is not run: the distribution starts with the VM), each started with
    # its distribution on loopback.
    kinds = {what for what, _ in sampler.nodes.values()}
    assert kinds == {f"-sname {n.name}" for n in spec.nodes} | {"escript rabbitmqctl", "escript rabbitmq-diagnostics"}
    for pid, (what, argv) in sampler.nodes.items():
        assert _dist_on_loopback(argv), f"beam.smp[{pid}] {what} not started with its distribution on loopback: {argv}"


def _dist_on_loopback(argv: list[str]) -> bool:
    """The command line sets ``-kernel inet_dist_use_interface`` to a loopback address (the last setting wins)."""
    values = [argv[i + 2] for i in range(len(argv) - 2) if argv[i : i + 2] == ["-kernel", "inet_dist_use_interface"]]
    return bool(values) and values[-1] in ("{127,0,0,1}", "{0,0,0,0,0,0,0,1}")
