"""Write and RecordFailure."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from pagemill import layout, storage
from pagemill.captions.caption import CaptionResult, load_results, skipped, summarize
from pagemill.captions.understand import SKIPPED, Understanding
from pagemill.clip.embed import load_embeddings
from pagemill.db import documents
from pagemill.db.connect import unavailable_on_failure
from pagemill.db.understanding import store_caption_results, store_token_usage, store_understanding
from pagemill.db.write import write_document
from pagemill.errors import InternalError, PagemillError, input_error_names
from pagemill.models import BatchResult, SourceObject
from pagemill.stages import StageContext, batch_results, document_id_for, load_manifest

log = logging.getLogger(__name__)

CAPTION_BATCH_FAILED = "caption batch failed"


def write(
    ctx: StageContext, conn: Any, *, document_id: str, manifest_key: str, execution_arn: str | None,
    started_at: str | None, embeddings_index_key: str | None = None, captions: Mapping[str, Any] | None = None,
    understanding: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """The document's rows, its embeddings, and what the model said about it (``captions``:
    {"prefix", "error"} of the caption branch; ``understanding``: {"key", "error"}), in one
    transaction."""
    began = time.monotonic()
    manifest = load_manifest(ctx, manifest_key)
    stats: dict[str, Any] = {"batches": len(manifest), "skipped_images": {}}
    extract_seconds = 0.0

    def batches() -> Iterator[BatchResult]:
        # One batch in memory at a time: write_document streams rows into COPY.
        nonlocal extract_seconds
        for result in batch_results(ctx, document_id, manifest):
            extract_seconds += result.seconds
            for skipped in result.skipped_images:
                stats["skipped_images"][skipped.reason] = stats["skipped_images"].get(skipped.reason, 0) + 1
            yield result

    timings: dict[str, float] = {}
    # Everything else S3 holds is read before the transaction: its locks (the document's row, the
    # execution's) are held for the database work only.
    embeddings = load_embeddings(ctx.s3, ctx.work_bucket, embeddings_index_key) if embeddings_index_key else None
    caption_results, answer = _load_model_output(ctx, document_id, captions or {}, understanding or {})
    with unavailable_on_failure(f"writing document {document_id}"), conn.transaction():
        # A cancelled execution's Write still runs if it was in flight when the execution was
        # stopped; it must not turn the cancelled document into a succeeded one.
        if execution_arn:
            documents.ensure_not_cancelled(conn, execution_arn)
        counts = write_document(
            conn, document_id=document_id, batches=batches(), timings=timings, stats=stats, embeddings=embeddings
        )
        _store_model_output(conn, document_id, caption_results, answer)
    timings.update({"extract_seconds_sum": round(extract_seconds, 3), "write_seconds": round(time.monotonic() - began, 3)})
    if started_at:
        timings["pipeline_seconds"] = round(
            (datetime.now(timezone.utc) - datetime.fromisoformat(started_at.replace("Z", "+00:00"))).total_seconds(), 3
        )
    documents.set_timings(conn, document_id, timings)
    return {"pages": counts.pages, "chunks": counts.chunks, "images": counts.images}


def _load_model_output(
    ctx: StageContext, document_id: str, captions: Mapping[str, Any], understanding: Mapping[str, Any]
) -> tuple[list[CaptionResult] | None, Understanding | None]:
    """The caption of every image (one skipped with the reason where its batch gave none) and the
    document's understanding; None for a branch that did not run."""
    results = None
    if captions.get("prefix"):
        by_image = load_results(ctx.s3, ctx.work_bucket, captions["prefix"])
        # An image without a result: its batch failed after its retries, or the map did.
        reason = f"caption step failed ({captions['error']})" if captions.get("error") else CAPTION_BATCH_FAILED
        for image in storage.get_json(ctx.s3, ctx.work_bucket, layout.image_list_key(document_id)):
            by_image.setdefault(image["sha256"], skipped(image["sha256"], reason))
        results = list(by_image.values())
    if understanding.get("key"):
        answer = Understanding.from_dict(storage.get_json(ctx.s3, ctx.work_bucket, understanding["key"]))
    elif understanding.get("error"):
        answer = Understanding(None, None, status=SKIPPED, reason=f"understanding step failed ({understanding['error']})")
    else:
        answer = None
    return results, answer


def _store_model_output(
    conn: Any, document_id: str, results: list[CaptionResult] | None, answer: Understanding | None
) -> None:
    input_tokens = output_tokens = 0
    caption_summary = None
    if results is not None:
        store_caption_results(conn, document_id, results)
        caption_summary = summarize(results)
        input_tokens += caption_summary["input_tokens"]
        output_tokens += caption_summary["output_tokens"]
    if answer is not None:
        store_understanding(conn, document_id, answer)
        input_tokens += answer.input_tokens
        output_tokens += answer.output_tokens
    if caption_summary is not None or answer is not None:
        store_token_usage(
            conn, document_id, input_tokens=input_tokens, output_tokens=output_tokens, caption_summary=caption_summary
        )


# --- RecordFailure -------------------------------------------------------------------------

_TIMEOUT_ERRORS = {"States.Timeout", "Sandbox.Timedout", "States.HeartbeatTimeout"}


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
    if error in _TIMEOUT_ERRORS:
        return f"{state_name} did not finish in time ({error}); it was retried and gave up"
    if error == "Runtime.OutOfMemory":
        return f"{state_name} ran out of memory; the document may be too large for one batch"
    if error == "Runtime.ExitError":
        return f"{state_name} crashed ({message}); it was retried and gave up"
    if error == "States.ExceedToleratedFailureThreshold":
        return f"{state_name}: a page batch failed after its retries ({message or 'see the map run'})"
    return f"{state_name} failed with {error}" + (f": {message}" if message else "")


def record_failure(ctx: StageContext, conn: Any, state: dict[str, Any], execution_arn: str | None) -> dict[str, str]:
    failed: dict[str, Any] = state.get("failed") or {}
    if failed:
        state_name, info = next(iter(failed.items()))
    else:
        state_name, info = "unknown", {"Error": "States.Runtime", "Cause": "no failure information in the state"}
    error = str(info.get("Error", "States.Runtime"))
    cause = info.get("Cause")
    reason = explain_failure(state_name, error, cause)
    source = SourceObject.from_dict(state["source"])
    try:
        sha256, size = storage.hash_object(ctx.s3, source)
    except PagemillError as exc:
        # Without the bytes there is no document identity; the execution still fails with the reason.
        log.warning("cannot identify the failed document", extra={"error": str(exc)})
        return {"error": error, "reason": reason}
    document_id = (state.get("plan") or {}).get("document_id") or document_id_for(sha256)
    documents.record_failure(
        conn, document_id=document_id, sha256=sha256, size_bytes=size, source=source, error_class=error,
        error=reason, cause=cause, failed_state=state_name, execution_arn=execution_arn,
    )
    return {"error": error, "reason": reason}


# --- executions that ended without reaching Write or RecordFailure --------------------------

STOPPED_REASON = "the execution was stopped before it finished (StopExecution: pagemill cancel or the console)"
TIMED_OUT_REASON = "the execution ran past its time limit and Step Functions ended it; redrive it or raise the limit"


def settle_ended_execution(conn: Any, *, execution_arn: str, status: str) -> dict[str, str | None]:
    """An execution that was stopped or timed out as a whole never reaches RecordFailure: its
    document would say "running" forever. Settle it: ABORTED → cancelled, TIMED_OUT → failed.
    Idempotent, and a document that already ended (or a cancel recorded first) is left alone."""
    if status == "ABORTED":
        document_id = documents.cancel_execution(conn, execution_arn, STOPPED_REASON)
    elif status == "TIMED_OUT":
        document_id = documents.fail_execution(conn, execution_arn, "States.Timeout", TIMED_OUT_REASON)
    else:
        raise InternalError(f"only stopped or timed-out executions are settled here, not {status}")
    return {"document_id": document_id, "status": status}
