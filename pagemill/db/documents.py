"""Document status bookkeeping: what Plan registers, what RecordFailure records, what the CLI
and on-call read. Each function runs in its own transaction block: on an idle connection it
commits before returning (inside a caller's transaction it becomes a savepoint)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pagemill.db.connect import unavailable_on_failure
from pagemill.errors import ExecutionCancelled, InternalError
from pagemill.records import DocumentWarning, SourceObject, dump


@dataclass(frozen=True)
class RegisterOutcome:
    duplicate: bool  # this content was processed before: nothing more to do
    status: str
    page_count: int | None


def register_document(
    conn: psycopg.Connection[Any],
    *,
    document_id: str,
    sha256: str,
    size_bytes: int,
    source: SourceObject,
    execution_arn: str | None,
) -> RegisterOutcome:
    """Mark the document running for this execution, unless its content already succeeded.

    A failed or cancelled document is registered again: that is how a re-run processes it.
    Raises ExecutionCancelled when this very execution was cancelled before its Plan got here.
    """
    with unavailable_on_failure(f"registering document {document_id}"), conn.transaction():
        if execution_arn:
            ensure_not_cancelled(conn, execution_arn)
        # The WHERE leaves a succeeded row untouched and then returns nothing.
        row = conn.execute(
            """
            insert into documents (id, sha256, size_bytes, status, execution_arn)
            values (%s, %s, %s, 'running', %s)
            on conflict (id) do update set
                status = 'running', size_bytes = excluded.size_bytes, execution_arn = excluded.execution_arn,
                error_class = null, error = null, cause = null, failed_state = null, updated_at = now()
            where documents.status <> 'succeeded'
            returning status, page_count
            """,
            (document_id, sha256, size_bytes, execution_arn),
        ).fetchone()
        duplicate = row is None
        if duplicate:
            row = conn.execute("select status, page_count from documents where id = %s", (document_id,)).fetchone()
        _upsert_source(conn, source, document_id)
    assert row is not None
    return RegisterOutcome(duplicate=duplicate, status=row[0], page_count=row[1])


def set_page_count(conn: psycopg.Connection[Any], document_id: str, page_count: int) -> None:
    with unavailable_on_failure(f"setting the page count of document {document_id}"), conn.transaction():
        _update_one(conn, document_id, "update documents set page_count = %s, updated_at = now() where id = %s",
                    (page_count, document_id))


def set_timings(conn: psycopg.Connection[Any], document_id: str, timings: dict[str, Any]) -> None:
    """Merge ``timings`` into the document's (keys given here win)."""
    with unavailable_on_failure(f"recording timings of document {document_id}"), conn.transaction():
        _update_one(conn, document_id, "update documents set timings = timings || %s, updated_at = now() where id = %s",
                    (Jsonb(timings), document_id))


def set_outcome(conn: psycopg.Connection[Any], document_id: str, warnings: Sequence[DocumentWarning]) -> str:
    """After Write's rows: ``partial`` with the warnings when any, else ``succeeded``; returns it."""
    status = "partial" if warnings else "succeeded"
    with unavailable_on_failure(f"recording the outcome of document {document_id}"), conn.transaction():
        _update_one(conn, document_id, "update documents set status = %s, warnings = %s, updated_at = now() where id = %s",
                    (status, Jsonb(dump(list(warnings))), document_id))
    return status


def record_failure(
    conn: psycopg.Connection[Any],
    *,
    document_id: str,
    sha256: str,
    size_bytes: int | None,
    source: SourceObject,
    error_class: str,
    error: str,
    cause: str | None,
    failed_state: str | None,
    execution_arn: str | None,
) -> bool:
    """Record the document as failed, with no partial pages/chunks/images left behind.

    Returns False, changing nothing, when the content already succeeded or partly succeeded (e.g.
    a later upload of the same bytes failed): good data is never marked failed.
    """
    with unavailable_on_failure(f"recording the failure of document {document_id}"), conn.transaction():
        # The failure may come before Plan registered the document, hence an upsert.
        row = conn.execute(
            """
            insert into documents (id, sha256, size_bytes, status, error_class, error, cause, failed_state,
                                   execution_arn)
            values (%s, %s, %s, 'failed', %s, %s, %s, %s, %s)
            on conflict (id) do update set
                status = 'failed', size_bytes = coalesce(excluded.size_bytes, documents.size_bytes),
                error_class = excluded.error_class, error = excluded.error, cause = excluded.cause,
                failed_state = excluded.failed_state,
                execution_arn = coalesce(excluded.execution_arn, documents.execution_arn), updated_at = now()
            where documents.status not in ('succeeded', 'partial')
            returning id
            """,
            (document_id, sha256, size_bytes, error_class, _first_line(error), cause, failed_state, execution_arn),
        ).fetchone()
        if row is None:
            return False
        for table in ("pages", "chunks", "images"):
            conn.execute(f"delete from {table} where document_id = %s", (document_id,))
        _upsert_source(conn, source, document_id)
    return True


def ensure_not_cancelled(conn: psycopg.Connection[Any], execution_arn: str) -> None:
    """Inside a caller's transaction: raise ExecutionCancelled if ``execution_arn`` was cancelled.

    Holds the execution's advisory lock to the end of that transaction, so a concurrent
    ``cancel_execution`` either came first (and this raises) or waits for the caller's commit
    (and then sees what the caller wrote)."""
    _lock_execution(conn, execution_arn)
    row = conn.execute("select reason from cancellations where execution_arn = %s", (execution_arn,)).fetchone()
    if row is not None:
        raise ExecutionCancelled(f"execution {execution_arn} was cancelled: {row[0]}")


def cancel_execution(conn: psycopg.Connection[Any], execution_arn: str, reason: str) -> str | None:
    """Record ``execution_arn`` as cancelled and mark its running document cancelled with the
    reason; return that document's id, or None when no running document belongs to it (it had
    already succeeded or failed, or Plan had not registered it yet: then Plan refuses it)."""
    with unavailable_on_failure(f"cancelling execution {execution_arn}"), conn.transaction():
        _lock_execution(conn, execution_arn)
        conn.execute(
            "insert into cancellations (execution_arn, reason) values (%s, %s) on conflict (execution_arn) do nothing",
            (execution_arn, reason),
        )
        return _end_running(conn, execution_arn, "cancelled", "Cancelled", reason)


def interrupt_execution(conn: psycopg.Connection[Any], execution_arn: str, reason: str) -> str | None:
    """Mark the running document of ``execution_arn`` interrupted: the local run that owned it is
    gone. Returns the document's id, or None when none was running."""
    with unavailable_on_failure(f"recording the end of execution {execution_arn}"), conn.transaction():
        return _end_running(conn, execution_arn, "interrupted", "Interrupted", reason)


def fail_execution(conn: psycopg.Connection[Any], execution_arn: str, error_class: str, reason: str) -> str | None:
    """Mark the running document of ``execution_arn`` failed, for an execution that ended without
    its Catch (it timed out as a whole); return the document's id, or None when none was running."""
    with unavailable_on_failure(f"recording the end of execution {execution_arn}"), conn.transaction():
        return _end_running(conn, execution_arn, "failed", error_class, reason)


def _end_running(
    conn: psycopg.Connection[Any], execution_arn: str, status: str, error_class: str, reason: str
) -> str | None:
    row = conn.execute(
        """
        update documents set status = %s, error_class = %s, error = %s, cause = null,
            failed_state = null, updated_at = now()
        where execution_arn = %s and status = 'running'
        returning id
        """,
        (status, error_class, _first_line(reason), execution_arn),
    ).fetchone()
    return row[0] if row else None


def recent_documents(conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
    """The documents changed most recently, newest first."""
    with unavailable_on_failure("listing documents"), conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "select * from documents order by updated_at desc limit %s", (limit,)
            ).fetchall()


def count_by_status(conn: psycopg.Connection[Any]) -> dict[str, int]:
    with unavailable_on_failure("counting documents"), conn.transaction():
        return dict(conn.execute("select status, count(*) from documents group by status").fetchall())


def document_for_execution(conn: psycopg.Connection[Any], execution_arn: str) -> str | None:
    with unavailable_on_failure(f"looking up execution {execution_arn}"), conn.transaction():
        row = conn.execute("select id from documents where execution_arn = %s", (execution_arn,)).fetchone()
    return row[0] if row else None


def page_count(conn: psycopg.Connection[Any], document_id: str) -> int | None:
    """The document's pages as Plan counted them (None before Plan, or with no such document)."""
    with unavailable_on_failure(f"reading document {document_id}"), conn.transaction():
        row = conn.execute("select page_count from documents where id = %s", (document_id,)).fetchone()
    return row[0] if row else None


def get_document(conn: psycopg.Connection[Any], document_id: str) -> dict[str, Any] | None:
    with unavailable_on_failure(f"reading document {document_id}"), conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute("select * from documents where id = %s", (document_id,)).fetchone()


def document_for_source(conn: psycopg.Connection[Any], source: SourceObject) -> str | None:
    with unavailable_on_failure(f"looking up s3://{source.bucket}/{source.key}"), conn.transaction():
        row = conn.execute(
            "select document_id from sources where bucket = %s and key = %s and version_id = %s",
            (source.bucket, source.key, source.version_id or ""),
        ).fetchone()
    return row[0] if row else None


def _lock_execution(conn: psycopg.Connection[Any], execution_arn: str) -> None:
    conn.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (execution_arn,))


def _upsert_source(conn: psycopg.Connection[Any], source: SourceObject, document_id: str) -> None:
    # An unversioned key can be overwritten with other bytes: the latest content wins.
    conn.execute(
        """
        insert into sources (bucket, key, version_id, document_id) values (%s, %s, %s, %s)
        on conflict (bucket, key, version_id) do update set document_id = excluded.document_id
        """,
        (source.bucket, source.key, source.version_id or "", document_id),
    )


def _update_one(conn: psycopg.Connection[Any], document_id: str, query: str, params: tuple[Any, ...]) -> None:
    if conn.execute(query, params).rowcount != 1:
        raise InternalError(f"document {document_id} is not registered")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text
