"""The local engine's runs (table local_runs): what another process needs to report on a run,
tell a live one from one that died, and find the file to re-run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pagemill.db.connect import unavailable_on_failure


def record_run(
    conn: psycopg.Connection[Any], *, execution_arn: str, document_id: str, path: str, host: str, pid: int,
    status: str,
) -> None:
    with unavailable_on_failure(f"recording local run {execution_arn}"), conn.transaction():
        conn.execute(
            """
            insert into local_runs (execution_arn, document_id, path, host, pid, status)
            values (%s, %s, %s, %s, %s, %s)
            on conflict (execution_arn) do update set
                path = excluded.path, host = excluded.host, pid = excluded.pid, status = excluded.status,
                updated_at = now()
            """,
            (execution_arn, document_id, path, host, pid, status),
        )


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
