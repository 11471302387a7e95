"""What each endpoint does, over a Backend and a database connection; app.py maps HTTP to these
and the typed errors to status codes."""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from PIL import Image as PILImage

from pagemill import keys, storage
from pagemill.api import models
from pagemill.api.backend import Backend
from pagemill.aws.trigger import execution_arn, execution_name, start_for_object
from pagemill.db import documents, overview
from pagemill.errors import (
    EmptyFile,
    FileTooLarge,
    NotAPdf,
    NotRedrivable,
    NotRunning,
    OperationError,
    UnknownDocument,
)
from pagemill.operate import FINISHED, executions
from pagemill.operate.advice import what_to_do
from pagemill.operate.progress import (
    current_state,
    document_progress,
    read_history,
    visited,
)
from pagemill.pdf.header import HEADER_WINDOW, has_pdf_header
from pagemill.pipeline.context import document_id_for
from pagemill.records import DocumentWarning, SourceObject, load_list
from pagemill.search.hybrid import SearchFilters
from pagemill.search.hybrid import search as hybrid_search
from pagemill.text_embed.embedder import EmbeddingUnavailable

THUMBNAIL_SIDE = 256
_AUDIO_TYPES = {"mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav"}
PRESIGN_SECONDS = 900
_CHUNK = 1024 * 1024
_DOCUMENT_ID = re.compile(r"^[0-9a-f]{32}$")
# Ended without its rows (a failure to explain), and what can run again: those, or partial (a new
# execution fills what it can).
_UNFINISHED = ("failed", "cancelled", "interrupted")
_REDRIVABLE = (*_UNFINISHED, "partial")
log = logging.getLogger(__name__)


class BadRequest(OperationError):
    """A request the API cannot read (not the document's fault): a 400."""


class PageOutOfRange(OperationError):
    pass


class UnknownImage(OperationError):
    pass


class NoAudio(OperationError):
    pass


class NotAvailableHere(OperationError):
    pass


# --- reading ---------------------------------------------------------------------------------


def links(document_id: str, status: str, *, audio: bool = False) -> models.Links:
    base = f"/documents/{document_id}"
    return models.Links(
        self=base, pages=f"{base}/pages/{{n}}", images=f"{base}/images/{{n}}", audio=f"{base}/audio" if audio else None,
        cancel=f"{base}/cancel" if status == "running" else None,
        redrive=f"{base}/redrive" if status in _REDRIVABLE else None,
    )


def list_documents(
    backend: Backend, conn: Any, *, status: str | None, limit: int, offset: int
) -> models.DocumentList:
    rows, total = overview.list_documents(conn, status=status, limit=limit, offset=offset)
    items = []
    for row in rows:
        done = row["page_count"] if row["status"] in FINISHED else None
        if row["status"] == "running":
            done = document_progress(backend.s3, backend.bucket, row["id"], page_count=row["page_count"]).pages_done
        items.append(models.DocumentSummary(
            document_id=row["id"], file_name=row["file_name"], status=row["status"], page_count=row["page_count"],
            pages_done=done, error_class=row["error_class"], error=row["error"], created_at=row["created_at"],
            updated_at=row["updated_at"], links=links(row["id"], row["status"]),
        ))
    return models.DocumentList(items=items, total=total, limit=limit, offset=offset,
                               counts=documents.count_by_status(conn))


def document_row(conn: Any, document_id: str) -> dict[str, Any]:
    row = overview.get_document(conn, document_id) if _DOCUMENT_ID.match(document_id) else None
    if row is None:
        raise UnknownDocument(f"There is no document {document_id!r}. Document ids are 32 hex digits, "
                              "as POST /documents and GET /documents return them.")
    return row


def document_detail(backend: Backend, conn: Any, document_id: str) -> models.DocumentDetail:
    row = document_row(conn, document_id)
    status = row["status"]
    failure = None
    if status in _UNFINISHED:
        failure = models.Failure(error_class=row["error_class"], message=row["error"],
                                 failed_state=row["failed_state"], what_to_do=what_to_do(row["error_class"]))
    image_rows = overview.images(conn, document_id)
    return models.DocumentDetail(
        document_id=row["id"], file_name=row["file_name"], status=status, size_bytes=row["size_bytes"],
        page_count=row["page_count"], execution_arn=row["execution_arn"],
        progress=live_progress(backend, row) if status == "running" else None,
        failure=failure,
        warnings=load_list(DocumentWarning, row.get("warnings") or []),
        timings=row["timings"] or {}, doc_type=row["doc_type"], summary=row["summary"],
        products=[models.Product(**p) for p in overview.products(conn, document_id)],
        images=[_image(document_id, i) for i in image_rows],
        speech=models.Speech(status=row.get("speech_status"), reason=row.get("speech_reason"),
                             seconds=row.get("speech_seconds"), voice=row.get("speech_voice"))
        if row.get("speech_status") else None,
        created_at=row["created_at"], updated_at=row["updated_at"],
        links=links(row["id"], status, audio=bool(row.get("speech_key"))),
    )


def live_progress(backend: Backend, row: dict[str, Any]) -> models.Progress:
    """Pages from S3 (the batch results' keys), the state from the execution's history, and the
    batches from the ExtractPages map run's item counts (both AWS and the local interpreter keep
    them); before that map run exists, or with none (a document of one batch: ExtractOnlyBatch),
    the batches done are counted in S3."""
    arn = row["execution_arn"]
    description = _describe(backend, arn) if arn else None
    since = (description.get("redriveDate") or description["startDate"]) if description else None
    done = document_progress(backend.s3, backend.bucket, row["id"], since=since)
    events = read_history(backend.sfn, arn) if description else []
    state = current_state(events)
    batches = None
    if done.batches_total is not None:
        # The map run exists once ExtractPages has started (asking before that races the local
        # interpreter, which builds an execution's state in its own thread).
        counts = _map_run_counts(backend, arn) if visited(events, "ExtractPages") else None
        batches = models.Batches(
            total=done.batches_total,
            completed=counts["succeeded"] if counts else done.batches_done,
            active=counts["running"] if counts else None,
            failed=(counts["failed"] + counts.get("timedOut", 0)) if counts else 0,
        )
    eta = None
    if since and done.page_count and 0 < done.pages_done < done.page_count:
        elapsed = (datetime.now(UTC) - since).total_seconds()
        eta = round(elapsed * (done.page_count - done.pages_done) / done.pages_done, 1)
    percent = round(100 * done.pages_done / done.page_count, 1) if done.page_count else None
    return models.Progress(pages_done=done.pages_done, page_count=done.page_count, percent=percent, batches=batches,
                           current_state=state, estimated_seconds_remaining=eta)


def _describe(backend: Backend, arn: str) -> dict[str, Any] | None:
    try:
        return backend.sfn.describe_execution(executionArn=arn)
    except backend.sfn.exceptions.ExecutionDoesNotExist:
        return None


def _map_run_counts(backend: Backend, arn: str) -> dict[str, int] | None:
    runs = backend.sfn.list_map_runs(executionArn=arn).get("mapRuns") or []
    if not runs:
        return None
    # ExtractPages runs before any other Distributed Map of the execution (CaptionImages).
    first = min(runs, key=lambda r: r["startDate"])
    return backend.sfn.describe_map_run(mapRunArn=first["mapRunArn"]).get("itemCounts") or None


def _image(document_id: str, row: dict[str, Any]) -> models.Image:
    url = f"/documents/{document_id}/images/{row['image_no']}"
    return models.Image(
        image_no=row["image_no"], page_no=row["page_no"], page_nos=row["page_nos"], width=row["width"],
        height=row["height"], caption=row["caption"], caption_status=row["caption_status"],
        caption_reason=row["caption_reason"], url=url, thumbnail_url=f"{url}?size=thumbnail",
    )


def page_markdown(conn: Any, document_id: str, page_no: int) -> str:
    row = document_row(conn, document_id)
    markdown = overview.page_markdown(conn, document_id, page_no)
    if markdown is None:
        if row["status"] not in FINISHED:
            raise PageOutOfRange(f"Document {document_id} is {row['status']}: its pages are stored once it succeeds.")
        raise PageOutOfRange(f"Document {document_id} has pages 1 to {row['page_count']}; there is no page {page_no}.")
    return markdown


def image_bytes(backend: Backend, conn: Any, document_id: str, image_no: int, thumbnail: bool) -> tuple[bytes, str]:
    document_row(conn, document_id)
    row = overview.image(conn, document_id, image_no)
    if row is None:
        count = len(overview.images(conn, document_id))
        raise UnknownImage(f"Document {document_id} has {count} image(s), numbered from 0; there is no image {image_no}.")
    data = storage.get_bytes(backend.s3, backend.bucket, row["s3_key"])
    media = f"image/{'jpeg' if row['ext'] in ('jpg', 'jpeg') else row['ext'] or 'png'}"
    if not thumbnail:
        return data, media
    with PILImage.open(io.BytesIO(data)) as img:
        img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue(), "image/jpeg"


def audio(backend: Backend, conn: Any, document_id: str) -> tuple[bytes, str]:
    """The spoken summary, where the pipeline made one (documents.speech_key)."""
    row = document_row(conn, document_id)
    key = row.get("speech_key")
    if not key:
        why = row.get("speech_reason")
        raise NoAudio(f"Document {document_id} has no spoken summary" + (f": {why}" if why else "."))
    return storage.get_bytes(backend.s3, backend.bucket, key), _AUDIO_TYPES.get(row.get("speech_format"), "audio/mpeg")


def stats(conn: Any) -> models.Stats:
    s = overview.stats(conn)
    oldest = s["oldest_running"]
    if oldest:
        oldest = {**oldest, "running_seconds": round(
            (datetime.now(UTC) - oldest["created_at"]).total_seconds(), 1)}
    return models.Stats(
        by_status=s["by_status"], pages_processed=s["stored"]["pages"], images_processed=s["stored"]["images"],
        last_hour={"documents": s["last_hour"]["documents"], "pages": s["last_hour"]["pages"],
                   "pages_per_second": round(s["last_hour"]["pages"] / 3600, 4)},
        failures_by_error_class=s["failures"], oldest_running=oldest,
    )


def search(backend: Backend, conn: Any, q: str, *, limit: int, document: str | None) -> list[models.SearchHit]:
    """The hybrid search of `pagemill search` (chunks by keyword and vector, images by caption and
    CLIP vector, fused by rank); ``document`` keeps one document's. When the query cannot be
    embedded, chunks are found by keyword only."""
    filters, image_query = SearchFilters(document_id=document), backend.embed_text(q)
    try:
        hits = hybrid_search(conn, q, limit=limit, filters=filters, embedder=backend.text_embedder,
                             image_query=image_query)
    except EmbeddingUnavailable as exc:
        # The embedding service is down or throttled past the query's retries: a search by keyword
        # is worth more to the person waiting than an error.
        log.warning("query embedding unavailable: chunks found by keyword only",
                    extra={"model": backend.text_embedder.model if backend.text_embedder else None,
                           "reason": exc.reason})
        hits = hybrid_search(conn, q, limit=limit, filters=filters, embedder=None, image_query=image_query)
    names = overview.file_names(conn, sorted({h.document_id for h in hits}))
    out = []
    for h in hits:
        common = {"document_id": h.document_id, "file_name": names.get(h.document_id), "kind": h.kind,
                  "score": h.score, "document_url": f"/documents/{h.document_id}"}
        if h.kind == "chunk":
            out.append(models.SearchHit(**common, first_page=h.first_page, last_page=h.last_page, text=h.text))
        else:
            url = f"/documents/{h.document_id}/images/{h.image_no}"
            out.append(models.SearchHit(**common, page_no=h.page_no, caption=h.caption, image_no=h.image_no,
                                        image_url=url, thumbnail_url=f"{url}?size=thumbnail"))
    return out


# --- changing ----------------------------------------------------------------------------------


def safe_file_name(name: str | None) -> str:
    """The upload's base name: letters, digits, spaces, dots, dashes (the trigger makes its own
    execution-name stem from it)."""
    stem = PurePosixPath((name or "").replace("\\", "/")).name
    cleaned = re.sub(r"[^\w. -]+", "-", stem).strip(" .-")[:200]
    return cleaned or "upload.pdf"


def accept_upload(backend: Backend, conn: Any, file: BinaryIO, file_name: str) -> models.Accepted:
    """Check the file (a PDF header, not empty, not over the limit), put it under uploads/ and
    start the pipeline as the S3 trigger does. ``file`` is a seekable file (the request body
    spooled to disk): it is read in chunks, never whole."""
    head = file.read(HEADER_WINDOW)
    if not head:
        raise EmptyFile("The file is empty (0 bytes). Choose the PDF again and upload it.")
    if not has_pdf_header(head):
        raise NotAPdf(f"{file_name} is not a PDF (no %PDF- header in its first bytes). Upload a PDF document.")
    file.seek(0, io.SEEK_END)
    size = file.tell()
    if size > backend.max_upload_bytes:
        raise FileTooLarge(
            f"{file_name} is {size / 2**20:.1f} MiB, over this API's {backend.max_upload_bytes / 2**20:.1f} MiB "
            "limit for POST /documents. Ask POST /uploads for a presigned upload, or split the PDF."
        )
    file.seek(0)
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(_CHUNK), b""):
        digest.update(block)
    file.seek(0)
    key = f"{keys.UPLOADS_PREFIX}{safe_file_name(file_name)}"
    version = storage.put_file(backend.s3, backend.bucket, key, file, "application/pdf")
    source = SourceObject(bucket=backend.bucket, key=key, version_id=version)
    document_id = document_id_for(digest.hexdigest())
    expected = execution_arn(backend.state_machine_arn, execution_name(source))
    # Registered before the execution starts, so GET /documents/{id} answers at once; Plan
    # registers it again with the same execution (the same content that succeeded stays so).
    registered = documents.register_document(
        conn, document_id=document_id, sha256=digest.hexdigest(), size_bytes=size, source=source,
        execution_arn=expected,
    )
    outcome = start_for_object(backend.sfn, backend.state_machine_arn, source)
    return models.Accepted(
        document_id=document_id, status=registered.status, duplicate=registered.duplicate,
        execution_arn=outcome.execution_arn, file_name=PurePosixPath(key).name,
        links=links(document_id, registered.status),
    )


def presign_upload(backend: Backend, file_name: str) -> models.PresignedUpload:
    if not backend.presigned_uploads:
        raise NotAvailableHere(
            "Presigned uploads start the pipeline through the stack's S3 event trigger, which the local engine "
            "does not have: use POST /documents here."
        )
    key = f"{keys.UPLOADS_PREFIX}{safe_file_name(file_name)}"
    post = backend.s3.generate_presigned_post(
        Bucket=backend.bucket, Key=key, Fields={"Content-Type": "application/pdf"},
        Conditions=[{"Content-Type": "application/pdf"}, ["content-length-range", 1, backend.max_source_bytes]],
        ExpiresIn=PRESIGN_SECONDS,
    )
    return models.PresignedUpload(url=post["url"], fields=post["fields"], key=key, expires_in=PRESIGN_SECONDS,
                                  max_bytes=backend.max_source_bytes)


def cancel(backend: Backend, conn: Any, document_id: str, reason: str) -> models.Outcome:
    row = document_row(conn, document_id)
    if row["status"] != "running":
        raise NotRunning(f"Document {document_id} is {row['status']}, not running: nothing to cancel.")
    outcome = executions.cancel(backend.sfn, backend.stack, row["execution_arn"], reason, conn)
    return models.Outcome(execution_arn=outcome.execution_arn, document_id=document_id, status=outcome.status,
                          note=outcome.note)


def redrive(backend: Backend, conn: Any, document_id: str) -> models.Outcome:
    row = document_row(conn, document_id)
    if row["status"] not in _REDRIVABLE:
        raise NotRedrivable(
            f"Document {document_id} is {row['status']}: only {', '.join(_REDRIVABLE)} documents are redriven.")
    description = _describe(backend, row["execution_arn"])
    if description is None:
        raise NotRedrivable(f"Document {document_id} ran on an engine that is gone (its execution and upload went "
                            "with it): upload the file again.")
    if description["status"] == "RUNNING":
        # Cancelled: the row says so at once; the execution stops a moment later.
        raise NotRedrivable(f"Document {document_id} is {row['status']} but its execution is still stopping; "
                            "redrive it again in a few seconds.")
    plan = executions.plan_redrive(backend.sfn, backend.stack, row["execution_arn"])
    if plan.how == "redrive" and not backend.redrive_executions:
        plan = replace(plan, how="restart", why=f"{plan.why}; this engine cannot resume an execution")
    # Marked running for the execution that will do the work before it starts (as an upload is),
    # so the document reads running at once and a quick failure is not overwritten afterwards.
    arn = plan.execution_arn if plan.how == "redrive" else execution_arn(
        backend.state_machine_arn, execution_name(plan.source, plan.attempt + 1))
    documents.register_document(conn, document_id=document_id, sha256=row["sha256"], size_bytes=row["size_bytes"],
                                source=plan.source, execution_arn=arn)
    outcome = executions.execute_redrive(backend.sfn, backend.stack, plan)
    return models.Outcome(execution_arn=outcome.execution_arn, document_id=document_id, status="running",
                          note=outcome.note)


def health(backend: Backend, conn_factory: Any) -> models.Health:
    checks: dict[str, str] = {}
    for name, probe in (
        ("database", lambda: _probe_database(conn_factory)),
        ("storage", lambda: backend.s3.head_bucket(Bucket=backend.bucket)),
        ("state_machine", lambda: backend.sfn.describe_state_machine(stateMachineArn=backend.state_machine_arn)),
    ):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure as unhealthy
            checks[name] = f"unreachable: {type(exc).__name__}"
    return models.Health(status="ok" if all(v == "ok" for v in checks.values()) else "unhealthy", checks=checks)


def _probe_database(conn_factory: Any) -> None:
    with conn_factory() as conn:
        conn.execute("select 1").fetchone()
