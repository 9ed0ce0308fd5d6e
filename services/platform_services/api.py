"""The orders API: Flask application served by waitress on ``HOST:PORT0``.

Every response is JSON. Errors carry ``{"error", "message", "field"?}`` and nothing else: no stack
trace, no DSN, no password (unexpected exceptions are logged on stderr and answered with a generic 500).
Run: ``python -m platform_services.api`` (configuration: :func:`platform_services.config.load`).
"""

from __future__ import annotations

import json
import logging
import signal
import uuid
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import config, openapi, store, validation
from .outbox import OutboxRelay

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json", headers=headers)


def _error(status: int, error: str, message: str, field: str | None = None) -> Response:
    body = {"error": error, "message": message}
    if field is not None:
        body["field"] = field
    return _json(body, status)


class _Broker:
    """What /health asks about the broker (the relay's connection), replaceable in unit tests."""

    def __init__(self, relay: OutboxRelay | None) -> None:
        self.relay = relay

    def healthy(self) -> bool:
        return self.relay is not None and self.relay.healthy()

    def nudge(self) -> None:
        if self.relay is not None:
            self.relay.nudge()


def create_app(settings: config.Settings, *, db: store.Database, relay: OutboxRelay | None) -> Flask:
    """The WSGI application; ``relay`` publishes the outbox (None: events stay in the outbox)."""
    app = Flask("platform_services.api")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    broker = _Broker(relay)
    document = openapi.document()

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = _error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.name or "error")
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(validation.InvalidField)
    def invalid(exc: validation.InvalidField) -> Response:
        return _error(422, "invalid_field", exc.message, exc.field)

    @app.errorhandler(store.IdempotencyConflict)
    def conflict(_exc: store.IdempotencyConflict) -> Response:
        return _error(422, "idempotency_conflict", "was already used with a different body", "Idempotency-Key")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            log.warning("database unavailable: %s", type(exc).__name__)
            return _error(503, "unavailable", "the database is unavailable; retry later")
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal_error", "internal error")

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        return _json(document)

    @app.get("/version")
    def version() -> Response:
        return _json(config.version(settings))

    @app.get("/health")
    def health() -> Response:
        checks = {"database": "ok" if db.ping() else "down", "broker": "ok" if broker.healthy() else "down"}
        ok = all(v == "ok" for v in checks.values())
        return _json({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

    @app.get("/health/live")
    def live() -> Response:
        return _json({"status": "ok"})

    @app.post("/orders")
    def create_order() -> Response:
        key = validation.idempotency_key(request.headers.get("Idempotency-Key"))
        try:
            body = json.loads(request.get_data(cache=False) or b"")
        except (ValueError, RecursionError):
            return _error(400, "bad_json", "the body must be a JSON object", "body")
        order = validation.new_order(body)
        row, created = store.create_order(db, order, key=key, digest=validation.request_digest(order))
        if created:
            broker.nudge()
        headers = {"Location": f"/orders/{row['id']}"}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return _json(store.order_json(row), 201, headers)

    @app.get("/orders/<order_id>")
    def get_order(order_id: str) -> Response:
        try:
            oid = uuid.UUID(order_id)
        except ValueError:
            return _error(404, "not_found", "no such order")
        row = store.get_order(db, oid)
        if row is None:
            return _error(404, "not_found", "no such order")
        return _json(store.order_json(row))

    @app.get("/orders")
    def list_orders() -> Response:
        limit = validation.limit(request.args.get("limit"))
        after = validation.cursor(request.args.get("cursor"))
        rows, next_seq = store.list_orders(db, after=after, limit=limit)
        return _json(
            {
                "items": [store.order_json(r) for r in rows],
                "next_cursor": validation.encode_cursor(next_seq) if next_seq is not None else None,
            }
        )

    return app


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    """Serve the API until SIGTERM/SIGINT (Marathon's kill)."""
    import waitress

    config.setup_logging()
    try:
        settings = config.load()
    except config.ConfigError as exc:
        raise SystemExit(f"orders-api: {exc}") from None
    db = store.Database(settings.database)
    relay = OutboxRelay(settings.database, settings.amqp_url, settings.exchange)
    relay.start()
    app = create_app(settings, db=db, relay=relay)
    # As a container's PID 1, SIGTERM has no default action: without a handler Marathon's kill would wait out its
    # grace period and end in SIGKILL, the relay stopped by nothing.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log.info("orders API %s listening on %s:%d", settings.git_sha[:12], settings.host, settings.port)
    try:
        waitress.serve(app, host=settings.host, port=settings.port, threads=settings.threads, ident=None,
                       clear_untrusted_proxy_headers=True)  # fmt: skip
    finally:
        relay.stop()


if __name__ == "__main__":
    main()
