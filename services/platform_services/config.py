"""Configuration from environment variables only (what Marathon gives a task)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit, urlunsplit

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A required variable is missing or malformed; the message names it (never its value)."""


@dataclass(frozen=True)
class Settings:
    """What a service needs. ``database`` and ``amqp_url`` hold credentials: never log them."""

    database: str = field(repr=False)
    amqp_url: str = field(repr=False)
    git_sha: str
    host: str
    port: int
    exchange: str
    orders_queue: str
    threads: int


def load(environ: Mapping[str, str] | None = None, *, default_port: int | None = None) -> Settings:
    """Settings from ``environ`` (default ``os.environ``).

    - ``DATABASE_URL``: a libpq URL or keyword string; may be omitted when the standard ``PGHOST``,
      ``PGPORT``, ``PGDATABASE``, ``PGUSER``, ``PGPASSWORD`` variables are set (libpq reads those).
    - ``AMQP_URL``: ``amqp://user@host:port/vhost`` (vhost URL-encoded) and ``AMQP_PASSWORD``
      (or the password inside the URL).
    - ``GIT_SHA``: the commit the code was built from (answered by ``/version``).
    - ``PORT0`` (Marathon's first port; ``PORT`` is accepted too), ``HOST`` (default 127.0.0.1).
    - ``EVENTS_EXCHANGE`` (default ``platform.events``), ``ORDERS_QUEUE`` (worker; default
      ``orders.created``, the queue of templates/rabbitmq/definitions.json), ``THREADS`` (API worker
      threads, default 8).
    """
    env = os.environ if environ is None else environ
    database = env.get("DATABASE_URL", "")
    if not database and not env.get("PGHOST"):
        raise ConfigError("set DATABASE_URL (or the PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD variables)")
    amqp_url = env.get("AMQP_URL", "")
    if not amqp_url.startswith(("amqp://", "amqps://")):
        raise ConfigError("set AMQP_URL to amqp://user@host:port/vhost (and AMQP_PASSWORD)")
    if env.get("AMQP_PASSWORD"):
        amqp_url = with_password(amqp_url, env["AMQP_PASSWORD"])
    git_sha = env.get("GIT_SHA", "")
    if not git_sha:
        raise ConfigError("set GIT_SHA to the commit this code was built from")
    raw_port = env.get("PORT0") or env.get("PORT") or (str(default_port) if default_port is not None else "")
    try:
        port = int(raw_port)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError("set PORT0 to the TCP port to listen on (1-65535)") from None
    try:
        threads = int(env.get("THREADS", "8"))
    except ValueError:
        raise ConfigError("THREADS must be an integer") from None
    return Settings(
        database=database,
        amqp_url=amqp_url,
        git_sha=git_sha,
        host=env.get("HOST", "127.0.0.1"),
        port=port,
        exchange=env.get("EVENTS_EXCHANGE", "platform.events"),
        orders_queue=env.get("ORDERS_QUEUE", "orders.created"),
        threads=threads,
    )


def version(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """What ``/version`` answers: the SHA baked into the artifact at build time (``_build.py``, written
    by envfixtures from ``git archive``) — or ``GIT_SHA`` when running from a source tree — and the
    image tag this task was started with (Marathon passes ``MARATHON_APP_DOCKER_IMAGE``)."""
    env = os.environ if environ is None else environ
    try:
        from . import _build  # type: ignore[attr-defined]

        sha = _build.SHA
    except ImportError:
        sha = settings.git_sha
    image = env.get("MARATHON_APP_DOCKER_IMAGE")
    return {"sha": sha, "image_tag": image.rpartition(":")[2] if image else None}


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` set in its user info (URL-encoded)."""
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def setup_logging() -> None:
    """Plain lines on stderr (the task's sandbox log); pika's chatter kept to warnings."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
