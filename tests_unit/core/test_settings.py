"""Typed settings: a key nobody declares and a value of the wrong type are refused, naming them."""

from __future__ import annotations

import dataclasses

import pytest

from envfixtures.core import settings
from envfixtures.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Broker:
    broker_nodes: int = 3
    broker_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class Apps:
    apps_strict: bool = False
    apps_label: str = "x"


def test_values_are_typed_and_defaults_fill_the_rest() -> None:
    values = {"broker_nodes": "5", "apps_strict": "yes", "apps_label": " blue "}
    assert settings.parse(Broker, values) == Broker(broker_nodes=5, broker_timeout=60.0)
    assert settings.parse(Apps, values) == Apps(apps_strict=True, apps_label="blue")


def test_an_unknown_key_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        settings.check({"broker_node": "3"}, [Broker, Apps])
    assert str(caught.value) == (
        "--env-set: unknown setting 'broker_node'; known: apps_label, apps_strict, broker_nodes, broker_timeout"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"broker_nodes": "three"}, "--env-set broker_nodes='three': expected a whole number"),
        ({"broker_timeout": "soon"}, "--env-set broker_timeout='soon': expected a number"),
        ({"apps_strict": "maybe"}, "--env-set apps_strict='maybe': expected true or false"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(") + "$"):
        settings.check(values, [Broker, Apps])


def test_the_environment_declares_its_own_keys() -> None:
    assert settings.parse(settings.EnvironmentSettings, {"quiet": "true"}).quiet is True
    assert "rules_off" in settings.known_keys([settings.EnvironmentSettings])


def test_settings_from_the_environment_are_the_variables_of_the_prefix_their_keys_lowercased() -> None:
    environ = {
        "ENVFIXTURES_SETTING_BROKER_ADMIN_PASSWORD": " s3cret ",
        "ENVFIXTURES_SETTING_": "no key",
        "ENVFIXTURES_SHA": "not a setting",
        "BROKER_NODES": "3",
    }
    assert settings.from_environ(environ) == {"broker_admin_password": "s3cret"}


def test_a_secret_on_a_command_line_is_warned_about_naming_the_variable_to_use_instead() -> None:
    assert settings.on_command_line_warning([], "--env-set") is None
    warning = settings.on_command_line_warning(["sleeper_password", "broker_admin_password"], "--env-set")
    assert warning is not None
    assert warning.startswith("--env-set broker_admin_password, sleeper_password: a command line shows in `ps`")
    assert warning.endswith("give a secret as ENVFIXTURES_SETTING_BROKER_ADMIN_PASSWORD=... in the environment instead")


def test_the_command_line_overrides_the_environment_which_overrides_the_ini() -> None:
    values, given = settings.layered(
        ["broker_nodes=1", "rules_off=a", "quiet=true"],
        "ini env_settings",
        ["broker_nodes=3"],
        "--env-set",
        {"ENVFIXTURES_SETTING_BROKER_NODES": "2", "ENVFIXTURES_SETTING_RULES_OFF": "b"},
    )
    assert values == {"broker_nodes": "3", "rules_off": "b", "quiet": "true"}
    assert given == {"broker_nodes": "3"}
    with pytest.raises(ConfigError, match="^--env-set: expected KEY=VALUE, got 'novalue'$"):
        settings.layered([], "ini env_settings", ["novalue"], "--env-set", {})
