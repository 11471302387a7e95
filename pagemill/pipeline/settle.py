"""Settle: executions that ended without reaching Write or RecordFailure (stopped, timed out, or
failed where RecordFailure itself could not record the failure)."""

from __future__ import annotations

import logging
from typing import Any

from pagemill.db import documents
from pagemill.errors import InternalError
from pagemill.payloads import ExecutionEnded

log = logging.getLogger(__name__)

STOPPED_REASON = "the execution was stopped before it finished (StopExecution: pagemill cancel or the console)"
TIMED_OUT_REASON = "the execution ran past its time limit and Step Functions ended it; redrive it or raise the limit"
FAILED_REASON = "the execution failed and its failure could not be recorded ({error}); redrive it"


def settle_ended_execution(conn: Any, ended: ExecutionEnded) -> dict[str, str | None]:
    """An execution that was stopped or timed out as a whole never reaches RecordFailure, and one
    that failed may have failed in RecordFailure itself (the database was down past its retries):
    its document would say "running" forever. Settle it: ABORTED → cancelled, TIMED_OUT and FAILED
    → failed. Idempotent, and a document that already ended (RecordFailure's usual work, or a
    cancel recorded first) is left alone."""
    execution_arn, status = ended.execution_arn, ended.status
    if status == "ABORTED":
        document_id = documents.cancel_execution(conn, execution_arn, STOPPED_REASON)
    elif status == "TIMED_OUT":
        document_id = documents.fail_execution(conn, execution_arn, "States.Timeout", TIMED_OUT_REASON)
    elif status == "FAILED":
        error = ended.error or "States.ExecutionFailed"
        detail = f"{error}: {ended.cause}" if ended.cause else error
        document_id = documents.fail_execution(conn, execution_arn, error, FAILED_REASON.format(error=detail))
    else:
        raise InternalError(f"only stopped, timed-out or failed executions are settled here, not {status}")
    return {"document_id": document_id, "status": status}
