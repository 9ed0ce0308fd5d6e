"""The outbox relay: publishes the events committed in the ``outbox`` table, then marks them.

Why an outbox rather than publish-after-commit: the order and its event are committed together, so
an order is never created without its event, whatever happens to the broker or to this process
between the commit and the publish. The relay publishes with publisher confirms, persistent and
mandatory; only a confirmed message is marked published (at-least-once: a crash between the confirm
and the mark republishes it, and the worker's fulfilment is idempotent). Rows are taken with
``FOR UPDATE SKIP LOCKED``, so several API instances relay side by side without double work.
"""

from __future__ import annotations

import logging
import threading
import time

import pika
import psycopg
from pika.exceptions import AMQPError, NackError, UnroutableError

from . import store

log = logging.getLogger(__name__)

BATCH = 100
IDLE_POLL = 1.0  # seconds between outbox scans when nobody nudges (picks up other instances' leftovers)
TICK = 0.2  # seconds between broker I/O rounds (heartbeats, noticing a closed connection)


def amqp_parameters(url: str, *, name: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 30
    params.socket_timeout = 5
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    return params


class OutboxRelay(threading.Thread):
    """A daemon thread: one AMQP connection, one DB connection, both reopened with backoff on failure."""

    def __init__(self, database: str, amqp_url: str, exchange: str) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self._db = store.Database(database)
        self._amqp_url = amqp_url
        self._exchange = exchange
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self.broker_ok = False
        self.published = 0

    def nudge(self) -> None:
        """A new event was committed: scan now instead of at the next idle poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def healthy(self) -> bool:
        return self.is_alive() and self.broker_ok

    def run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._ensure_broker()
                self._relay_pending()
                backoff = 0.2
                self._idle()
            except (AMQPError, OSError) as exc:
                self.broker_ok = False
                log.warning("outbox relay: broker problem (%s); retrying in %.1fs", type(exc).__name__, backoff)
                self._close_broker()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except psycopg.Error as exc:
                log.warning("outbox relay: database problem (%s); retrying in %.1fs", type(exc).__name__, backoff)
                self._db.close()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # noqa: BLE001 - the relay must outlive any single bad round
                log.exception("outbox relay: unexpected error; retrying in %.1fs", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._close_broker()
        self._db.close()

    def _ensure_broker(self) -> None:
        if self._connection is not None and self._connection.is_open and self._channel and self._channel.is_open:
            return
        self._close_broker()
        self._connection = pika.BlockingConnection(amqp_parameters(self._amqp_url, name="orders-api outbox"))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self.broker_ok = True
        log.info("outbox relay: connected to the broker")

    def _close_broker(self) -> None:
        conn, self._connection, self._channel = self._connection, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def _idle(self) -> None:
        """Keep the broker connection serviced until nudged, stopped, or the idle poll is due."""
        deadline = time.monotonic() + IDLE_POLL
        while not self._stop.is_set() and time.monotonic() < deadline:
            assert self._connection is not None
            self._connection.process_data_events(time_limit=0)
            if self._wake.wait(TICK):
                self._wake.clear()
                return

    def _relay_pending(self) -> None:
        """Publish one batch after another until the outbox is empty or a message is refused."""
        while not self._stop.is_set():
            with self._db.transaction() as conn:
                rows = store.pending_events(conn, batch=BATCH)
                done: list[int] = []
                refused = False
                for row in rows:
                    try:
                        self._publish(row)
                    except (UnroutableError, NackError) as exc:
                        # Not routed (no queue bound yet) or refused: keep it in the outbox, retry later.
                        log.warning(
                            "outbox relay: event %s not accepted (%s); will retry", row["id"], type(exc).__name__
                        )
                        store.mark_attempted(conn, row["id"])
                        refused = True
                        break
                    done.append(row["id"])
                store.mark_published(conn, done)
            self.published += len(done)
            if refused or len(rows) < BATCH:
                return

    def _publish(self, row: dict) -> None:
        assert self._channel is not None
        self._channel.basic_publish(
            exchange=self._exchange,
            routing_key=row["routing_key"],
            body=store.dumps(row["payload"]),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=str(row["message_id"]),
                type=row["routing_key"],
                app_id="orders-api",
            ),
            mandatory=True,
        )
