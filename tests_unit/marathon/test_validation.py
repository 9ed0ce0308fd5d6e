"""Validation of app definitions and templates: Marathon's 422 paths, refused before anything is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envfixtures.core.errors import TemplateError
from envfixtures.core.facts import Facts
from envfixtures.drivers.marathon import render
from envfixtures.drivers.marathon.validation import (
    absolute_id,
    group_unknown_fields,
    unknown_fields,
    validate_app,
    validate_group,
)

ROOT = Path(__file__).resolve().parents[2]
VALUES = {
    "sha": "a" * 40,
    "short_sha": "a" * 12,
    "env_name": "ef-aaaaaaa-x1",
    "group": "/ef-aaaaaaa-x1",
    "root": str(ROOT),
}


@pytest.mark.parametrize(
    ("app", "path", "text"),
    [
        ({"id": "/a"}, "/", "must either contain one of 'cmd' or 'args'"),
        ({"id": "/a", "cmd": "x", "args": ["y"]}, "/", "must either contain one of 'cmd' or 'args'"),
        ({"id": "/a", "cmd": ""}, "/cmd", "must not be empty"),
        ({"id": "/a", "cmd": "x", "instances": -1}, "/instances", "is less than 0"),
        (
            {"id": "/a", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 1.5}},
            "/upgradeStrategy/minimumHealthCapacity",
            "is greater than 1",
        ),
        ({"id": "/Bad_Id", "cmd": "x"}, "/id", "does not match"),
        (
            {"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "HTTP", "portIndex": 2}]},
            "/healthChecks(0)",
            "port indices",
        ),
        (
            {"id": "/a", "cmd": "x", "healthChecks": [{"protocol": "COMMAND"}]},
            "/healthChecks(0)",
            "command is required",
        ),
        ({"id": "/a", "cmd": "x", "fetch": [{"url": "x"}]}, "/fetch(0)/uri", "error.path.missing"),
        ({"id": "/a", "cmd": "x", "cpus": "many"}, "/cpus", "error.expected.jsnumber"),
        ({"id": "/a", "cmd": "x", "env": {"P": {"secret": "s1"}}}, "/env/P", "undefined secret"),
    ],
)
def test_marathon_422_paths(app: dict, path: str, text: str) -> None:
    details = validate_app(app)
    assert path in [d["path"] for d in details], details
    assert any(text in e for d in details if d["path"] == path for e in d["errors"]), details


def test_valid_apps_pass() -> None:
    assert validate_app({"id": "web", "cmd": "x", "healthChecks": [{"protocol": "HTTP", "portIndex": 0}]}) == []
    assert validate_app({"id": "/a/b", "args": ["sleep", "1"], "tty": True}) == []  # newer RAML field accepted
    assert validate_app({"id": "/a", "container": {"type": "DOCKER", "docker": {"image": "x:1"}}}) == []


def test_unknown_fields_are_ignored_as_marathon_does_and_listed() -> None:
    """Marathon 1.10 ignores a field it does not know (the old validator refused it: a false error)."""
    app = {"id": "/a", "cmd": "x", "colour": "red", "container": {"type": "DOCKER", "docker": {"image": "i:1"}}}
    app["container"]["docker"]["requirePorts"] = True  # an old field Marathon's own system tests still send
    app["container"]["forcePullImage"] = True
    assert validate_app(app) == []
    assert unknown_fields(app) == ["/colour", "/container/docker/requirePorts", "/container/forcePullImage"]
    assert group_unknown_fields({"id": "/g", "owner": "me", "apps": [app]}) == [
        "/owner",
        "/apps(0)/colour",
        "/apps(0)/container/docker/requirePorts",
        "/apps(0)/container/forcePullImage",
    ]


def test_current_fields_nulls_and_default_ports() -> None:
    current = {
        "id": "/a",
        "cmd": "x",
        "container": {
            "type": "MESOS",
            "linuxInfo": {"seccomp": {"unconfined": True}},
            "volumes": [{"containerPath": "/run/s", "secret": "db"}],
        },
        "secrets": {"db": {"source": "db-password"}},
    }
    assert validate_app(current) == [] and unknown_fields(current) == []
    as_got = {"id": "/a", "cmd": "x", "user": None, "ipAddress": None, "residency": None, "container": None}
    assert validate_app(as_got) == []
    hc = [{"protocol": "HTTP", "portIndex": 0}]
    for network in ("HOST", "BRIDGE"):  # Marathon gives the app one default port
        docker = {"type": "DOCKER", "docker": {"image": "i:1", "network": network}}
        assert validate_app({"id": "/a", "container": docker, "healthChecks": hc}) == [], network
    none = {"id": "/a", "cmd": "x", "portDefinitions": [], "healthChecks": hc}
    assert validate_app(none)[0]["path"] == "/healthChecks(0)"


def test_group_paths_and_ids() -> None:
    details = validate_group(
        {"id": "/g", "apps": [{"id": "ok", "cmd": "x"}, {"id": "/elsewhere/x", "cmd": "x"}]}, group_id="/g"
    )
    assert details == [
        {"path": "/apps(1)/id", "errors": ["identifier /elsewhere/x is not child of /g. Hint: use relative paths."]}
    ]
    assert absolute_id("b/../c", "/g") == "/g/c" and absolute_id("/x", "/g") == "/x"


def _write(tmp_path: Path, name: str, app: object) -> Path:
    d = tmp_path / "marathon"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(app if isinstance(app, str) else json.dumps(app, indent=2))
    return d


def test_shipped_templates_render_and_validate() -> None:
    from envfixtures.components.apps import Apps, AppsConfig
    from envfixtures.core import config

    reference = AppsConfig(**config.find(ROOT).section("apps"))
    requires = Apps.requirements(AppsConfig(requires=tuple(reference.requires)))
    apps = render.render_dir(ROOT / reference.templates, render.check_context(VALUES, requires))
    assert apps
    for _, app in apps:
        assert app["labels"]["GIT_SHA"] == VALUES["sha"]
        assert app["container"]["docker"]["image"].endswith(":" + VALUES["sha"])


def test_bad_template_is_refused_with_file_and_marathon_path(tmp_path: Path) -> None:
    d = _write(tmp_path, "web.json", {"id": "web", "cmd": "x", "upgradeStrategy": {"minimumHealthCapacity": 3}})
    with pytest.raises(TemplateError) as err:
        render.render_dir(d, render.check_context(VALUES, ()))
    assert err.value.path.endswith("web.json") and err.value.where == "/upgradeStrategy/minimumHealthCapacity"
    assert "is greater than 1" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_template_json_syntax_error_names_line(tmp_path: Path) -> None:
    d = _write(tmp_path, "broken.json", '{\n  "id": "x",\n  "cmd": \n}')
    with pytest.raises(TemplateError, match=r"broken.json:line 4"):
        render.render_dir(d, render.check_context(VALUES, ()))


def test_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    d = _write(tmp_path, "a.json", {"id": "a", "cmd": "run {{ nope }}"})
    with pytest.raises(TemplateError, match=r"a.json:/cmd: unknown placeholder"):
        render.render_dir(d, render.check_context(VALUES, ()))
    d2 = _write(tmp_path / "b", "a.json", {"id": "a", "cmd": "x", "env": {"U": "{{ facts.broker.url }}"}})
    with pytest.raises(TemplateError, match="unknown placeholder"):  # broker is not a requirement
        render.render_dir(d2, render.check_context(VALUES, ("scheduler",)))


def test_secrets_only_through_env(tmp_path: Path) -> None:
    facts = {"database": Facts({"password": "s3cret-pw", "host": "h"}, secrets=["password"])}
    ok = _write(tmp_path, "a.json", {"id": "a", "cmd": "x", "env": {"DB_PASSWORD": "{{ facts.database.password }}"}})
    ((_, app),) = render.render_dir(ok, render.build_context(VALUES, facts))
    assert app["env"]["DB_PASSWORD"] == "s3cret-pw"
    bad = _write(tmp_path / "b", "a.json", {"id": "a", "cmd": "x", "labels": {"P": "{{ facts.database.password }}"}})
    with pytest.raises(TemplateError) as err:
        render.render_dir(bad, render.build_context(VALUES, facts))
    assert err.value.where == "/labels/P" and "s3cret-pw" not in str(err.value)


def test_secret_values_are_never_in_messages() -> None:
    from envfixtures.drivers.marathon.client import error_for

    err = error_for(
        "PUT",
        "/v2/groups/x",
        422,
        {"message": "Object is not valid", "details": [{"path": "/apps(0)/cmd", "errors": ["bad"]}]},
    )
    assert err.paths == ["/apps(0)/cmd"]
