"""Orders in PostgreSQL: create (with its outbox event, in one transaction), get, list, fulfil.

Connections: one per thread, kept and reopened when broken. The API serves from a fixed set of
waitress threads, so this is a fixed-size pool without a pool library (psycopg_pool is not needed
for a handful of threads).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

ORDER_CREATED = "order.created"
ORDER_FULFILLED = "order.fulfilled"
_COLUMNS = "seq, id, customer_id, currency, items, status, created_at, fulfilled_at, request_sha256"


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different body."""


class Database:
    """Thread-local autocommit connections to one database; transactions are explicit."""

    def __init__(self, conninfo: str, *, connect_timeout: int = 3) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._local = threading.local()

    def connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, row_factory=dict_row, connect_timeout=self._connect_timeout
            )
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        conn = self.connection()
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError:
            self._drop(conn)
            raise

    def ping(self) -> bool:
        """True when ``SELECT 1`` succeeds (a broken connection is replaced once)."""
        for _ in range(2):
            try:
                with self.transaction() as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                continue
        return False

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: psycopg.Connection) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is dropped anyway
            pass
        self._local.conn = None


def order_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public representation of an order row."""
    return {
        "id": str(row["id"]),
        "customer_id": row["customer_id"],
        "items": row["items"],
        "currency": row["currency"],
        "status": row["status"],
        "created_at": _iso(row["created_at"]),
        "fulfilled_at": _iso(row["fulfilled_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def create_order(db: Database, order: dict[str, Any], *, key: str | None, digest: str) -> tuple[dict[str, Any], bool]:
    """Insert the order and its ``order.created`` outbox event in one transaction.

    Returns (row, created). With an idempotency ``key`` seen before, returns the first order and
    False; a different body under the same key raises :class:`IdempotencyConflict`. Two concurrent
    creates with one key serialise on the unique index: the second waits, then finds the first.
    """
    order_id = uuid.uuid4()
    with db.transaction() as conn:
        row = conn.execute(
            f"""INSERT INTO orders (id, customer_id, currency, items, idempotency_key, request_sha256)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING {_COLUMNS}""",
            (order_id, order["customer_id"], order["currency"], Jsonb(order["items"]), key, digest),
        ).fetchone()
        if row is None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM orders WHERE idempotency_key = %s", (key,)).fetchone()
            if row is None or row["request_sha256"] != digest:
                raise IdempotencyConflict()
            return row, False
        event = {"event": ORDER_CREATED, **order_json(row)}
        conn.execute(
            "INSERT INTO outbox (message_id, routing_key, payload) VALUES (%s, %s, %s)",
            (uuid.uuid4(), ORDER_CREATED, Jsonb(event)),
        )
    return row, True


def get_order(db: Database, order_id: uuid.UUID) -> dict[str, Any] | None:
    with db.transaction() as conn:
        return conn.execute(f"SELECT {_COLUMNS} FROM orders WHERE id = %s", (order_id,)).fetchone()


def list_orders(db: Database, *, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """A page of orders after position ``after``; the second value is the next page's position or None."""
    with db.transaction() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM orders WHERE seq > %s ORDER BY seq LIMIT %s", (after, limit + 1)
        ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["seq"] if more else None)


def fulfil(db: Database, order_id: uuid.UUID) -> dict[str, Any] | None:
    """Mark the order fulfilled (idempotent: a second call keeps the first time); None if unknown."""
    with db.transaction() as conn:
        return conn.execute(
            f"""UPDATE orders SET status = 'fulfilled', fulfilled_at = COALESCE(fulfilled_at, now())
                WHERE id = %s RETURNING {_COLUMNS}""",
            (order_id,),
        ).fetchone()


def pending_events(conn: psycopg.Connection, *, batch: int) -> list[dict[str, Any]]:
    """Unpublished outbox rows, locked for this transaction (others skip them: no double publish)."""
    return conn.execute(
        """SELECT id, message_id, routing_key, payload FROM outbox WHERE published_at IS NULL
           ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (batch,),
    ).fetchall()


def mark_published(conn: psycopg.Connection, ids: list[int]) -> None:
    if ids:
        conn.execute("UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY(%s)", (ids,))


def mark_attempted(conn: psycopg.Connection, event_id: int) -> None:
    conn.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = %s", (event_id,))


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
