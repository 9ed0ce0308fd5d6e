"""The host checks of tests_infra/test_hosts.py fail when a component listens on 0.0.0.0 (or on a port nobody
recorded), proven on a pytester project whose ``listener`` component (envfixtures.testing) really does so."""

from __future__ import annotations

import pytest

from conftest import Project

LISTENER = """
from envfixtures import registry
registry.register("listener", "envfixtures.testing:Listener")
"""

HOST_TEST = """
from envfixtures import hostcheck, hosts

def test_listener_host(envfixtures_env, listener):
    [local] = hosts.inventory(envfixtures_env, "listener")
    host = local.connect()
    seen = hostcheck.component_listeners(host, envfixtures_env.journal.processes(), "listener")
    assert listener["port"] in [s.port for s, _ in seen]
    problems = hostcheck.check_component(host, envfixtures_env, "listener", listener)
    assert not problems, "\\n".join(problems)
"""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ([], None),
        (["--env-set", "listener_host=0.0.0.0"], "not on loopback"),
        (["--env-set", "listener_extra_port=true"], "listens on unrecorded port 127.0.0.1:"),
    ],
    ids=["loopback-passes", "all-interfaces-fails", "unrecorded-port-fails"],
)
def test_host_check_reports_a_listener(project: Project, settings: list[str], expected: str | None) -> None:
    project.pytester.makeconftest(LISTENER)
    project.pytester.makeini("[pytest]\nenv_components = listener\n")
    project.pytester.makepyfile(test_hosts=HOST_TEST)
    result = project.run(*settings)
    if expected is None:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([f"*listener: *{expected}*"])
    assert project.alive() == [], "the listener was stopped by the teardown"
