"""Host-level checks of a built environment on one host, through a testinfra host (``local://`` or ``ssh://``).

For a component: its journaled processes run; every TCP socket its processes listen on is bound to
loopback and on a *recorded* port; its data directory is not readable by others. For the environment:
no secret value sits in a world-readable file under its state directory.

A component's processes are the members of its journaled process groups and their descendants (the
local scheduler's tasks are its children in sessions of their own). A port is recorded when the
component's facts name it (a ``*port*`` key or a ``host:port`` URL) or when our code configured the
listening process with it (a ``--port``/``-port``/``-p`` argument, or a ``*_PORT`` / ``PORT<n>`` /
``PORTS`` variable in its environment — RabbitMQ's distribution port and epmd's are configured so).

Each check returns a list of problems, one line each (empty: passed); they never raise on a finding.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from envfixtures.core import processes

_SS_LINE = re.compile(r"^LISTEN\s+\d+\s+\d+\s+(?P<local>\S+)\s+\S+\s*(?P<users>.*)$")
_PID = re.compile(r"pid=(\d+)")
_URL_PORT = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]+(?::[^/\s@]*@[^/\s:]+)?:(\d{1,5})(?:/|$)", re.I)
_HOST_PORT = re.compile(r"^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$", re.I)
_PORT_FLAGS = ("--port", "-port", "-p", "--listen-port")
_PORT_VAR = re.compile(r"(^|_)PORT(\d*|S)?$")
MAX_SCAN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket: its local address, port and the processes holding it."""

    address: str
    port: int
    pids: tuple[int, ...]

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False  # "*" means every interface

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port} (pids {', '.join(map(str, self.pids)) or '?'})"


def parse_ss(output: str) -> list[Listener]:
    """Listeners from ``ss -ltnpH`` output."""
    out = []
    for line in output.splitlines():
        m = _SS_LINE.match(line.strip())
        if not m:
            continue
        host, _, port = m.group("local").rpartition(":")
        host = host.strip("[]")
        if not port.isdigit():
            continue
        out.append(Listener(host, int(port), tuple(int(p) for p in _PID.findall(m.group("users")))))
    return out


def listeners(host: Any) -> list[Listener]:
    """Every listening TCP socket of ``host`` (a testinfra host), with the owning PIDs (needs root)."""
    return parse_ss(host.check_output("ss -ltnpH"))


# ---------------------------------------------------------------------------- processes of a component


def _proc_table() -> dict[int, int]:
    """pid -> ppid of every process of this machine."""
    return {p.pid: p.info["ppid"] for p in psutil.process_iter(["ppid"]) if p.info["ppid"] is not None}


def live_journaled(journal_processes: Iterable[tuple[str, int, int]], component: str) -> list[tuple[str, int]]:
    """(key, pid) of the component's journaled processes that still run (same PID and start time)."""
    prefix = f"{component}/"
    return [
        (key, pid) for key, pid, st in journal_processes if key.startswith(prefix) and processes.start_time(pid) == st
    ]


def component_pids(journal_processes: Iterable[tuple[str, int, int]], component: str) -> set[int]:
    """The members of the component's live journaled groups and all their descendants."""
    pids: set[int] = set()
    for _, leader in live_journaled(journal_processes, component):
        pids.add(leader)
        pids.update(processes.group_members(leader))
    children: dict[int, list[int]] = {}
    for pid, ppid in _proc_table().items():
        children.setdefault(ppid, []).append(pid)
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in pids:
                pids.add(child)
                todo.append(child)
    return pids


# ---------------------------------------------------------------------------- recorded ports


def ports_in_facts(facts: Any, key: str = "") -> set[int]:
    """Ports a component's facts name: ints under a ``*port*`` key, and ports of URLs / host:port strings."""
    found: set[int] = set()
    if isinstance(facts, Mapping):
        for k, v in facts.items():
            found |= ports_in_facts(v, str(k))
    elif isinstance(facts, (list, tuple)):
        for v in facts:
            found |= ports_in_facts(v, key)
    elif isinstance(facts, bool):
        pass
    elif isinstance(facts, int) and "port" in key.lower():
        found.add(facts)
    elif isinstance(facts, str):
        if "port" in key.lower() and facts.isdigit():
            found.add(int(facts))
        for pattern in (_URL_PORT, _HOST_PORT):
            m = pattern.match(facts.strip())
            if m:
                found.add(int(m.group(1)))
    return {p for p in found if 0 < p < 65536}


def ports_configured(pid: int) -> set[int]:
    """Ports the process was told to use: port flags in its argv, port variables in its environment."""
    found: set[int] = set()
    try:
        proc = psutil.Process(pid)
        args = proc.cmdline()
        environ = proc.environ()
    except psutil.Error:  # gone, or not ours to read
        return found
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in _PORT_FLAGS:
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            if value.isdigit():
                found.add(int(value))
    for name, value in environ.items():
        if _PORT_VAR.search(name):
            found.update(int(v) for v in value.split(",") if v.strip().isdigit())
    return found


# ---------------------------------------------------------------------------- checks


def check_running(journal_processes: Iterable[tuple[str, int, int]], component: str) -> list[str]:
    """The component's journaled processes run (a component that starts none has nothing to check)."""
    journaled = [(k, p, s) for k, p, s in journal_processes if k.startswith(f"{component}/")]
    live = {key for key, _ in live_journaled(journaled, component)}
    return [f"{component}: process {key} (pid {pid}) is not running" for key, pid, _ in journaled if key not in live]


def component_listeners(
    host: Any, journal_processes: Iterable[tuple[str, int, int]], component: str
) -> list[tuple[Listener, list[int]]]:
    """The listening sockets held by the component's processes, with those processes' PIDs."""
    pids = component_pids(list(journal_processes), component)
    out = []
    for sock in listeners(host):
        mine = [p for p in sock.pids if p in pids]
        if mine:
            out.append((sock, mine))
    return out


def check_listening(
    host: Any, journal_processes: Iterable[tuple[str, int, int]], component: str, facts: Mapping[str, Any]
) -> list[str]:
    """The component's processes listen only on loopback, and only on recorded ports."""
    recorded = ports_in_facts(facts)
    problems = []
    for sock, mine in component_listeners(host, journal_processes, component):
        if not sock.loopback:
            problems.append(f"{component}: listens on {sock}, not on loopback (bind it to 127.0.0.1)")
        allowed = recorded.union(*(ports_configured(p) for p in mine))
        if sock.port not in allowed:
            problems.append(f"{component}: listens on unrecorded port {sock} (recorded: {sorted(allowed)})")
    return problems


def check_private_dir(host: Any, path: Path | str, component: str) -> list[str]:
    """The component's data directory is not readable (nor searchable) by others."""
    f = host.file(str(path))
    if not f.exists:
        return []
    if f.mode & 0o007:
        return [f"{component}: data directory {path} has mode {f.mode:o}; others may read it (want 0700)"]
    return []


def check_secrets_not_world_readable(root: Path | str, secrets: Iterable[str]) -> list[str]:
    """No file under ``root`` that others may read holds a secret value (the file is named, never the value)."""
    values = [s.encode() for s in set(secrets) if s and len(s) >= 6]
    if not values:
        return []
    problems = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IROTH or st.st_size > MAX_SCAN_BYTES:
                    continue
                content = path.read_bytes()
            except OSError:
                continue
            if any(v in content for v in values):
                problems.append(f"{path} (mode {stat.S_IMODE(st.st_mode):o}) is world-readable and holds a secret")
    return problems


def check_component(host: Any, env: Any, component: str, facts: Mapping[str, Any]) -> list[str]:
    """Every host check of one built component on ``host`` (this machine): the list of problems.

    ``env`` is the :class:`~envfixtures.core.environment.Environment`; its journal says which processes
    the component started, its ``workdir`` is the component's data directory.
    """
    journaled = env.journal.processes()
    problems = check_running(journaled, component)
    problems += check_listening(host, journaled, component, facts)
    problems += check_private_dir(host, env.workdir(component), component)
    return problems
