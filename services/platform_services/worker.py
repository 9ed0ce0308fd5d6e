"""The fulfilment worker: consumes ``order.created``, marks the order fulfilled, publishes ``order.fulfilled``.

Manual acks, one message at a time in order: the order is marked fulfilled (idempotently), the
``order.fulfilled`` event is published with a publisher confirm, and only then is the message acked,
so a crash at any point redelivers it (at-least-once; fulfilling twice changes nothing).
A message that can never be processed (not JSON, no valid ``id``, an order that does not exist) is
rejected with ``requeue=False``: the queue's dead-letter exchange keeps it — never lost, never retried
forever. When the database is down the message is requeued and the worker backs off.

A health endpoint (``GET /health`` on ``HOST:PORT0``, for Marathon's HTTP health check) answers 200
while the consumer is attached to the broker and the database answers.
Run: ``python -m platform_services.worker``.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika
import psycopg
from pika.exceptions import AMQPError

from . import config, store
from .outbox import amqp_parameters

log = logging.getLogger(__name__)

PREFETCH = 16


class Poison(ValueError):
    """A message this worker can never process."""


def parse(body: bytes) -> uuid.UUID:
    """The order id of an ``order.created`` message, or :class:`Poison`."""
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise Poison("the body is not JSON") from None
    if not isinstance(message, dict):
        raise Poison("the body is not a JSON object")
    try:
        return uuid.UUID(str(message["id"]))
    except (KeyError, ValueError):
        raise Poison("the message has no valid order id") from None


class Worker:
    """The consumer loop (main thread) and its state, read by the health endpoint."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self.db = store.Database(settings.database)
        self.consuming = False
        self.processed = 0
        self.dead_lettered = 0
        self._stop = threading.Event()
        self._connection: pika.BlockingConnection | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._consume()
                backoff = 0.2
            except (AMQPError, OSError, psycopg.Error) as exc:
                log.warning("worker: %s; reconnecting in %.1fs", type(exc).__name__, backoff)
            self.consuming = False
            self._close()
            self.db.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        self._close()
        self.db.close()

    def _consume(self) -> None:
        self._connection = pika.BlockingConnection(amqp_parameters(self.settings.amqp_url, name="fulfilment-worker"))
        channel = self._connection.channel()
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=PREFETCH)
        channel.basic_consume(self.settings.orders_queue, on_message_callback=self._on_message, auto_ack=False)
        self.consuming = True
        log.info("worker: consuming %s", self.settings.orders_queue)
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=0.5)

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        tag = method.delivery_tag
        try:
            order_id = parse(body)
            row = store.fulfil(self.db, order_id)
            if row is None:
                raise Poison(f"order {order_id} does not exist")
        except Poison as exc:
            log.warning("worker: dead-lettering message %s: %s", properties.message_id, exc)
            channel.basic_reject(tag, requeue=False)
            self.dead_lettered += 1
            return
        except psycopg.OperationalError:
            # The database is unreachable: not the message's fault. Requeue it and reconnect with backoff.
            channel.basic_nack(tag, requeue=True)
            raise
        except psycopg.Error as exc:
            # Any other database error would fail again on every redelivery: dead-letter, never loop.
            log.warning("worker: dead-lettering message %s: %s", properties.message_id, type(exc).__name__)
            channel.basic_reject(tag, requeue=False)
            self.dead_lettered += 1
            return
        event = {"event": store.ORDER_FULFILLED, **store.order_json(row)}
        channel.basic_publish(
            exchange=self.settings.exchange,
            routing_key=store.ORDER_FULFILLED,
            body=store.dumps(event),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"order.fulfilled/{row['id']}")),
                type=store.ORDER_FULFILLED,
                app_id="fulfilment-worker",
            ),
        )
        channel.basic_ack(tag)
        self.processed += 1

    def _close(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def health(self) -> tuple[int, dict[str, Any]]:
        checks = {"broker": "ok" if self.consuming else "down", "database": "ok" if _db_ping(self.settings) else "down"}
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks,
                "processed": self.processed, "dead_lettered": self.dead_lettered}  # fmt: skip
        return (200 if ok else 503), body


_health_db: dict[str, store.Database] = {}


def _db_ping(settings: config.Settings) -> bool:
    db = _health_db.setdefault("db", store.Database(settings.database, connect_timeout=2))
    return db.ping()


def serve_health(worker: Worker) -> ThreadingHTTPServer:
    """Start the health endpoint in a daemon thread (stdlib http.server: one GET, no framework needed)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                status, body = worker.health()
            elif self.path == "/version":
                status, body = 200, config.version(worker.settings)
            else:
                status, body = 404, {"error": "not_found", "message": "no such path"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug(format, *args)

    server = ThreadingHTTPServer((worker.settings.host, worker.settings.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def main() -> None:
    """Consume until SIGTERM/SIGINT; unacked messages go back to the queue when the connection closes."""
    config.setup_logging()
    try:
        settings = config.load()
    except config.ConfigError as exc:
        raise SystemExit(f"fulfilment-worker: {exc}") from None
    worker = Worker(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    server = serve_health(worker)
    log.info("fulfilment worker %s, health on %s:%d", settings.git_sha[:12], settings.host, settings.port)
    try:
        worker.run()
    finally:
        server.shutdown()
        log.info("worker stopped after %d message(s), %d dead-lettered", worker.processed, worker.dead_lettered)


if __name__ == "__main__":
    main()
