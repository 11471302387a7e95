"""Plan: open and validate the PDF, register the document, write the batch manifest."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from pagemill import keys, storage
from pagemill.db import documents
from pagemill.payloads import PlanInput
from pagemill.pdf.document import inspect_pdf, open_pdf, plan_batches
from pagemill.pipeline.context import StageContext, document_id_for
from pagemill.records import BatchSpec, dump

log = logging.getLogger(__name__)



def plan(ctx: StageContext, conn: Any, payload: PlanInput) -> dict[str, Any]:
    started = time.monotonic()
    source, execution_arn = payload.source, payload.execution_arn
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
                "manifest_key": "", "duplicate": True, "only_batch": None,
            }
        doc = open_pdf(path, ctx.settings)
        try:
            info = inspect_pdf(doc)
        finally:
            doc.close()
    # Pages to OCR beyond the document's cap are not read (each batch gets its share to warn about).
    to_ocr = info.ocr_pages[: ctx.settings.ocr_max_pages]
    over_cap = info.ocr_pages[ctx.settings.ocr_max_pages :]
    ranges = plan_batches(info.images_per_page, ctx.settings, frozenset(to_ocr))
    manifest = [
        BatchSpec(
            document_id=document_id, source=source, batch_no=n, first_page=a, last_page=b,
            ocr_skip=tuple(p for p in over_cap if a <= p <= b), batch_count=len(ranges),
        )
        for n, (a, b) in enumerate(ranges)
    ]
    manifest_key = keys.manifest_key(document_id)
    items = dump(manifest)
    storage.put_json(ctx.s3, ctx.work_bucket, manifest_key, items)
    documents.set_page_count(conn, document_id, info.page_count)
    log.info(
        "planned", extra={"document_id": document_id, "pages": info.page_count, "batches": len(ranges),
                          "ocr_pages": len(to_ocr), "ocr_over_cap": len(over_cap),
                          "seconds": round(time.monotonic() - started, 3)},
    )
    return {
        "document_id": document_id, "page_count": info.page_count, "batch_count": len(ranges),
        "manifest_key": manifest_key, "duplicate": False,
        # A document of one batch is extracted without a Distributed Map: its batch travels here.
        "only_batch": items[0] if len(items) == 1 else None,
    }
