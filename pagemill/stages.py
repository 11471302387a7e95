"""The pipeline's stages as plain functions: what each Lambda does, with its S3 client and
database connection passed in. The handlers, the local engine's workers, the tests and the
benchmarks all call these."""

from __future__ import annotations

import json
import logging
import mimetypes
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pymupdf

from pagemill import layout, storage
from pagemill.db import documents
from pagemill.db.write import write_document
from pagemill.errors import InternalError, MalformedPdf, PagemillError, input_error_names
from pagemill.extract import extract_pages
from pagemill.models import BatchResult, BatchSpec, SourceObject
from pagemill.pdf import inspect_pdf, open_pdf, plan_batches
from pagemill.settings import Settings

log = logging.getLogger(__name__)


def document_id_for(sha256: str) -> str:
    """Document identity is the content: the same bytes under any key are one document."""
    return sha256[:32]


@dataclass(frozen=True)
class StageContext:
    """What every stage needs from the edge: clients, settings, where to put work."""

    s3: Any
    settings: Settings
    work_bucket: str
    scratch: Path = Path(tempfile.gettempdir()) / "pagemill"


def plan(ctx: StageContext, conn: Any, source: SourceObject, execution_arn: str | None) -> dict[str, Any]:
    started = time.monotonic()
    ctx.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=ctx.scratch, suffix=".pdf") as tmp:
        path = Path(tmp.name)
        sha256, size = storage.download(ctx.s3, source, path)
        document_id = document_id_for(sha256)
        outcome = documents.register_document(
            conn, document_id=document_id, sha256=sha256, size_bytes=size, source=source,
            execution_arn=execution_arn,
        )
        if outcome.duplicate:
            log.info("content already processed", extra={"document_id": document_id})
            return {
                "document_id": document_id, "page_count": outcome.page_count or 0, "batch_count": 0,
                "manifest_key": "", "duplicate": True,
            }
        doc = open_pdf(path, ctx.settings)
        try:
            info = inspect_pdf(doc)
        finally:
            doc.close()
    ranges = plan_batches(info.images_per_page, ctx.settings)
    manifest = [
        BatchSpec(document_id=document_id, source=source, batch_no=n, first_page=a, last_page=b).to_dict()
        for n, (a, b) in enumerate(ranges)
    ]
    manifest_key = layout.manifest_key(document_id)
    storage.put_json(ctx.s3, ctx.work_bucket, manifest_key, manifest)
    documents.set_page_count(conn, document_id, info.page_count)
    log.info(
        "planned", extra={"document_id": document_id, "pages": info.page_count, "batches": len(ranges),
                          "seconds": round(time.monotonic() - started, 3)},
    )
    return {
        "document_id": document_id, "page_count": info.page_count, "batch_count": len(ranges),
        "manifest_key": manifest_key, "duplicate": False,
    }


def extract_batch(ctx: StageContext, spec: BatchSpec, cache: storage.SourceCache) -> dict[str, Any]:
    path = cache.fetch(ctx.s3, spec.source)
    try:
        doc = pymupdf.open(path)
    except (pymupdf.FileDataError, RuntimeError) as exc:
        raise MalformedPdf(f"The PDF could not be reopened for pages {spec.first_page}-{spec.last_page}: {exc}") from exc

    def store_image(sha256: str, ext: str, data: bytes) -> str:
        key = layout.image_key(spec.document_id, sha256, ext)
        content_type = mimetypes.types_map.get(f".{ext}", "application/octet-stream")
        storage.put_bytes(ctx.s3, ctx.work_bucket, key, data, content_type)
        return key

    try:
        result = extract_pages(
            doc, document_id=spec.document_id, batch_no=spec.batch_no, first_page=spec.first_page,
            last_page=spec.last_page, settings=ctx.settings, store_image=store_image,
        )
    finally:
        doc.close()
    key = layout.batch_result_key(spec.document_id, spec.first_page, spec.last_page)
    storage.put_json(ctx.s3, ctx.work_bucket, key, result.to_dict())
    return {"result_key": key, "pages": len(result.pages), "images": len(result.images)}


def write(
    ctx: StageContext, conn: Any, *, document_id: str, manifest_key: str, execution_arn: str | None,
    started_at: str | None,
) -> dict[str, int]:
    began = time.monotonic()
    manifest = [BatchSpec.from_dict(d) for d in storage.get_json(ctx.s3, ctx.work_bucket, manifest_key)]
    stats: dict[str, Any] = {"batches": len(manifest), "skipped_images": {}}
    extract_seconds = 0.0

    def batches() -> Iterator[BatchResult]:
        # One batch in memory at a time: write_document streams rows into COPY.
        nonlocal extract_seconds
        for spec in sorted(manifest, key=lambda s: s.first_page):
            key = layout.batch_result_key(document_id, spec.first_page, spec.last_page)
            try:
                result = BatchResult.from_dict(storage.get_json(ctx.s3, ctx.work_bucket, key))
            except storage.SourceMissing as exc:
                raise InternalError(
                    f"the result of pages {spec.first_page}-{spec.last_page} is missing from s3://{ctx.work_bucket}/{key}"
                ) from exc
            extract_seconds += result.seconds
            for skipped in result.skipped_images:
                stats["skipped_images"][skipped.reason] = stats["skipped_images"].get(skipped.reason, 0) + 1
            yield result

    timings: dict[str, float] = {}
    counts = write_document(conn, document_id=document_id, batches=batches(), timings=timings, stats=stats)
    timings.update({"extract_seconds_sum": round(extract_seconds, 3), "write_seconds": round(time.monotonic() - began, 3)})
    if started_at:
        timings["pipeline_seconds"] = round(
            (datetime.now(timezone.utc) - datetime.fromisoformat(started_at.replace("Z", "+00:00"))).total_seconds(), 3
        )
    documents.set_timings(conn, document_id, timings)
    return {"pages": counts.pages, "chunks": counts.chunks, "images": counts.images}


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
