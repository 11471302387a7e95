"""The handlers' database connection is reused across warm invocations: one left inside a
transaction (a query outside any transaction block) must not swallow the next invocation's work."""

from __future__ import annotations

import pytest
from psycopg.pq import TransactionStatus

from pagemill.aws import clients


def test_a_connection_left_in_a_transaction_is_rolled_back_before_reuse(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a warm function whose last invocation ran a query outside a transaction block
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(clients, "_connection", None)
    conn = clients.db_connection()
    conn.execute("create table leftover (x int)")
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    try:
        # WHEN the next invocation asks for the connection
        again = clients.db_connection()
        # THEN it is the same connection, idle, with the stray work undone, and its own work commits
        assert again is conn and again.info.transaction_status == TransactionStatus.IDLE
        with again.transaction():
            assert again.execute("select to_regclass('leftover')").fetchone()[0] is None
            again.execute("create table committed (x int)")
        assert again.info.transaction_status == TransactionStatus.IDLE
    finally:
        conn.close()
