"""An N-node RabbitMQ cluster of real nodes started as child processes, on loopback only.

The recipe (see ``docs/local-standins.md``): one epmd of our own on a free port, one directory
and one environment per node, a random cookie, the management plugin (its API on node 1 only, its agent on
the others: less to boot on two cores), and a cluster formed at boot by
``classic_config`` peer discovery. All nodes start at once with the same node list. The first node to
reach its database step takes the peer-discovery lock, finds no peer after two short retries, starts a
fresh cluster (feature flags included) and releases the lock; the others wait on the lock and then join
it. (A node that joins while the fresh node still enables its feature flags fails with
``schema_integrity_check_failed``: the lock is what prevents it, so keep every node on the same config.)

The administrator is the broker's *default user* (set in ``rabbitmq.conf``), so the ``guest`` user is
never created. Processes are started through a :class:`~envfixtures.core.processes.Spawner` (``ctx.spawn`` in an
environment, :func:`~envfixtures.core.processes.standalone_spawner` outside one), which journals them.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from envfixtures.core.errors import BuildError
from envfixtures.core.ports import free_port
from envfixtures.core.private import private_dir, write_private
from envfixtures.core.processes import Process, Spawner, minimal_environ, stop_groups
from envfixtures.core.waiting import wait_for
from envfixtures.drivers.rabbitmq import ENABLED_PLUGINS
from envfixtures.drivers.rabbitmq.management import Management, ManagementError

log = logging.getLogger(__name__)

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")  # not /usr/sbin: as root that wrapper switches user and cookie
EPMD = "epmd"
LOOPBACK = "127.0.0.1"

# Distribution listener on loopback only (the package's defaults already turn scheduler busy-waiting off).
ERL_ARGS = "-kernel inet_dist_use_interface {127,0,0,1}"
# Extra emulator flags of every node (none by default). Measured by bench/bench_erlang.py against the other choices in
# the same go (issue 17): one scheduler per node (+S 1:1), fewer async and dirty threads, did not make a 3-node start
# faster here, in wall or CPU time (the nodes do not busy-wait already); the management API on node 1 only did.


@dataclass(frozen=True)
class NodeSpec:
    """One node: its Erlang name, its loopback ports and its directory."""

    index: int
    name: str
    amqp_port: int
    management_port: int
    dist_port: int
    dir: Path

    @property
    def management_url(self) -> str:
        return f"http://{LOOPBACK}:{self.management_port}"

    @property
    def log_file(self) -> Path:
        return self.dir / "log" / f"{self.name}.log"


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to start (and talk to) a cluster; written to disk by :func:`plan`."""

    dir: Path
    epmd_port: int
    nodes: tuple[NodeSpec, ...]
    admin_user: str
    admin_password: str = field(repr=False)
    #: Erlang emulator flags of every node's VM (scheduler and thread counts), after ``ERL_ARGS``
    erl_args: str = ""
    #: ``"first"``: the management plugin (the API) on node 1 only, the others run its agent (their stats reach
    #: node 1's API); ``"all"``: the API on every node
    management_on: str = "first"

    def has_management(self, node: NodeSpec) -> bool:
        """Whether ``node`` serves the management API (its port is chosen either way)."""
        return self.management_on == "all" or node.index == 1

    def plugins_file(self, node: NodeSpec) -> Path:
        return self.dir / ("enabled_plugins" if self.has_management(node) else "enabled_plugins.agent")

    def management(self, node: int = 0, timeout: float = 30.0) -> Management:
        """A management client authenticated as the administrator, talking to node ``node`` (0-based)."""
        return Management(self.nodes[node].management_url, self.admin_user, self.admin_password, timeout=timeout)

    def node_environ(self, node: NodeSpec) -> dict[str, str]:
        """The environment of a node's server process (and of CLI calls aimed at it): the minimal one of every
        process of the environment (no ``RABBITMQ_*`` or ``ERL_*`` of the gate's), and the node's own.

        Every Erlang node started with it listens on loopback only: the scripts pass
        ``RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS`` to the server and ``RABBITMQ_CTL_ERL_ARGS`` to the CLI tools'
        node, ``ERL_ZFLAGS`` reaches any other ``erl`` (RabbitMQ's own short-lived ``epmd-starter`` node, which
        has neither, listened on 0.0.0.0 before the server's distribution was started with the VM:
        :func:`_boot_distribution`), and ``ERL_EPMD_ADDRESS`` keeps an epmd that any of them would start on
        loopback. ``tests_unit/rabbitmq/test_loopback_listeners.py`` samples every listener to prove it.
        """
        missing = self.dir / "nonexistent"  # nothing under /etc/rabbitmq is ever read
        return {
            **minimal_environ(),
            "HOME": str(self.dir / "home"),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "ERL_ZFLAGS": ERL_ARGS,
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(missing / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(missing / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.plugins_file(node)),
            "RABBITMQ_MNESIA_BASE": str(node.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.dir / "log"),
            "RABBITMQ_PID_FILE": str(node.dir / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{ERL_ARGS} {self.erl_args} {_boot_distribution(node)}".replace(
                "  ", " "
            ),
            "RABBITMQ_CTL_ERL_ARGS": ERL_ARGS,
        }


def _boot_distribution(node: NodeSpec) -> str:
    """Erlang arguments that start the node's distribution with the VM, on its own port (on loopback by ERL_ARGS).

    Left to itself, RabbitMQ starts its distribution late (rabbit_prelaunch_dist) and, before that, starts a
    short-lived node to make sure epmd runs and probes its distribution port by listening on it on every
    interface (0.0.0.0 and [::]). A node whose distribution already runs skips both.
    """
    port = node.dist_port
    return f"-sname {node.name} -kernel inet_dist_listen_min {port} -kernel inet_dist_listen_max {port}"


def plan(
    directory: Path,
    size: int = 3,
    *,
    admin_user: str = "envfixtures-admin",
    prefix: str = "rabbit",
    erl_args: str = "",
    management_on: str = "first",
) -> ClusterSpec:
    """Choose ports, generate the cookie and the admin password, and write every node's files.

    ``directory`` should be private (mode 0700): it holds the cookie and the config with the password.
    """
    if size < 1:
        raise BuildError(f"a RabbitMQ cluster needs at least one node, not {size}")
    private_dir(directory)
    password = secrets.token_urlsafe(24)
    nodes = tuple(
        NodeSpec(i, f"{prefix}-{i}@localhost", free_port(), free_port(), free_port(), directory / f"node-{i}")
        for i in range(1, size + 1)
    )
    if management_on not in ("all", "first"):
        raise BuildError(f"management_on={management_on!r}: 'all' or 'first'")
    spec = ClusterSpec(directory, free_port(), nodes, admin_user, password, erl_args, management_on)
    home = directory / "home"
    private_dir(home)
    cookie = home / ".erlang.cookie"
    write_private(cookie, secrets.token_hex(20))  # created 0600 before the secret is in it
    cookie.chmod(0o400)
    write_private(directory / "enabled_plugins", f"[{','.join(ENABLED_PLUGINS)}].\n")
    write_private(directory / "enabled_plugins.agent", "[rabbitmq_management_agent].\n")
    for node in nodes:
        private_dir(node.dir / "log")
        write_private(node.dir / "rabbitmq.conf", _config(spec, node))  # it holds the admin password
    saved = asdict(replace(spec, admin_password=""))
    write_private(directory / SPEC_FILE, json.dumps(saved, default=str, indent=1))
    return spec


SPEC_FILE = "spec.json"  # the plan, without the password: what load() reads back


def load(directory: Path, admin_password: str) -> ClusterSpec:
    """The :class:`ClusterSpec` :func:`plan` wrote in ``directory`` (to restart a node of a running cluster);
    the password is not in the file: it is given (the broker's facts hold it)."""
    raw = json.loads((Path(directory) / SPEC_FILE).read_text())
    nodes = tuple(NodeSpec(**{**n, "dir": Path(n["dir"])}) for n in raw.pop("nodes"))
    return ClusterSpec(**{**raw, "dir": Path(raw["dir"]), "nodes": nodes, "admin_password": admin_password})


def _config(spec: ClusterSpec, node: NodeSpec) -> str:
    lines = [
        f"listeners.tcp.1 = {LOOPBACK}:{node.amqp_port}",
        "log.console = false",
        "log.file.level = info",
        f"default_user = {spec.admin_user}",
        f"default_pass = {spec.admin_password}",
        "default_user_tags.administrator = true",
        "default_permissions.configure = .*",
        "default_permissions.read = .*",
        "default_permissions.write = .*",
        "loopback_users = none",
        "collect_statistics_interval = 1000",
    ]
    if spec.has_management(node):
        lines += [f"management.tcp.ip = {LOOPBACK}", f"management.tcp.port = {node.management_port}"]
    if len(spec.nodes) > 1:
        lines.append("cluster_formation.peer_discovery_backend = classic_config")
        lines += [f"cluster_formation.classic_config.nodes.{n.index} = {n.name}" for n in spec.nodes]
        lines.append("cluster_formation.discovery_retry_limit = 2")
        lines.append("cluster_formation.discovery_retry_interval = 200")
    return "\n".join(lines) + "\n"


class Cluster:
    """A running (or starting) cluster described by a :class:`ClusterSpec`, its processes started by ``spawn``."""

    def __init__(self, spec: ClusterSpec, spawn: Spawner) -> None:
        self.spec = spec
        self._spawn = spawn
        self.epmd: Process | None = None
        #: node name -> its server process
        self.nodes: dict[str, Process] = {}

    # --- start ----------------------------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> None:
        """Start epmd, then every node at once; return when all nodes run as one cluster."""
        spec = self.spec
        environ = spec.node_environ(spec.nodes[0])
        self.epmd = self._spawn("epmd", [EPMD, "-port", str(spec.epmd_port), "-address", LOOPBACK], env=environ)
        self.epmd.wait_ready(lambda: _port_open(spec.epmd_port), what=f"epmd on port {spec.epmd_port}", timeout=10)
        for node in spec.nodes:
            self._start_node(node)
        self.wait_formed(timeout=timeout)

    def _start_node(self, node: NodeSpec) -> None:
        argv = [str(RABBITMQ_BIN / "rabbitmq-server")]
        self.nodes[node.name] = self._spawn(node.name.split("@")[0], argv, env=self.spec.node_environ(node))

    def restart_node(self, name: str, *, timeout: float = 120.0) -> None:
        """Start node ``name`` again (after :meth:`kill_node`) on its own data; return once the cluster is whole.
        It rejoins as the member it was: its database directory still names the cluster."""
        node = next(n for n in self.spec.nodes if n.name == name)
        self._start_node(node)
        self.wait_formed(timeout=timeout)

    def wait_formed(self, *, timeout: float = 120.0) -> None:
        """Wait until every management API answers and node 1 sees all nodes running (the ``rabbit`` application
        of each started, joined; with the API on node 1 only, that is all there is to wait for)."""
        names = {n.name for n in self.spec.nodes}
        clients = [self.spec.management(n.index - 1, timeout=5) for n in self.spec.nodes if self.spec.has_management(n)]

        def formed() -> bool:
            for client in clients:
                client.overview()
            running = {n["name"] for n in clients[0].nodes() if n.get("running")}
            return running >= names

        try:
            wait_for(
                formed,
                what=f"RabbitMQ cluster of {len(names)} node(s) in {self.spec.dir}",
                timeout=timeout,
                retry_on=(ManagementError,),
                failed=self._dead_reason,
                first_delay=0.25,
                max_delay=0.5,
            )
        finally:
            for client in clients:
                client.close()

    def _dead_reason(self) -> str | None:
        """Why the cluster cannot form: a process of it exited (its output and, for a node, its own log)."""
        if self.epmd is not None and (reason := self.epmd.exit_reason()):
            return reason
        for name, process in self.nodes.items():
            if reason := process.exit_reason():
                return f"{reason}\n{self.log_tail(name)}"
        return None

    def log_tail(self, name: str, lines: int = 8) -> str:
        """The last lines of a node's own log file (never contains the password)."""
        node = next((n for n in self.spec.nodes if n.name == name), None)
        if node is None or not node.log_file.exists():
            return "no node log"
        tail = node.log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"last lines of {node.log_file}:\n" + "\n".join(tail)

    # --- CLI ----------------------------------------------------------------------------------------------

    def cli(self, tool: str, *args: str, node: int = 0, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a RabbitMQ CLI tool (``rabbitmqctl``, ``rabbitmq-diagnostics``...) against node ``node`` (0-based).

        The CLI is an Erlang node of its own: it gets the node's environment, so it finds our epmd and cookie and
        its distribution listener is on loopback like the servers' (see :meth:`ClusterSpec.node_environ`).
        """
        target = self.spec.nodes[node]
        argv = [str(RABBITMQ_BIN / tool), "-n", target.name, *args]
        return subprocess.run(
            argv,
            env=self.spec.node_environ(target),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # --- faults and health ----------------------------------------------------------------------------

    def kill_node(self, name: str) -> None:
        """SIGKILL a node's whole process group (wrapper and beam.smp) and wait until every member is gone."""
        self.nodes[name].stop(timeout=0, sig=signal.SIGKILL)

    # --- stop ------------------------------------------------------------------------------------------

    def stop(self, *, graceful: bool = False, grace: float = 15.0) -> float:
        """Stop every node at once, then epmd; return the seconds it took.

        By default every node's group gets SIGKILL at the same moment: the cluster's data is thrown
        away afterwards, and a graceful stop with the management plugin takes 5-8 s even in parallel.
        ``graceful=True`` sends SIGTERM to all nodes together and SIGKILL after ``grace`` seconds.
        """
        took = stop_groups([p.record for p in self.nodes.values()], grace=grace if graceful else 0.0)
        if self.epmd is not None:
            self.epmd.stop(timeout=2.0)
        for process in self.nodes.values():
            process.stop(timeout=1.0)  # reaps what is gone; signals nothing that is not the node itself
        return took


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def health_problems(nodes: Sequence[Mapping[str, object]], expected: Sequence[str]) -> list[str]:
    """What is wrong with a cluster, one line per problem, each naming its node (empty when healthy).

    ``nodes`` is what ``GET /api/nodes`` returns; ``expected`` the node names that should be members.
    """
    problems: list[str] = []
    seen = {str(n.get("name")): n for n in nodes}
    for name in expected:
        node = seen.get(name)
        if node is None:
            problems.append(f"node {name} is not a member of the cluster")
            continue
        if not node.get("running"):
            problems.append(f"node {name} is not running")
            continue
        if node.get("partitions"):
            problems.append(f"node {name} reports a partition with {node['partitions']}")
        if node.get("mem_alarm"):
            problems.append(f"node {name} has a memory alarm")
        if node.get("disk_free_alarm"):
            problems.append(f"node {name} has a disk-free alarm")
    for name in sorted(set(seen) - set(expected)):
        problems.append(f"node {name} is a member but was not expected")
    return problems
