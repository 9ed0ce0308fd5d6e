"""The environment's moto server: the gate in front of moto (in-process, no moto) and moto's own check behind it.

The gate is asserted with requests signed exactly as boto3 signs them (botocore's signers), sent through
werkzeug's test client; moto's own authentication is asserted in a separate process (it keeps global state)
with the gate taken away, so each lock is shown to hold on its own.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from werkzeug.test import Client

from envfixtures.drivers.aws import clients, moto_server

ROOT = Path(__file__).resolve().parents[1]
KEY = clients.LocalCredentials.new()
CREDENTIALS = Credentials(KEY.access_key_id, KEY.secret_access_key)
QUERY_BODY = b"Action=DescribeStacks&Version=2010-05-15"
FORM = "application/x-www-form-urlencoded; charset=utf-8"


class Recorder:
    """The app behind the gate: records what reaches it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        self.seen.append({**{k: v for k, v in environ.items() if isinstance(v, str)}, "body": body})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"reached"]


def gate(shift: datetime.timedelta = datetime.timedelta(0)) -> tuple[Client, Recorder]:
    app = Recorder()
    now = lambda: datetime.datetime.now(datetime.UTC) + shift  # noqa: E731 - a clock to move
    return Client(moto_server.Gate(app, CREDENTIALS, now=now)), app


def signed(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    service: str = "cloudformation",
    credentials: Credentials = CREDENTIALS,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The arguments of a werkzeug request signed as boto3 signs it."""
    request = AWSRequest(method=method, url=f"http://localhost{path}", data=body, headers=dict(headers or {}))
    (S3SigV4Auth if service == "s3" else SigV4Auth)(credentials, service, "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    return {
        "method": method,
        "path": parts.path,
        "query_string": parts.query,
        "data": body,
        "headers": dict(request.headers.items()),
    }


def presigned(key: str = "build/app.tar.gz", expires: int = 600, credentials: Credentials = CREDENTIALS) -> str:
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    s3 = boto3.Session(
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        region_name="us-east-1",
        botocore_session=core,
    ).client("s3", endpoint_url="http://localhost", config=Config(signature_version="s3v4"))
    return s3.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": key}, ExpiresIn=expires)


def error(response: Any) -> str:
    assert response.status_code == 403, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_a_request_signed_with_the_key_passes_untouched() -> None:
    client, app = gate()
    response = client.open(**signed("POST", "/", body=QUERY_BODY, headers={"Content-Type": FORM}))
    assert response.status_code == 200 and response.get_data() == b"reached"
    assert app.seen[0]["body"] == QUERY_BODY, "moto reads the body the gate read"
    s3 = signed("PUT", "/bucket/build/app.tar.gz", body=b"artifact", service="s3")
    assert client.open(**s3).status_code == 200 and app.seen[1]["body"] == b"artifact"


def test_unsigned_other_keys_and_wrong_secrets_are_refused() -> None:
    client, app = gate()
    other = Credentials(clients.LocalCredentials.new().access_key_id, KEY.secret_access_key)
    wrong = Credentials(KEY.access_key_id, "w" * 40)
    cases = {
        "unsigned read": ({"method": "GET", "path": "/bucket/build/app.tar.gz"}, "AccessDenied"),
        "unsigned write": ({"method": "PUT", "path": "/bucket/build/app.tar.gz", "data": b"evil"}, "AccessDenied"),
        "another key": (signed("POST", "/", body=QUERY_BODY, credentials=other), "InvalidAccessKeyId"),
        "a wrong secret": (signed("POST", "/", body=QUERY_BODY, credentials=wrong), "SignatureDoesNotMatch"),
        "a wrong secret, s3": (
            signed("PUT", "/bucket/k", body=b"evil", service="s3", credentials=wrong),
            "SignatureDoesNotMatch",
        ),
        "a SigV2 header": (
            {"method": "GET", "path": "/bucket/k", "headers": {"Authorization": f"AWS {KEY.access_key_id}:c2ln"}},
            "IncompleteSignature",
        ),
    }
    for what, (request, code) in cases.items():
        assert f"<Code>{code}</Code>" in error(client.open(**request)), what
    assert app.seen == [], "nothing refused reached moto"


def test_a_body_or_a_path_changed_after_signing_is_refused() -> None:
    client, app = gate()
    request = signed("PUT", "/bucket/build/app.tar.gz", body=b"artifact", service="s3")
    assert "XAmzContentSHA256Mismatch" in error(client.open(**{**request, "data": b"tampered"}))
    assert "SignatureDoesNotMatch" in error(client.open(**{**request, "path": "/bucket/build/other.tar.gz"}))
    query = signed("POST", "/", body=QUERY_BODY, headers={"Content-Type": FORM})
    changed = QUERY_BODY.replace(b"DescribeStacks", b"DeleteStack&StackName=x")
    assert "SignatureDoesNotMatch" in error(client.open(**{**query, "data": changed}))
    assert app.seen == []


def test_an_old_or_future_signature_is_refused() -> None:
    for shift in (datetime.timedelta(minutes=16), -datetime.timedelta(minutes=16)):
        client, app = gate(shift)
        assert "RequestTimeTooSkewed" in error(client.open(**signed("POST", "/", body=QUERY_BODY)))
        assert app.seen == []


def test_a_presigned_url_is_checked_then_handed_to_moto_signed_in_header_form() -> None:
    client, app = gate()
    url = presigned()
    response = client.get(url)
    assert response.status_code == 200
    reached = app.seen[0]
    assert "X-Amz-Signature" not in reached["QUERY_STRING"] and reached["RAW_URI"] == "/bucket/build/app.tar.gz"
    auth = reached["HTTP_AUTHORIZATION"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY.access_key_id}/") and "/s3/aws4_request" in auth
    # tampered: another object, another key's URL, a changed signature, an unsigned copy of the URL
    other = Credentials(clients.LocalCredentials.new().access_key_id, "o" * 40)
    assert "SignatureDoesNotMatch" in error(client.get(url.replace("build/app.tar.gz", "build/evil.tar.gz")))
    assert "InvalidAccessKeyId" in error(client.get(presigned(credentials=other)))
    signature = url.rsplit("X-Amz-Signature=", 1)[1]
    assert "SignatureDoesNotMatch" in error(client.get(url.replace(signature, signature[::-1])))
    assert "AccessDenied" in error(client.get(url.split("?", 1)[0]))
    assert len(app.seen) == 1


def test_a_presigned_url_expires() -> None:
    url = presigned(expires=60)
    client, app = gate(datetime.timedelta(seconds=61))
    assert "Request has expired" in error(client.get(url))
    client, app = gate(datetime.timedelta(seconds=50))
    assert client.get(url).status_code == 200


def test_motos_own_api_and_account_switching_are_closed_even_to_the_key() -> None:
    client, app = gate()
    for path in ("/moto-api/reset-auth", "/moto-api/reset", "/moto-api/data.json", "/moto-api/", "/%6doto-api/reset"):
        assert "moto's own API is closed" in error(client.open(**signed("POST", path, body=b"inf"))), path
    switch = signed("POST", "/", body=QUERY_BODY, headers={"x-moto-account-id": "111111111111"})
    assert "x-moto-account-id" in error(client.open(**switch))
    assert app.seen == []


def test_refusals_speak_the_protocol_of_the_request() -> None:
    client, _ = gate()
    answer = client.post("/", data=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
    assert json.loads(error(answer))["__type"] == "AccessDenied"
    assert error(client.post("/", data=QUERY_BODY, content_type=FORM)).startswith("<ErrorResponse><Error>")
    assert error(client.get("/bucket/k")).startswith("<Error><Code>AccessDenied</Code>")


def test_the_server_environment_is_minimal() -> None:
    base = {"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "gate", "AWS_PROFILE": "prod", "PYTHONPATH": "src:/abs"}
    env = moto_server.server_env(Path("/srv/moto"), base=base)
    assert env == {
        "PATH": "/bin",
        "PYTHONPATH": f"{os.path.abspath('src')}:/abs",
        "HOME": "/srv/moto",
        "INITIAL_NO_AUTH_ACTION_COUNT": "0",
        "MOTO_DISABLE_GLOBAL_CORS": "true",
    }


def test_the_credentials_file_is_private_and_gone_once_read(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    moto_server.write_credentials(path, KEY)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        moto_server.write_credentials(path, KEY)  # never over (or through) something already there
    read = moto_server.read_credentials(path)
    assert (read.access_key, read.secret_key) == (KEY.access_key_id, KEY.secret_access_key)
    assert not path.exists()


MOTO_ALONE = """
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client
from envfixtures.drivers.aws import moto_server

key, secret = json.load(sys.stdin)
moto_server.bootstrap(Credentials(key, secret))
client = Client(DomainDispatcherApplication(create_backend_app))  # moto alone: no gate in front
body = b"Action=DescribeStacks&Version=2010-05-15"
status = {}
for who, credentials in {"own": (key, secret), "wrong secret": (key, "w" * 40),
                         "unknown key": ("AKIAUNKNOWNKEY000000", secret)}.items():
    request = AWSRequest(method="POST", url="http://localhost/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(*credentials), "cloudformation", "us-east-1").add_auth(request)
    status[who] = client.post("/", data=body, headers=dict(request.headers.items())).status_code
print(json.dumps(status))
"""


@pytest.mark.integration
def test_moto_itself_checks_every_signature_behind_the_gate() -> None:
    """moto's own authentication is on from the first request: without the gate, a wrong secret or an unknown key
    is still refused, and the environment's key passes (the user :func:`bootstrap` created in-process)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    result = subprocess.run(
        [sys.executable, "-c", MOTO_ALONE],
        input=json.dumps([KEY.access_key_id, KEY.secret_access_key]),  # never on a command line
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    status = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == {"own": 200, "wrong secret": 403, "unknown key": 403}
