"""The ledger database: acme's migrations applied in order, its constraints hold, and the ledger writer (a
Marathon app using the database facts) records heartbeats with the revision under test."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from acme_support import eventually

MIGRATIONS = ["0001_ledger.sql", "0002_writer_heartbeats.sql"]


def test_migrations_applied_in_order_with_the_chart_of_accounts(ledger: psycopg.Connection) -> None:
    names = [r[0] for r in ledger.execute("SELECT name FROM schema_migrations ORDER BY version").fetchall()]
    assert names == MIGRATIONS
    codes = {r[0]: r[1] for r in ledger.execute("SELECT code, kind FROM accounts").fetchall()}
    assert {"1000": "asset", "2000": "liability", "4000": "income"}.items() <= codes.items()


def test_an_entry_moves_money_between_two_different_accounts(ledger: psycopg.Connection) -> None:
    cash, sales = (
        ledger.execute("SELECT id FROM accounts WHERE code = %s", (c,)).fetchone()[0] for c in ("1000", "4000")
    )
    insert = "INSERT INTO entries (debit_account, credit_account, amount_cents, currency) VALUES (%s, %s, %s, %s)"
    with ledger.transaction(force_rollback=True):
        ledger.execute(insert, (cash, sales, 1999, "EUR"))  # a valid entry is booked (and rolled back)
    with pytest.raises(psycopg.errors.CheckViolation, match="entries_two_accounts"):
        with ledger.transaction():
            ledger.execute(insert, (cash, cash, 1999, "EUR"))
    with pytest.raises(psycopg.errors.CheckViolation):
        with ledger.transaction():
            ledger.execute(insert, (cash, sales, 0, "EUR"))


def test_ledger_writer_records_heartbeats_with_the_revision(
    ledger: psycopg.Connection, marathon: Any, apps: Any, revision: str
) -> None:
    ledger.autocommit = True  # each query sees the heartbeats committed since the last one
    [writer] = [a for a in apps["app_ids"] if a.endswith("/ledger-writer")]
    task_ids = {t["id"] for t in marathon(f"/v2/apps{writer}?embed=app.tasks")["app"]["tasks"]}
    assert task_ids, f"{writer} has no task"

    def recent_beat() -> Any:
        return ledger.execute(
            "SELECT task_id, revision FROM writer_heartbeats"
            " WHERE task_id = ANY(%s) AND beat_at > now() - interval '30 seconds' ORDER BY id DESC LIMIT 1",
            (sorted(task_ids),),
        ).fetchone()

    task_id, beat_revision = eventually(recent_beat, what=f"a recent heartbeat of {sorted(task_ids)}", timeout=20)
    assert beat_revision == revision, f"task {task_id} runs revision {beat_revision}, not {revision}"
