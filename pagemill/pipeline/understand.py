"""UnderstandDocument: what the document is (type, summary, products), read by the model from
the document's markdown; model API trouble is recorded as skipped with the reason."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pagemill import keys, storage
from pagemill.captions.understand import understand_document
from pagemill.payloads import DocumentInput
from pagemill.pipeline.context import (
    ModelAccess,
    StageContext,
    batch_results,
    load_manifest,
)
from pagemill.records import SKIPPED, BatchSpec, Understanding, dump

log = logging.getLogger(__name__)


def understand(ctx: StageContext, payload: DocumentInput, model: ModelAccess) -> dict[str, Any]:
    """Read the document's markdown (no more than the understanding budget holds), ask the model
    what the document is, and store the answer at the document's understanding key."""
    manifest = load_manifest(ctx, payload.manifest_key, payload.only_batch)
    s = ctx.settings
    pages = list(_markdown_pages(ctx, payload.document_id, manifest, max_chars=s.understanding_token_budget * 4))
    result = understand_document(
        model.client, s.caption_model, markdown_pages=pages, token_budget=s.understanding_token_budget,
        page_count=max((spec.last_page for spec in manifest), default=None), breaker=model.breaker,
        budget=model.budget, max_attempts=s.caption_max_attempts, base_delay=s.caption_retry_base_seconds,
        max_delay=s.caption_retry_max_seconds, time_left=model.time_left,
    )
    return _store(ctx, payload.document_id, result)


def skip_understanding(ctx: StageContext, payload: DocumentInput, reason: str) -> dict[str, Any]:
    return _store(ctx, payload.document_id, Understanding(None, None, status=SKIPPED, reason=reason))


def _store(ctx: StageContext, document_id: str, result: Understanding) -> dict[str, Any]:
    key = keys.understanding_key(document_id)
    storage.put_json(ctx.s3, ctx.work_bucket, key, dump(result))
    # SpeakSummary runs next only for a summary, with speech on.
    speak_on = "lambda" if result.summary and ctx.settings.speech != "off" else "none"
    return {"understanding_key": key, "status": result.status, "reason": result.reason,
            "products": len(result.products), "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens, "speak_on": speak_on}


def _markdown_pages(
    ctx: StageContext, document_id: str, manifest: list[BatchSpec], *, max_chars: int
) -> Iterator[tuple[int, str]]:
    """(page number, markdown) in page order, one batch result loaded at a time, stopping once
    more than ``max_chars`` were given: the rest could not be sent anyway."""
    given = 0
    for result in batch_results(ctx, document_id, manifest):
        for page in result.pages:
            yield page.page_no, page.markdown
            given += len(page.markdown)
            if given > max_chars:
                return
