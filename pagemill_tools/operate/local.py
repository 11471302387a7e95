"""status / cancel / redrive against the local engine's record: the documents table, and the
runs the engine writes to local_runs (progress, the process running it, its lease, the file it
came from).

A running document whose run is gone (its lease lapsed, or its process on this host exited) is
marked ``interrupted`` by whichever of these looks first: no document stays ``running`` for ever."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import psycopg

from pagemill.db import documents
from pagemill.errors import NotRedrivable, NotRunning, UnknownDocument
from pagemill.pipeline.context import document_id_for, file_sha256
from pagemill_tools.engine import local_runs
from pagemill.operate import (
    DOCUMENT_ID,
    FINISHED,
    CancelOutcome,
    DocumentStatus,
    StatusList,
)

# How long `cancel` waits for a live run to stop its execution.
STOP_WAIT_S = 10.0


def resolve(conn: psycopg.Connection[Any], ref: str) -> str:
    """A document id, a local PDF (its content's id), or an execution ARN → a known document id."""
    if DOCUMENT_ID.match(ref) and documents.get_document(conn, ref):
        return ref
    path = Path(ref).expanduser()
    if path.is_file():
        document_id = document_id_for(file_sha256(path))
        if documents.get_document(conn, document_id):
            return document_id
        raise UnknownDocument(f"{path} (document {document_id}) has not been run: `pagemill run {path}`")
    if ref.startswith("arn:") and (document_id := documents.document_for_execution(conn, ref)):
        return document_id
    raise UnknownDocument(f"no document {ref!r}: give a document id, a PDF that was run, or an execution ARN")


def status(conn: psycopg.Connection[Any], ref: str) -> DocumentStatus:
    interrupt_gone_runs(conn)
    return _status(conn, documents.get_document(conn, resolve(conn, ref)))


def recent(conn: psycopg.Connection[Any], limit: int = 20) -> StatusList:
    interrupt_gone_runs(conn)
    rows = documents.recent_documents(conn, limit)
    return StatusList(items=[_status(conn, row) for row in rows], counts=documents.count_by_status(conn))


def cancel(
    conn: psycopg.Connection[Any], ref: str, reason: str, *, stop_wait_s: float = STOP_WAIT_S
) -> CancelOutcome:
    """Mark a running document cancelled. A live ``pagemill run`` sees the cancellation and stops
    its execution (waited for up to ``stop_wait_s``)."""
    interrupt_gone_runs(conn)
    document_id = resolve(conn, ref)
    row = documents.get_document(conn, document_id)
    assert row is not None
    if row["status"] != "running":
        raise NotRunning(f"document {document_id} is {row['status']}, not running: nothing to cancel")
    arn = row["execution_arn"]
    run = _run_of(conn, document_id, arn)
    marked = documents.cancel_execution(conn, arn, reason)
    after = documents.get_document(conn, document_id)
    assert after is not None
    if marked is None:
        # Between the read and the cancel, the run finished it.
        return CancelOutcome(arn, document_id, after["status"], False, f"the run finished first: {after['status']}")
    if run is None:
        return CancelOutcome(arn, document_id, "cancelled", False,
                             "cancelled; no local run processes it, nothing was left to stop")
    stopped = _wait_stopped(conn, document_id, arn, stop_wait_s)
    note = (
        f"cancelled; the run (pid {run['pid']}) stopped its execution" if stopped
        else f"cancelled; the run (pid {run['pid']}) has not stopped its execution yet (it checks a few times a second)"
    )
    return CancelOutcome(arn, document_id, "cancelled", stopped, note)


def redrive_source(conn: psycopg.Connection[Any], ref: str) -> Path:
    """The local file to run again for a failed, cancelled, interrupted or partial document (its
    content checked). A partial one is run again whole: Write replaces its rows, so nothing is
    duplicated, and what was missing (captions, understanding) is made where it can be now."""
    interrupt_gone_runs(conn)
    document_id = resolve(conn, ref)
    row = documents.get_document(conn, document_id)
    assert row is not None
    if row["status"] == "running":
        raise NotRedrivable(f"document {document_id} is running; `pagemill cancel {document_id}` first if it is stuck")
    if row["status"] == "succeeded":
        raise NotRedrivable(f"document {document_id} succeeded: nothing to redrive")
    run = local_runs.latest_run(conn, document_id)
    if run is None:
        raise NotRedrivable(f"document {document_id} was not run by the local engine: no local file is known")
    path = Path(run["path"])
    if not path.is_file():
        raise NotRedrivable(f"document {document_id} came from {path}, which no longer exists")
    if document_id_for(file_sha256(path)) != document_id:
        raise NotRedrivable(f"{path} has changed since document {document_id} was run: `pagemill run {path}` instead")
    return path


def interrupt_gone_runs(conn: psycopg.Connection[Any]) -> list[str]:
    """Mark interrupted every running document whose local run is gone; their ids."""
    interrupted = []
    for run in local_runs.runs_of_running_documents(conn):
        if not (run["lapsed"] or _alive(run) is False):
            continue
        reason = (f"interrupted: the run that processed it (pid {run['pid']} on {run['host']}) is gone; "
                  f"`pagemill redrive {run['document_id']}` runs it again")
        if documents.interrupt_execution(conn, run["execution_arn"], reason):
            interrupted.append(run["document_id"])
    return interrupted


def _status(conn: psycopg.Connection[Any], row: dict[str, Any]) -> DocumentStatus:
    run = local_runs.latest_run(conn, row["id"])
    note = None
    # The run that holds the document running now: its progress is the document's.
    live = row["status"] == "running" and run is not None and run["execution_arn"] == row["execution_arn"]
    if row["status"] == "running" and not live:
        note = "no local run of this engine processes it (started elsewhere?)"
    elif row["status"] in ("failed", "cancelled", "interrupted", "partial") and run is not None:
        note = f"`pagemill redrive {row['id']}` runs {run['path']} again"
    return DocumentStatus(
        status=row["status"],
        document_id=row["id"],
        execution_arn=row["execution_arn"],
        execution_status=run["status"] if live else None,
        current_state=run["current_state"] if live else None,
        pages_done=run["pages_done"] if live else (row["page_count"] if row["status"] in FINISHED else None),
        page_count=row["page_count"],
        error_class=row["error_class"],
        error=row["error"],
        failed_state=row["failed_state"],
        warnings=row["warnings"],
        source=run["path"] if run else None,
        started_at=run["started_at"] if run else row["created_at"],
        updated_at=run["updated_at"] if live else row["updated_at"],
        note=note,
    )


def _run_of(conn: psycopg.Connection[Any], document_id: str, execution_arn: str) -> dict[str, Any] | None:
    """The local run of this execution, if the latest run of the document is it."""
    run = local_runs.latest_run(conn, document_id)
    return run if run is not None and run["execution_arn"] == execution_arn else None


def _alive(run: dict[str, Any] | None) -> bool | None:
    """Whether the run's process is alive; None when it cannot be told (another host)."""
    if run is None or run["host"] != socket.gethostname():
        return None
    try:
        os.kill(run["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_stopped(conn: psycopg.Connection[Any], document_id: str, arn: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        run = local_runs.latest_run(conn, document_id)
        if run is None or run["execution_arn"] != arn or run["status"] == "ABORTED":
            return True
        time.sleep(0.2)
    return False

