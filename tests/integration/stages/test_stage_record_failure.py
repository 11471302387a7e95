"""RecordFailure on its own: the execution's state after a Catch → the failed document's row,
with a reason a person understands."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg

from pagemill.payloads import RecordFailureInput
from pagemill.pipeline.context import StageContext, document_id_for
from pagemill.pipeline.record_failure import record_failure
from pagemill.records import SourceObject, dump, load
from tests.support.stages import EXECUTION_ARN, UPLOADS, Upload


def failure_input(source: SourceObject, failed: dict[str, Any], plan: dict[str, Any] | None = None) -> RecordFailureInput:
    # As the RecordFailure state builds it: {"state": $ (the whole state), "execution_arn": ...}
    state = {"source": dump(source), "failed": failed, **({"plan": plan} if plan else {})}
    return load(RecordFailureInput, {"state": state, "execution_arn": EXECUTION_ARN})


def test_record_failure_writes_the_reason_of_an_input_error(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any], upload: Upload
) -> None:
    # GIVEN Plan failed on an encrypted PDF (before it registered the document)
    cause = json.dumps({"errorMessage": "The PDF is encrypted.", "errorType": "EncryptedPdf"})
    payload = failure_input(upload.source, {"Plan": {"Error": "EncryptedPdf", "Cause": cause}})
    # WHEN the failure is recorded
    recorded = record_failure(ctx, conn, payload)
    # THEN the document, identified by its bytes, is failed with the PDF's own message
    assert recorded == {"error": "EncryptedPdf", "reason": "The PDF is encrypted."}
    document_id = document_id_for(hashlib.sha256(upload.path.read_bytes()).hexdigest())
    row = db.execute("select status, error_class, error, failed_state, execution_arn from documents where id = %s",
                     (document_id,)).fetchone()
    assert row == ("failed", "EncryptedPdf", "The PDF is encrypted.", "Plan", EXECUTION_ARN)


def test_record_failure_explains_a_timeout_of_a_planned_document(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any], planned: dict[str, Any],
    upload: Upload,
) -> None:
    # GIVEN a planned document whose Write timed out after its retries
    payload = failure_input(upload.source, {"Write": {"Error": "States.Timeout", "Cause": None}}, plan=planned)
    # WHEN the failure is recorded THEN the row says which state gave up, in words
    recorded = record_failure(ctx, conn, payload)
    assert recorded["reason"] == "Write did not finish in time (States.Timeout); it was retried and gave up"
    row = db.execute("select status, error_class, failed_state from documents where id = %s",
                     (planned["document_id"],)).fetchone()
    assert row == ("failed", "States.Timeout", "Write")


def test_record_failure_of_a_vanished_upload_still_returns_the_reason(
    ctx: StageContext, conn: psycopg.Connection[Any], db: psycopg.Connection[Any]
) -> None:
    # GIVEN the uploaded object is gone (deleted before Plan read it)
    gone = SourceObject(UPLOADS, "uploads/deleted.pdf", None)
    payload = failure_input(gone, {"Plan": {"Error": "SourceMissing", "Cause": "no such object"}})
    # WHEN the failure is recorded THEN the execution still gets its reason; no row can be written
    assert record_failure(ctx, conn, payload) == {"error": "SourceMissing", "reason": "no such object"}
    assert db.execute("select count(*) from documents").fetchone() == (0,)
