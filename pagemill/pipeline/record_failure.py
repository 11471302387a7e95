"""RecordFailure: a failed document's row, with a reason a person understands."""

from __future__ import annotations

import json
import logging
from typing import Any

from pagemill import storage
from pagemill.db import documents
from pagemill.errors import PagemillError, input_error_names
from pagemill.payloads import CatchInfo, RecordFailureInput
from pagemill.pipeline.context import StageContext, document_id_for

log = logging.getLogger(__name__)

_TIMED_OUT = "{state} did not finish in time ({error}); it was retried and gave up"
# What a person reads for the errors that are not pagemill's own (those carry their message).
_EXPLANATIONS = {
    "States.Timeout": _TIMED_OUT,
    "Sandbox.Timedout": _TIMED_OUT,
    "States.HeartbeatTimeout": _TIMED_OUT,
    "Runtime.OutOfMemory": "{state} ran out of memory; the document may be too large for one batch",
    "Runtime.ExitError": "{state} crashed ({message}); it was retried and gave up",
    "States.ExceedToleratedFailureThreshold": "{state}: a page batch failed after its retries ({message_or_map_run})",
}


def explain_failure(state_name: str, error: str, cause: str | None) -> str:
    """One line a person understands, from a Catch's Error/Cause."""
    message = cause or ""
    detail: dict[str, Any] = {}
    if cause:
        try:
            parsed = json.loads(cause)
            detail = parsed if isinstance(parsed, dict) else {}
        except json.JSONDecodeError:
            pass
    message = str(detail.get("errorMessage", message)).strip().splitlines()[0] if (detail or message) else ""
    if error in input_error_names():
        return message or error
    if error in _EXPLANATIONS:
        return _EXPLANATIONS[error].format(
            state=state_name, error=error, message=message, message_or_map_run=message or "see the map run"
        )
    return f"{state_name} failed with {error}" + (f": {message}" if message else "")


def record_failure(ctx: StageContext, conn: Any, payload: RecordFailureInput) -> dict[str, str]:
    failed = payload.state.failed or {}
    if failed:
        state_name, info = next(iter(failed.items()))
    else:
        state_name, info = "unknown", CatchInfo(cause="no failure information in the state")
    error, cause = info.error, info.cause
    reason = explain_failure(state_name, error, cause)
    source = payload.state.source
    try:
        sha256, size = storage.hash_object(ctx.s3, source)
    except PagemillError as exc:
        # Without the bytes there is no document identity; the execution still fails with the reason.
        log.warning("cannot identify the failed document", extra={"error": str(exc)})
        return {"error": error, "reason": reason}
    document_id = payload.document_id or document_id_for(sha256)
    documents.record_failure(
        conn, document_id=document_id, sha256=sha256, size_bytes=size, source=source, error_class=error,
        error=reason, cause=cause, failed_state=state_name, execution_arn=payload.execution_arn,
    )
    return {"error": error, "reason": reason}
