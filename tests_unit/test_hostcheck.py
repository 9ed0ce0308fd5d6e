"""envfixtures.drivers.hosts.checks's parsing and port records (the checks themselves run in
tests_infra/test_hosts.py and, against a listener on 0.0.0.0, in tests_plugin/test_host_checks.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from envfixtures.core.waiting import wait_for
from envfixtures.drivers.hosts import checks as hostcheck

SS = """\
LISTEN 0      128    127.0.0.1:47485 0.0.0.0:* users:(("beam.smp",pid=7916,fd=17))
LISTEN 0      4096   0.0.0.0:5432 0.0.0.0:* users:(("postgres",pid=10,fd=5),("postgres",pid=11,fd=5))
LISTEN 0      4096   [::1]:8080 [::]:* users:(("python3",pid=12,fd=3))
LISTEN 0      4096   *:9090 *:* users:(("node",pid=13,fd=3))
LISTEN 0      4096   [::]:22 [::]:*
"""


def test_parse_ss_reads_address_port_and_pids() -> None:
    found = hostcheck.parse_ss(SS)
    assert [(s.address, s.port, s.pids, s.loopback) for s in found] == [
        ("127.0.0.1", 47485, (7916,), True),
        ("0.0.0.0", 5432, (10, 11), False),
        ("::1", 8080, (12,), True),
        ("*", 9090, (13,), False),
        ("::", 22, (), False),
    ]


def test_ports_in_facts_from_port_keys_and_urls_not_from_other_numbers() -> None:
    facts = {
        "port": 5432,
        "pid": 4242,
        "url": "http://127.0.0.1:8080",
        "dsn": "postgresql://u:p@127.0.0.1:6543/db",
        "amqp": [{"host": "127.0.0.1", "port": 5672}],
        "management_urls": ["http://127.0.0.1:15672/"],
        "endpoint": "127.0.0.1:7000",
        "timeout": 30,
        "enabled": True,
    }
    assert hostcheck.ports_in_facts(facts) == {5432, 8080, 6543, 5672, 15672, 7000}


def test_ports_configured_reads_argv_flags_and_port_variables() -> None:
    argv = [sys.executable, "-c", "import sys; sys.stdin.read()", "--port", "2345", "-p=3456", "--other", "99"]
    env = {**os.environ, "RABBITMQ_DIST_PORT": "12345", "PORTS": "4001,4002", "NOT_A_PORTAL": "7"}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE)
    try:
        # Right after Popen returns the child may still be inside exec (its cmdline reads empty).
        wait_for(lambda: Path(f"/proc/{proc.pid}/cmdline").read_bytes() != b"", what="the child's exec", timeout=10)
        assert {2345, 3456, 12345, 4001, 4002} <= hostcheck.ports_configured(proc.pid)
        assert not {99, 7} & hostcheck.ports_configured(proc.pid)
    finally:
        proc.communicate(b"", timeout=10)
    assert hostcheck.ports_configured(999_999_999) == set()


def test_secret_in_a_world_readable_file_is_named_without_the_value(tmp_path: Path) -> None:
    secret = "s3cr3t-value-123"
    (tmp_path / "open.log").write_text(f"password={secret}\n")
    (tmp_path / "open.log").chmod(0o644)
    (tmp_path / "closed.conf").write_text(secret)
    (tmp_path / "closed.conf").chmod(0o600)
    (tmp_path / "clean.log").write_text("nothing here")
    (tmp_path / "clean.log").chmod(0o644)
    problems = hostcheck.check_secrets_not_world_readable(tmp_path, [secret])
    assert len(problems) == 1 and "open.log" in problems[0] and secret not in problems[0]


def test_running_check_names_a_dead_journaled_process() -> None:
    journal = [
        ("broker/node-0", os.getpid(), hostcheck.processes.start_time(os.getpid())),
        ("broker/epmd", 999_999_999, 1),
        ("database/pg", 999_999_998, 1),
    ]
    assert hostcheck.check_running(journal, "broker") == ["broker: process broker/epmd (pid 999999999) is not running"]
