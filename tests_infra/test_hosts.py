"""Host checks with testinfra: each built component's processes run, listen only on loopback and only on their
recorded ports, its data directory is closed to others, and no secret sits in a world-readable file.

On ``local`` the host is this machine; on ``aws`` the component's instances (found by their ``Role`` tag,
reached over SSH through the bastion, see :mod:`envfixtures.drivers.hosts.inventory`), where the process checks need the
journal of the host's own services and are skipped with the reason.
"""

from __future__ import annotations

import pytest

from envfixtures.core.environment import Environment
from envfixtures.core.facts import Facts
from envfixtures.drivers.hosts import checks as hostcheck
from envfixtures.drivers.hosts import inventory as hosts


def _check(env: Environment, component: str, facts: Facts) -> None:
    if env.backend != "local":
        found = hosts.inventory(env, component)
        if not found:
            pytest.skip(f"{component} has no host of its own on {env.backend} (a managed service)")
        for h in found:
            assert h.connect().run("true").rc == 0, f"{h.spec} (role {h.role}) is not reachable over SSH"
        pytest.skip("process and port checks on aws hosts need their service units; reachability checked")
    [local] = hosts.inventory(env, component)
    seen = hostcheck.component_listeners(local.connect(), env.journal.processes(), component)
    assert seen, f"{component}: no listening socket found for its processes; the checks would prove nothing"
    problems = hostcheck.check_component(local.connect(), env, component, facts)
    # Secrets: over the env's whole state directory, once this component (and its secrets) exist.
    problems += hostcheck.check_secrets_not_world_readable(env.dir, env.secret_values())
    assert not problems, "\n".join(problems)


def test_broker_host(envfixtures_env: Environment, broker: Facts) -> None:
    _check(envfixtures_env, "broker", broker)


def test_database_host(envfixtures_env: Environment, database: Facts) -> None:
    _check(envfixtures_env, "database", database)


def test_scheduler_host(envfixtures_env: Environment, scheduler: Facts) -> None:
    _check(envfixtures_env, "scheduler", scheduler)


def test_aws_host(envfixtures_env: Environment, aws: Facts) -> None:
    _check(envfixtures_env, "aws", aws)


def test_api_host(envfixtures_env: Environment, api: Facts) -> None:
    _check(envfixtures_env, "api", api)
