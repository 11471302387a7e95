"""Settle on its own: an execution stopped or timed out as a whole → its document's row ends."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pagemill.payloads import ExecutionEnded
from pagemill.pipeline.settle import (
    STOPPED_REASON,
    FAILED_REASON,
    TIMED_OUT_REASON,
    settle_ended_execution,
)
from pagemill.records import load
from tests.support.stages import EXECUTION_ARN


def status_change(status: str, **failure: str) -> ExecutionEnded:
    # The EventBridge event Settle's rule delivers (the fields it reads).
    return load(ExecutionEnded, {
        "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": EXECUTION_ARN, "status": status, "stateMachineArn": "arn:sm", **failure},
    })


@pytest.mark.parametrize(("status", "row"), [
    ("ABORTED", ("cancelled", "Cancelled", STOPPED_REASON)),
    ("TIMED_OUT", ("failed", "States.Timeout", TIMED_OUT_REASON)),
])
def test_settle_ends_the_running_document_of_the_execution(
    conn: psycopg.Connection[Any], db: psycopg.Connection[Any], planned: dict[str, Any], status: str,
    row: tuple[str, str, str],
) -> None:
    # GIVEN a planned document still running for the execution
    # WHEN the execution is stopped or times out as a whole
    settled = settle_ended_execution(conn, status_change(status))
    # THEN its document ends, saying why
    assert settled == {"document_id": planned["document_id"], "status": status}
    assert db.execute("select status, error_class, error from documents where id = %s",
                      (planned["document_id"],)).fetchone() == row


def test_a_failed_execution_whose_failure_was_not_recorded_fails_its_document(
    conn: psycopg.Connection[Any], db: psycopg.Connection[Any], planned: dict[str, Any]
) -> None:
    # GIVEN a document still running after its execution failed (RecordFailure itself failed)
    # WHEN the FAILED status change arrives
    settled = settle_ended_execution(conn, status_change(
        "FAILED", error="Database.Unavailable", cause="connection refused"))
    # THEN the document fails with the execution's error, and what to do
    assert settled == {"document_id": planned["document_id"], "status": "FAILED"}
    assert db.execute("select status, error_class, error from documents where id = %s",
                      (planned["document_id"],)).fetchone() == (
        "failed", "Database.Unavailable",
        FAILED_REASON.format(error="Database.Unavailable: connection refused"))
    # and a second delivery (or the usual FAILED after RecordFailure recorded it) changes nothing
    assert settle_ended_execution(conn, status_change("FAILED"))["document_id"] is None
