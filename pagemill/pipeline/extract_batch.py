"""ExtractBatch: pages first..last of the document into markdown, chunks and images (results to S3).
A document's only batch also collects the document's images (CollectImages' result): one
invocation, one state and one read of the batch fewer for every document of one batch."""

from __future__ import annotations

import logging
import mimetypes
from typing import Any

import pymupdf

from pagemill import keys, storage
from pagemill.errors import MalformedPdf
from pagemill.pdf.document import MUPDF_ERRORS
from pagemill.pdf.pages import extract_pages
from pagemill.pipeline.collect_images import collected
from pagemill.pipeline.context import StageContext
from pagemill.records import BatchSpec, dump

log = logging.getLogger(__name__)



def extract_batch(ctx: StageContext, spec: BatchSpec, cache: storage.SourceCache) -> dict[str, Any]:
    path = cache.fetch(ctx.s3, spec.source)
    try:
        doc = pymupdf.open(path)
    except MUPDF_ERRORS as exc:
        raise MalformedPdf(f"The PDF could not be reopened for pages {spec.first_page}-{spec.last_page}: {exc}") from exc

    def store_image(sha256: str, ext: str, data: bytes) -> str:
        key = keys.image_key(spec.document_id, sha256, ext)
        content_type = mimetypes.types_map.get(f".{ext}", "application/octet-stream")
        storage.put_bytes(ctx.s3, ctx.work_bucket, key, data, content_type)
        return key

    try:
        result = extract_pages(
            doc, document_id=spec.document_id, batch_no=spec.batch_no, first_page=spec.first_page,
            last_page=spec.last_page, settings=ctx.settings, store_image=store_image, ocr_skip=spec.ocr_skip,
        )
    finally:
        doc.close()
    key = keys.batch_result_key(spec.document_id, spec.first_page, spec.last_page)
    storage.put_json(ctx.s3, ctx.work_bucket, key, dump(result))
    extracted = {"result_key": key, "pages": len(result.pages), "images": len(result.images)}
    return {**extracted, **collected(ctx, spec.document_id, [result])} if spec.only else extracted
