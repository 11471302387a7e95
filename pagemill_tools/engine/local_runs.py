"""The local engine's runs (table local_runs): what another process needs to report on a run,
tell a live one from one that died (its lease), and find the file to re-run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pagemill.db.connect import unavailable_on_failure

# How long a run's lease lasts: the engine renews it about every second while it watches the run,
# so only an engine that is gone (or stalled this long) lets it lapse.
LEASE_S = 15.0


def record_run(
    conn: psycopg.Connection[Any], *, execution_arn: str, document_id: str, path: str, host: str, pid: int,
    status: str,
) -> None:
    with unavailable_on_failure(f"recording local run {execution_arn}"), conn.transaction():
        conn.execute(
            """
            insert into local_runs (execution_arn, document_id, path, host, pid, status, lease_until)
            values (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))
            on conflict (execution_arn) do update set
                path = excluded.path, host = excluded.host, pid = excluded.pid, status = excluded.status,
                lease_until = excluded.lease_until, updated_at = now()
            """,
            (execution_arn, document_id, path, host, pid, status, LEASE_S),
        )


def renew_leases(conn: psycopg.Connection[Any], execution_arns: Sequence[str]) -> None:
    """The engine still watches these runs."""
    with unavailable_on_failure("renewing local run leases"), conn.transaction():
        conn.execute(
            "update local_runs set lease_until = now() + make_interval(secs => %s) where execution_arn = any(%s)",
            (LEASE_S, list(execution_arns)),
        )


def runs_of_running_documents(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The local runs that own a running document, with ``lapsed``: their lease has run out."""
    with unavailable_on_failure("reading the runs of running documents"), conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                """
                select r.*, coalesce(r.lease_until < now(), false) as lapsed
                from documents d join local_runs r on r.execution_arn = d.execution_arn
                where d.status = 'running'
                """
            ).fetchall()


def update_run(
    conn: psycopg.Connection[Any], execution_arn: str, *, status: str, current_state: str | None,
    page_count: int | None, pages_done: int,
) -> None:
    with unavailable_on_failure(f"updating local run {execution_arn}"), conn.transaction():
        conn.execute(
            """
            update local_runs set status = %s, current_state = %s, page_count = %s, pages_done = %s,
                updated_at = now()
            where execution_arn = %s
            """,
            (status, current_state, page_count, pages_done, execution_arn),
        )


def latest_run(conn: psycopg.Connection[Any], document_id: str) -> dict[str, Any] | None:
    with unavailable_on_failure(f"reading the runs of document {document_id}"), conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select * from local_runs where document_id = %s order by started_at desc limit 1", (document_id,)
            ).fetchone()


def cancellation_reasons(conn: psycopg.Connection[Any], execution_arns: Sequence[str]) -> dict[str, str]:
    """Of these executions, the cancelled ones and why."""
    with unavailable_on_failure("reading cancellations"), conn.transaction():
        rows = conn.execute(
            "select execution_arn, reason from cancellations where execution_arn = any(%s)", (list(execution_arns),)
        ).fetchall()
    return dict(rows)
