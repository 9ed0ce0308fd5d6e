"""A platform's configuration ([tool.envfixtures]): found, checked before anything is built, honoured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from envfixtures import rules
from envfixtures.core import config, registry
from envfixtures.core.config import PlatformConfig
from envfixtures.core.environment import Environment
from envfixtures.core.errors import ConfigError, TemplateError
from envfixtures.rules.policy import POLICY_RULES

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = config.find(ROOT)


def make_env(root: Path, table: dict, components: list[str]) -> Environment:
    return Environment(
        name="ef-0123456-conf", sha="0" * 40, backend="local", root=root, home=root / "home",
        settings={"quiet": "true"}, components=components, config=PlatformConfig(str(root / "pyproject.toml"), table),
    )  # fmt: skip


def test_found_from_a_directory_below_the_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.envfixtures]\ncomponents = ["broker"]\n')
    (tmp_path / "checks" / "deep").mkdir(parents=True)
    found = config.find(tmp_path / "checks" / "deep")
    assert found.source == str(tmp_path / "pyproject.toml") and found.components == ("broker",)


def test_a_pyproject_without_the_table_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.envfixtures]\ncomponents = ["broker"]\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert config.find(tmp_path / "sub").components == ("broker",)


def test_the_reference_platform_is_configuration_not_code() -> None:
    assert REFERENCE.section("api")["app"] == "orders-api"
    assert REFERENCE.section("aws")["parameters"]["DbMasterPassword"] == "database_password"
    code = "\n".join(p.read_text() for p in (ROOT / "envfixtures").rglob("*.py"))
    for name in ("orders-api", "platform_services", '"platform"', "DbMasterPassword", "mesos-agent"):
        assert name not in code, f"{name} is a name of the reference platform: it belongs in its pyproject.toml"


def test_an_unknown_top_level_key_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    env = make_env(tmp_path, {"componets": ["broker"]}, ["broker"])
    with pytest.raises(ConfigError) as caught:
        env.check_settings()
    message = str(caught.value)
    assert "[tool.envfixtures]: unknown key 'componets'; known:" in message and "components" in message
    assert "\n" not in message


def test_an_unknown_key_of_a_component_is_refused_with_its_known_keys(tmp_path: Path) -> None:
    env = make_env(tmp_path, {"database": {"nmae": "ledger"}}, ["database"])
    with pytest.raises(
        ConfigError, match=r"\[tool\.envfixtures\.database\]: unknown key 'nmae'; known: migrations, name, role"
    ):
        env.check_settings()


def test_a_value_of_the_wrong_type_names_its_key(tmp_path: Path) -> None:
    env = make_env(tmp_path, {"apps": {"requires": "database"}}, ["apps"])
    with pytest.raises(ConfigError, match=r"\[tool\.envfixtures\.apps\] requires = 'database': expected a list"):
        env.check_settings()


def test_a_missing_configured_path_is_named_in_one_line_before_anything_is_built(tmp_path: Path) -> None:
    env = make_env(tmp_path, {"topology": {"definitions": "broker/defs.json"}}, ["broker", "topology"])
    with pytest.raises(ConfigError) as caught:
        env.check()
    message = str(caught.value)
    assert "[tool.envfixtures.topology] definitions: 'broker/defs.json' is not a file under" in message
    assert "\n" not in message and not env.dir.exists()


def test_the_app_the_api_fronts_is_required_at_configure_time(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "web.json").write_text('{"id": "web", "cmd": "sleep 60"}\n')
    table = {"apps": {"templates": "apps"}, "api": {"health_path": "/up"}, "rules": {"off": list(POLICY_RULES)}}
    env = make_env(tmp_path, table, ["apps", "scheduler", "api"])
    with pytest.raises(ConfigError) as caught:
        env.check(["api"])
    assert str(caught.value).endswith("[tool.envfixtures.api] app: not set (the id of the app the api fronts)")
    assert not env.dir.exists()


def test_configured_paths_are_the_ones_read(tmp_path: Path) -> None:
    """The broker definitions at a path of the platform's choosing are the ones checked."""
    (tmp_path / "mq").mkdir()
    binding = {"source": "nope", "destination": "q", "destination_type": "queue", "routing_key": "", "vhost": "/"}
    definitions = {"queues": [{"name": "q", "vhost": "/", "durable": True}], "bindings": [binding]}
    (tmp_path / "mq" / "topology.json").write_text(json.dumps(definitions))
    env = make_env(tmp_path, {"topology": {"definitions": "mq/topology.json"}}, ["broker", "topology"])
    with pytest.raises(TemplateError, match=r"mq/topology\.json:"):
        env.check(["topology"])


def test_apps_require_what_the_platform_configures(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    env = make_env(
        tmp_path, {"apps": {"templates": "apps", "requires": ["topology"]}}, ["apps", "scheduler", "topology", "broker"]
    )
    assert env.required_closure(["apps"]) == ["scheduler", "broker", "topology", "apps"]


def test_an_unknown_component_points_at_how_to_bring_one(tmp_path: Path) -> None:
    env = make_env(tmp_path, {"components": ["cache"]}, ["cache"])
    with pytest.raises(ConfigError, match="unknown component 'cache'.*docs/adopting.md"):
        env.check_settings()


def test_a_component_of_an_installed_distribution_is_registered_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry-point group envfixtures.components: ``name`` for every backend, ``name.backend`` for one."""
    dist = tmp_path / "acme_parts-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-parts\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[envfixtures.components]\ncache = acme_parts:Cache\nqueue.aws = acme_parts:StackQueue\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "COMPONENTS", {k: dict(v) for k, v in registry.COMPONENTS.items()})
    registry._from_entry_points()
    assert registry.implementation("cache", "local") == "acme_parts:Cache"
    assert registry.implementation("queue", "aws") == "acme_parts:StackQueue"
    with pytest.raises(ConfigError, match="no implementation on backend 'local'"):
        registry.implementation("queue", "local")
    assert "acme_parts" not in sys.modules, "registering imports nothing"


def test_a_hook_result_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ConfigError, match='expected "module:Class"'):
        registry.register_many({"cache": "acme_parts.Cache"}, "pytest_envfixtures_components")
    with pytest.raises(ConfigError, match="unknown backend 'gcp'"):
        registry.register_many({"cache": {"gcp": "a:B"}}, "pytest_envfixtures_components")


def test_a_refused_template_says_how_to_fix_or_silence_it_in_the_users_terms() -> None:
    findings = [
        rules.Finding("infra/stack.yaml", "line 12", "cfn-db-backups", "backups are off"),
        rules.Finding("infra/stack.yaml", "line 30", "cfn-imdsv2", "IMDSv1 allowed"),
    ]
    with pytest.raises(TemplateError) as caught:
        rules.refuse(findings)
    message = str(caught.value)
    assert message.startswith("infra/stack.yaml:line 12: backups are off [cfn-db-backups]")
    assert "[tool.envfixtures.rules] off" in message and "envfixtures check" in message
    assert "tox" not in message and "\n" not in message


def test_rules_settings_and_ids_are_checked(tmp_path: Path) -> None:
    from envfixtures.rules import policy

    with pytest.raises(ConfigError, match=r"off / --env-set rules_off: cfn-nope not a policy rule"):
        policy.from_platform(PlatformConfig("p.toml", {"rules": {"off": ["cfn-nope"]}}))
    with pytest.raises(ConfigError, match=r"\[tool\.envfixtures\.rules\.cfn-private-sources\]: unknown key 'roles'"):
        policy.from_platform(PlatformConfig("p.toml", {"rules": {"cfn-private-sources": {"roles": ["x"]}}}))
    held = policy.from_platform(PlatformConfig("p.toml", {"rules": {"off": ["cfn-db-backups"]}}), "cfn-imdsv2")
    assert held.off == {"cfn-db-backups", "cfn-imdsv2"}
