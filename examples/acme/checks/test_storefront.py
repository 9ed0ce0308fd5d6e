"""The storefront: both apps healthy in the scheduler, the api (a proxy over the healthy storefront tasks)
serving acme's index page, and the webroot component serving the same file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from acme_support import eventually

MARKER = "acme-storefront-open-7c1e"


def test_storefront_and_ledger_writer_are_healthy_on_the_revision(
    marathon: Any, apps: Any, envfixtures_env: Any
) -> None:
    group = apps["group"]
    expected = {f"{group}/storefront", f"{group}/ledger-writer"}
    assert set(apps["app_ids"]) == expected

    def problems() -> list[str]:
        live = {a["id"]: a for a in marathon("/v2/apps?embed=apps.tasks")["apps"] if a["id"] in expected}
        out = [f"{i}: missing" for i in sorted(expected - set(live))]
        for app_id, app in sorted(live.items()):
            counts = (app["instances"], app["tasksRunning"], app["tasksHealthy"])
            if len(set(counts)) != 1 or app["instances"] < 1:
                out.append(f"{app_id}: instances, running, healthy = {counts}")
            labels = app.get("labels") or {}
            if (labels.get("ACME_REVISION"), labels.get("ACME_ENVIRONMENT")) != (
                envfixtures_env.sha,
                envfixtures_env.name,
            ):
                out.append(f"{app_id}: labels {labels}")
        return out

    found: list[str] = []

    def none() -> bool:
        found[:] = problems()
        return not found

    eventually(none, what="every app healthy and labelled", timeout=30)
    assert found == []


def test_api_serves_the_storefront_index(api: Any) -> None:
    base = str(api["base_url"]).rstrip("/")
    with requests.Session() as http:
        for path in ("/", "/index.html"):
            answer = http.get(base + path, timeout=10)
            assert answer.status_code == 200, f"{path}: {answer.status_code}"
            assert MARKER in answer.text, f"{path}: no marker in {answer.text[:200]!r}"
        assert http.get(base + "/no-such-page.html", timeout=10).status_code == 404


def test_webroot_serves_the_configured_directory(webroot: Any) -> None:
    directory = Path(webroot["directory"])
    assert directory.is_absolute() and directory.name == "static"
    answer = requests.get(f"{webroot['url']}/index.html", timeout=10)
    assert answer.status_code == 200
    assert answer.content == (directory / "index.html").read_bytes()
    assert MARKER in answer.text
