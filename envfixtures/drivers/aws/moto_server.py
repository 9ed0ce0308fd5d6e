"""The environment's moto server: every request must be signed with the environment's own credentials.

Started by :func:`start` (``python -m envfixtures.drivers.aws.moto_server --port P --credentials FILE``): ``FILE``
is a JSON object ``{"access_key_id": ..., "secret_access_key": ...}`` created mode 0600 in the caller's private
directory; the server reads it and deletes it before it listens, so the secret is never on a command line, in an
environment or left on disk. The server's environment is a minimal one (:func:`server_env`): no ``AWS_*``
variable of the gate, ``HOME`` its own directory.

Two locks, one behind the other:

- **moto's own request authentication** (``INITIAL_NO_AUTH_ACTION_COUNT=0``: from the first request on, moto
  checks every request's SigV4 signature against the IAM users it knows and their policies). Before the server
  listens, one IAM user is created in-process with the given access key and an allow-all policy, so there is no
  unauthenticated window in which somebody else could create a user of their own.
- **a gate in front of moto** (:class:`Gate`), because moto leaves doors open around its authentication:
  ``/moto-api/*`` is never authenticated (``POST /moto-api/reset-auth`` turns authentication off, ``/reset``
  wipes the account, ``/data.json`` dumps every model, the IAM secret keys included); a request without an
  ``Authorization`` header skips the check in some handlers (S3 treats it as anonymous, checked only against
  ACLs); a few operations are public by design (Cognito); and a presigned S3 URL (query-string SigV4) is not
  understood by moto's check at all. The gate refuses ``/moto-api``, verifies every request's SigV4 signature
  (``Authorization`` header or presigned query) against the environment's key, with AWS's time limits (15
  minutes of clock skew; a presigned URL until it expires), and hands moto a presigned request re-signed in
  header form, so that moto's own check passes it too.

Anything refused answers 403 with an AWS-shaped error (XML, or JSON for JSON protocols).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import io
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError

from envfixtures.core.ports import free_port
from envfixtures.core.processes import Process, Spawner
from envfixtures.drivers.aws import clients

#: The IAM user every request of the environment is made as.
USER = "envfixtures"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
#: AWS refuses a signed request whose time is more than this far from its own clock.
MAX_SKEW = datetime.timedelta(minutes=15)
#: The longest a presigned URL may be valid (SigV4's limit).
MAX_EXPIRES = 7 * 24 * 3600
ALGORITHM = "AWS4-HMAC-SHA256"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")


class Refused(Exception):
    """A request that does not carry a valid signature of the environment's key."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def read_credentials(path: Path) -> Credentials:
    """The credentials in ``path``, which is deleted once read (whatever it held)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    finally:
        path.unlink(missing_ok=True)
    access_key, secret_key = data["access_key_id"], data["secret_access_key"]
    if not (isinstance(access_key, str) and access_key and isinstance(secret_key, str) and len(secret_key) >= 20):
        raise ValueError("credentials: access_key_id and a secret_access_key of at least 20 characters are needed")
    return Credentials(access_key, secret_key)


class Gate:
    """WSGI middleware: only requests signed with ``credentials`` reach ``app``; ``/moto-api`` never does."""

    def __init__(self, app: Callable[..., Iterable[bytes]], credentials: Credentials, *, now: Any = None) -> None:
        self.app = app
        self.credentials = credentials
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            self.check(environ)
        except Refused as refused:
            return _refuse(environ, start_response, refused)
        return self.app(environ, start_response)

    # -- the checks ------------------------------------------------------------------------------------

    def check(self, environ: dict[str, Any]) -> None:
        path, query = _raw_path_and_query(environ)
        for where in (path, environ.get("PATH_INFO") or ""):  # as sent, and as moto routes it (decoded)
            if where.startswith("/moto-api") or where == "/favicon.ico":
                raise Refused("AccessDenied", "moto's own API is closed on this server")
        if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
            raise Refused("AccessDenied", "the account is the environment's: x-moto-account-id is refused")
        if "HTTP_AUTHORIZATION" in environ:
            self._check_header_signature(environ, path, query)
        elif any(key == "X-Amz-Signature" for key, _ in parse_qsl(query, keep_blank_values=True)):
            self._check_presigned(environ, path, query)
        else:
            raise Refused("AccessDenied", "the request is not signed (this endpoint demands SigV4 credentials)")

    def _check_header_signature(self, environ: dict[str, Any], path: str, query: str) -> None:
        match = _AUTH.match(environ["HTTP_AUTHORIZATION"])
        if not match:
            raise Refused("IncompleteSignature", f"only {ALGORITHM} header signatures are accepted")
        _, date, region, service = self._scope(match["credential"])
        amz_date = environ.get("HTTP_X_AMZ_DATE", "")
        when = self._time(amz_date, date)
        if abs(self._now() - when) > MAX_SKEW:
            raise Refused("RequestTimeTooSkewed", "the request time is too far from the server's time")
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise Refused("IncompleteSignature", "the signature must cover host and x-amz-date")
        body = _body(environ)
        declared = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
        if declared is not None and _HEX64.match(declared) and declared != hashlib.sha256(body).hexdigest():
            raise Refused("XAmzContentSHA256Mismatch", "the body is not the one that was signed")
        auth_cls = S3SigV4Auth if service == "s3" else SigV4Auth
        request = self._request(environ, path, query, signed, body)
        expected = self._signature(auth_cls(self.credentials, service, region), request, amz_date)
        if not hmac.compare_digest(expected, match["signature"]):
            raise Refused("SignatureDoesNotMatch", "the request signature does not match")

    def _check_presigned(self, environ: dict[str, Any], path: str, query: str) -> None:
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        if params.get("X-Amz-Algorithm") != ALGORITHM or any(key not in params for key in _QUERY_AUTH):
            raise Refused("AuthorizationQueryParametersError", f"only {ALGORITHM} presigned URLs are accepted")
        _, date, region, service = self._scope(params["X-Amz-Credential"])
        if service != "s3":
            raise Refused("AuthorizationQueryParametersError", "only S3 accepts presigned URLs")
        when = self._time(params["X-Amz-Date"], date)
        try:
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            raise Refused("AuthorizationQueryParametersError", "X-Amz-Expires is not a number") from None
        if not 0 < expires <= MAX_EXPIRES:
            raise Refused("AuthorizationQueryParametersError", "X-Amz-Expires is out of range")
        now = self._now()
        if when - now > MAX_SKEW:
            raise Refused("AccessDenied", "the request is not valid yet")
        if now > when + datetime.timedelta(seconds=expires):
            raise Refused("AccessDenied", "Request has expired")
        signed = params["X-Amz-SignedHeaders"].split(";")
        if "host" not in signed:
            raise Refused("AuthorizationQueryParametersError", "the signature must cover host")
        unsigned_query = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Signature="))
        request = self._request(environ, path, unsigned_query, signed, b"")
        auth = S3SigV4QueryAuth(self.credentials, service, region, expires=expires)
        expected = self._signature(auth, request, params["X-Amz-Date"])
        if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
            raise Refused("SignatureDoesNotMatch", "the presigned URL's signature does not match")
        # moto's own check reads the Authorization header only: the same request, re-signed in header form.
        rest = "&".join(
            p for p in query.split("&") if p.partition("=")[0] not in (*_QUERY_AUTH, "X-Amz-Signature") and p
        )
        header_request = AWSRequest(
            method=environ.get("REQUEST_METHOD", "GET"),
            url=f"http://{environ.get('HTTP_HOST', '')}{path}{'?' + rest if rest else ''}",
            headers={"host": environ.get("HTTP_HOST", "")},
        )
        S3SigV4Auth(self.credentials, service, region).add_auth(header_request)
        for name, value in header_request.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        environ["QUERY_STRING"] = rest
        environ["RAW_URI"] = environ["REQUEST_URI"] = f"{path}{'?' + rest if rest else ''}"

    # -- helpers ------------------------------------------------------------------------------------

    def _scope(self, credential: str) -> tuple[str, str, str, str]:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise Refused("IncompleteSignature", "the credential scope is malformed")
        access_key, date, region, service, _ = parts
        if not hmac.compare_digest(access_key, self.credentials.access_key):
            raise Refused("InvalidAccessKeyId", "the access key is not known to this server")
        return access_key, date, region, service

    @staticmethod
    def _time(amz_date: str, scope_date: str) -> datetime.datetime:
        try:
            when = datetime.datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=datetime.UTC)
        except ValueError:
            raise Refused("IncompleteSignature", "the request has no valid X-Amz-Date") from None
        if amz_date[:8] != scope_date:
            raise Refused("SignatureDoesNotMatch", "the credential scope's date is not the request's")
        return when

    @staticmethod
    def _request(environ: dict[str, Any], path: str, query: str, signed: list[str], body: bytes) -> AWSRequest:
        headers = {}
        for name in signed:
            key = "CONTENT_TYPE" if name == "content-type" else "CONTENT_LENGTH" if name == "content-length" else None
            value = environ.get(key or "HTTP_" + name.upper().replace("-", "_"))
            if value is None:
                raise Refused("SignatureDoesNotMatch", f"the signed header {name} is missing")
            headers[name] = value
        url = f"http://{environ.get('HTTP_HOST', '')}{path}{'?' + query if query else ''}"
        return AWSRequest(method=environ.get("REQUEST_METHOD", "GET"), url=url, headers=headers, data=body)

    @staticmethod
    def _signature(auth: SigV4Auth, request: AWSRequest, amz_date: str) -> str:
        request.context["timestamp"] = amz_date
        canonical = auth.canonical_request(request)
        return auth.signature(auth.string_to_sign(request, canonical), request)


def _raw_path_and_query(environ: dict[str, Any]) -> tuple[str, str]:
    """The path as sent (percent-encoded: what was signed) and the query string (WSGI keeps it encoded)."""
    raw = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").split("?", 1)[0]
    if "://" in raw:
        raw = urlsplit(raw).path
    return raw or environ.get("PATH_INFO") or "/", environ.get("QUERY_STRING", "")


def _body(environ: dict[str, Any]) -> bytes:
    """The request body, read once and put back for moto."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        body = stream.read(int(length)) if int(length) else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _refuse(environ: dict[str, Any], start_response: Callable[..., Any], refused: Refused) -> list[bytes]:
    content_type = environ.get("CONTENT_TYPE", "")
    if "json" in content_type:
        body = json.dumps({"__type": refused.code, "message": refused.message}).encode()
        kind = content_type.split(";")[0]
    elif "Action=" in environ.get("QUERY_STRING", "") or "x-www-form-urlencoded" in content_type:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{refused.code}</Code>"
            f"<Message>{refused.message}</Message></Error><RequestId>envfixtures</RequestId></ErrorResponse>"
        ).encode()
        kind = "text/xml"
    else:  # S3 (rest-xml) and everything else
        body = f"<Error><Code>{refused.code}</Code><Message>{refused.message}</Message></Error>".encode()
        kind = "application/xml"
    _drain(environ)
    start_response("403 Forbidden", [("Content-Type", kind), ("Content-Length", str(len(body)))])
    return [body]


def _drain(environ: dict[str, Any]) -> None:
    """Read what is left of a refused request's body (a client still sending would see a reset instead)."""
    length = environ.get("CONTENT_LENGTH") or ""
    stream = environ.get("wsgi.input")
    if stream is not None and length.isdigit() and int(length) <= 64 * 1024 * 1024:
        try:
            stream.read(int(length))
        except OSError:
            pass


#: Variables of the gate's environment that the server gets (nothing else: no AWS_*, no secret of the gate).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def server_env(home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's whole environment: a few variables of ``base`` (default: this process's), ``HOME``, and
    moto's settings (authentication from the first request on, no cross-origin answers)."""
    source = os.environ if base is None else base
    env = {name: source[name] for name in INHERITED if name in source}
    if env.get("PYTHONPATH"):  # the server runs in its own directory: a relative entry would point elsewhere
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    env.update(HOME=str(home), INITIAL_NO_AUTH_ACTION_COUNT="0", MOTO_DISABLE_GLOBAL_CORS="true")
    return env


def write_credentials(path: Path, credentials: clients.LocalCredentials) -> None:
    """``credentials`` as the server reads them, in a new file created 0600 (never through a link)."""
    data = json.dumps({"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(data)


def start(
    spawn: Spawner,
    *,
    workdir: Path,
    credentials: clients.LocalCredentials,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 30.0,
    name: str = "moto",
) -> tuple[str, Process]:
    """Start a server that knows only ``credentials``; return its URL once a call signed with them answers.

    ``workdir`` (private to the caller) holds the credentials file for the instant between the start and the
    server reading it; it is gone when this returns, whatever happened."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_file = workdir / f"moto-credentials-{port}.json"
    write_credentials(secret_file, credentials)
    url = f"http://{host}:{port}"
    argv = [sys.executable, "-m", "envfixtures.drivers.aws.moto_server", "--host", host, "--port", str(port),
            "--credentials", str(secret_file)]  # fmt: skip
    try:
        process = spawn(name, argv, env=server_env(workdir), cwd=workdir)
        sts = clients.make_client("sts", endpoint_url=url, region=clients.LOCAL_REGION, credentials=credentials)
        process.wait_ready(
            lambda: sts.get_caller_identity()["Arn"],
            what=f"moto server on {url} (answering the environment's credentials)",
            timeout=timeout,
            retry_on=(OSError, BotoCoreError),
        )
    finally:
        secret_file.unlink(missing_ok=True)
    return url, process


def bootstrap(credentials: Credentials) -> None:
    """Turn on moto's authentication and create the one IAM user that has ``credentials`` (in-process)."""
    from moto import settings
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # every request is checked, from the first one on
    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    iam.create_user(region_name="us-east-1", user_name=USER)
    key = iam.create_access_key(USER)
    iam.access_keys.pop(key.physical_resource_id, None)
    key.access_key_id = credentials.access_key
    key.secret_access_key = credentials.secret_key
    iam.access_keys[key.physical_resource_id] = key
    iam.put_user_policy(USER, "envfixtures-all", json.dumps(ALLOW_ALL))


def make_app(credentials: Credentials) -> Gate:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    bootstrap(credentials)
    return Gate(DomainDispatcherApplication(create_backend_app), credentials)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credentials", type=Path, required=True, help="JSON file, deleted once read")
    args = parser.parse_args(argv)
    credentials = read_credentials(args.credentials)
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # before moto reads its settings
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    class Handler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # the path without its query: a presigned URL's signature stays out of the log
            self.log("info", '"%s %s" %s', self.command, self.path.split("?", 1)[0], code)

    app = make_app(credentials)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"envfixtures moto server (authenticated) on http://{args.host}:{args.port}", flush=True)
    run_simple(args.host, args.port, app, threaded=True, request_handler=Handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
