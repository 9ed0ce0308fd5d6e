"""The cluster's plan on disk, without a server: what a restart reads back, and where the management API runs."""

from __future__ import annotations

from pathlib import Path

from envfixtures.drivers.rabbitmq import cluster as rmq


def test_the_saved_plan_reads_back_whole_and_holds_no_password(tmp_path: Path) -> None:
    spec = rmq.plan(tmp_path / "c", 3, prefix="plan")
    saved = (spec.dir / rmq.SPEC_FILE).read_text()
    assert spec.admin_password not in saved
    assert rmq.load(spec.dir, spec.admin_password) == spec
    node = spec.nodes[2]
    assert rmq.load(spec.dir, spec.admin_password).node_environ(node) == spec.node_environ(node)


def test_the_management_api_runs_on_node_1_only_and_its_agent_on_the_others(tmp_path: Path) -> None:
    spec = rmq.plan(tmp_path / "c", 3, prefix="plan")
    first, *others = spec.nodes
    assert spec.has_management(first) and not any(spec.has_management(n) for n in others)
    assert "rabbitmq_management]" in spec.plugins_file(first).read_text()
    for node in others:
        assert spec.plugins_file(node).read_text() == "[rabbitmq_management_agent].\n"
        assert spec.node_environ(node)["RABBITMQ_ENABLED_PLUGINS_FILE"] == str(spec.plugins_file(node))
        assert "management.tcp" not in (node.dir / "rabbitmq.conf").read_text()
    assert f"management.tcp.port = {first.management_port}" in (first.dir / "rabbitmq.conf").read_text()


def test_management_on_every_node_and_emulator_flags_when_asked(tmp_path: Path) -> None:
    spec = rmq.plan(tmp_path / "c", 2, prefix="plan", management_on="all", erl_args="+S 1:1")
    assert all(spec.has_management(n) for n in spec.nodes)
    assert "+S 1:1" in spec.node_environ(spec.nodes[1])["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert "+S" not in rmq.plan(tmp_path / "d", 1).node_environ(spec.nodes[0])["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    assert all("management.tcp.port" in (n.dir / "rabbitmq.conf").read_text() for n in spec.nodes)
