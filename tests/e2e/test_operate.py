"""`pagemill status / cancel / redrive` against the local engine and its real database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymupdf
import pytest

from pagemill.db import documents
from pagemill.errors import (
    ExecutionCancelled,
    NotRedrivable,
    UnknownDocument,
)
from pagemill.pipeline.settle import STOPPED_REASON
from pagemill.records import SourceObject
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.operate import local
from tests.e2e.test_cli import pagemill

pytestmark = pytest.mark.heavy(40)

STATUS_KEYS = {
    "status", "document_id", "execution_arn", "execution_status", "current_state", "pages_done", "page_count",
    "error_class", "error", "failed_state", "warnings", "source", "started_at", "updated_at", "note",
}


def text_pdf(path: Path, pages: int, words: str = "operate") -> Path:
    doc = pymupdf.open()
    for n in range(pages):
        # one call per page, lines 16 pt apart: a call per line took 12 s of CPU for 300 pages
        lines = (f"{words} page {n + 1} line {line}: the quick brown fox" for line in range(40))
        doc.new_page().insert_text((72, 72), "\n".join(lines), lineheight=16 / 11)
    doc.save(path)
    return path


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def doc_status(db: psycopg.Connection, document_id: str) -> str | None:
    row = db.execute("select status from documents where id = %s", (document_id,)).fetchone()
    return row[0] if row else None


def test_a_failed_document_shows_its_error_class_and_reason(
    engine: LocalEngine, db: psycopg.Connection, tmp_path: Path, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN an empty file run through the pipeline
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    run = engine.submit(empty)
    engine.wait([run])
    # WHEN on-call asks for its status, by document id and by the file
    by_id = local.status(db, run.document_id)
    by_file = local.status(db, str(empty))
    # THEN it is failed, with the error class, the reason, the state that failed, and what to do
    assert by_id == by_file
    assert (by_id.status, by_id.error_class, by_id.failed_state) == ("failed", "EmptyFile", "Plan")
    assert "empty" in by_id.error.lower()
    assert by_id.source == str(empty.resolve())
    assert f"pagemill redrive {run.document_id}" in by_id.note
    # AND the command prints the same as JSON and exits 1
    result = pagemill("status", run.document_id, "--json", "--database-url", module_database_url, home=engine_home)
    assert result.returncode == 1, result.stderr
    shown = json.loads(result.stdout)
    assert set(shown) == STATUS_KEYS
    assert (shown["status"], shown["error_class"], shown["document_id"]) == ("failed", "EmptyFile", run.document_id)
    # AND without a document it lists the recent ones with counts by status
    listing = pagemill("status", "--json", "--database-url", module_database_url, home=engine_home)
    assert listing.returncode == 0, listing.stderr
    recent = json.loads(listing.stdout)
    assert recent["counts"]["failed"] >= 1
    assert run.document_id in {i["document_id"] for i in recent["items"]}
    # AND an unknown document is a clear error, exit 1
    unknown = pagemill("status", "0" * 32, "--database-url", module_database_url, home=engine_home)
    assert unknown.returncode == 1 and "no document" in unknown.stderr


def test_cancel_stops_a_live_run(engine: LocalEngine, db: psycopg.Connection, tmp_path: Path) -> None:
    # GIVEN a long document being processed by the engine
    run = engine.submit(text_pdf(tmp_path / "live.pdf", pages=400, words="live"))
    progress = threading.Thread(target=engine.wait, args=([run],), kwargs={"poll_seconds": 0.1})
    progress.start()
    # AND its progress, as another process reads it from the database: pages done of 400, in ExtractPages
    def extracting() -> bool:
        s = local.status(db, run.document_id) if doc_status(db, run.document_id) else None
        return s is not None and bool(s.pages_done) and s.current_state == "ExtractPages"

    wait_for(extracting, "pages done to be recorded")
    midway = local.status(db, run.document_id)
    assert (midway.status, midway.execution_status, midway.page_count) == ("running", "RUNNING", 400)
    assert 0 < midway.pages_done < 400
    # WHEN another process cancels it (without waiting for the stop)
    outcome = local.cancel(db, run.document_id, "operator: wrong file", stop_wait_s=0)
    assert (outcome.status, outcome.stopped) == ("cancelled", False)
    progress.join(timeout=60)
    # THEN the engine stopped its execution, the document is cancelled with the reason, no rows
    assert run.status == "ABORTED"
    history = engine.history(run.execution_arn)
    assert history[-1]["type"] == "ExecutionAborted"
    status = local.status(db, run.document_id)
    assert (status.status, status.error) == ("cancelled", "operator: wrong file")
    assert db.execute("select count(*) from pages where document_id = %s", (run.document_id,)).fetchone()[0] == 0
    # AND the run's record says so for other processes
    assert db.execute("select status from local_runs where execution_arn = %s",
                      (run.execution_arn,)).fetchone()[0] == "ABORTED"


def test_an_execution_stopped_behind_pagemill_s_back_settles_its_document(
    engine: LocalEngine, db: psycopg.Connection, tmp_path: Path
) -> None:
    # GIVEN a document being processed
    run = engine.submit(text_pdf(tmp_path / "console.pdf", pages=200, words="console"))
    wait_for(lambda: doc_status(db, run.document_id) == "running", "the document to be registered")
    # WHEN its execution is stopped as the Step Functions console does (no cancellation recorded)
    engine.sfn.stop_execution(executionArn=run.execution_arn, error="Operator", cause="stopped in the console")
    engine.wait([run])
    # THEN the status-change event reached Settle, as EventBridge's rule delivers it on AWS:
    # the document is cancelled, saying how, not "running" for ever
    assert run.status == "ABORTED"
    status = local.status(db, run.document_id)
    assert (status.status, status.error) == ("cancelled", STOPPED_REASON)


def test_redrive_after_a_transient_failure_ends_succeeded_with_each_row_once(
    engine: LocalEngine, db: psycopg.Connection, tmp_path: Path, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN a database that refuses page rows for a while (a trigger the test controls)
    db.execute("""
        create function refuse_pages() returns trigger language plpgsql as
        $$ begin raise exception 'pages are read-only during maintenance'; end $$;
        create trigger refuse_pages before insert on pages for each statement execute function refuse_pages();
    """)
    try:
        run = engine.submit(text_pdf(tmp_path / "again.pdf", pages=3, words="again"))
        engine.wait([run])
    finally:
        db.execute("drop trigger refuse_pages on pages; drop function refuse_pages();")
    failed = local.status(db, run.document_id)
    assert (failed.status, failed.failed_state, failed.error_class) == ("failed", "Write", "RaiseException")
    assert "read-only during maintenance" in failed.error
    # WHEN the cause is gone and on-call redrives it
    result = pagemill("redrive", run.document_id, "--json", "--workers", "1", "--out", str(tmp_path / "out"),
                      "--database-url", module_database_url, home=engine_home)
    # THEN the same file ran again and the document succeeded, with each page once
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)
    assert (report["document_id"], report["status"], report["pages"]) == (run.document_id, "succeeded", 3)
    assert db.execute("select count(*), count(distinct page_no) from pages where document_id = %s",
                      (run.document_id,)).fetchone() == (3, 3)
    assert local.status(db, run.document_id).status == "succeeded"
    # AND a succeeded document is not redriven
    with pytest.raises(NotRedrivable, match="succeeded"):
        local.redrive_source(db, run.document_id)


def test_a_cancelled_execution_cannot_revive_its_document_but_a_new_one_can(
    db: psycopg.Connection, tmp_path: Path
) -> None:
    # GIVEN a document registered by an execution that is then cancelled
    source = SourceObject(bucket="b", key="uploads/x.pdf", version_id="v1")
    args = {"document_id": "d" * 32, "sha256": "d" * 64, "size_bytes": 1, "source": source}
    documents.register_document(db, **args, execution_arn="arn:cancelled")
    assert documents.cancel_execution(db, "arn:cancelled", "stop") == "d" * 32
    # WHEN a Plan of that execution still in flight registers it again
    # THEN it is refused, and the document stays cancelled
    with pytest.raises(ExecutionCancelled):
        documents.register_document(db, **args, execution_arn="arn:cancelled")
    assert doc_status(db, "d" * 32) == "cancelled"
    # AND so is a Write of that execution (the check Write makes inside its transaction)
    with pytest.raises(ExecutionCancelled), db.transaction():
        documents.ensure_not_cancelled(db, "arn:cancelled")
    # AND a re-run (a new execution) registers it running again: not a duplicate
    outcome = documents.register_document(db, **args, execution_arn="arn:rerun")
    assert (outcome.duplicate, outcome.status) == (False, "running")


def test_unknown_references_are_clear_errors(db: psycopg.Connection, tmp_path: Path) -> None:
    never_run = text_pdf(tmp_path / "never.pdf", pages=1, words="never")
    with pytest.raises(UnknownDocument, match="has not been run"):
        local.status(db, str(never_run))
    with pytest.raises(UnknownDocument, match="no document"):
        local.cancel(db, "nothing-like-a-document", "x")
