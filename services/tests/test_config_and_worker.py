"""Configuration from the environment and the worker's poison detection, without servers."""

from __future__ import annotations

import uuid

import pytest
from platform_services import config, worker

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1:5/d", "AMQP_URL": "amqp://u:pw@127.0.0.1:5672/v",
        "GIT_SHA": "a" * 40, "PORT0": "8080"}  # fmt: skip


def test_settings_come_from_the_environment():
    s = config.load(BASE)
    assert (s.port, s.host, s.exchange, s.git_sha) == (8080, "127.0.0.1", "platform.events", "a" * 40)


@pytest.mark.parametrize("missing", ["AMQP_URL", "GIT_SHA", "PORT0", "DATABASE_URL"])
def test_a_missing_variable_is_named(missing):
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(config.ConfigError) as err:
        config.load(env)
    assert missing.rstrip("0") in str(err.value) or missing in str(err.value)


def test_a_config_error_never_shows_the_password():
    with pytest.raises(config.ConfigError) as err:
        config.load({**BASE, "PORT0": "pw-not-a-port"})
    assert "pw" not in str(err.value).replace("PORT0", "")


def test_settings_repr_hides_credentials():
    assert "pw@" not in repr(config.load(BASE))


def test_pg_variables_replace_database_url():
    env = {k: v for k, v in BASE.items() if k != "DATABASE_URL"}
    assert config.load({**env, "PGHOST": "127.0.0.1"}).database == ""


def test_worker_parses_an_order_created_message():
    oid = uuid.uuid4()
    assert worker.parse(f'{{"event": "order.created", "id": "{oid}"}}'.encode()) == oid


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"{}", b'{"id": "nope"}', b'{"id": 3}', b"\xff"])
def test_worker_calls_unprocessable_messages_poison(body):
    with pytest.raises(worker.Poison):
        worker.parse(body)


def test_amqp_password_is_put_into_the_url():
    s = config.load({**BASE, "AMQP_URL": "amqp://app@127.0.0.1:5672/ef-1%2Fx", "AMQP_PASSWORD": "p/w@:x"})
    assert s.amqp_url == "amqp://app:p%2Fw%40%3Ax@127.0.0.1:5672/ef-1%2Fx"
