"""CaptionBatch and UnderstandDocument: the model's half of the Enrich stage.

Both take the model client, the shared circuit breaker and the document's token budget from the
edge, and never fail a document for model API trouble: an image or a document that got no answer
is recorded as skipped with the reason (pagemill.captions). ``CaptionsUnavailable`` (no API key)
skips everything at once, without a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pagemill import layout, storage
from pagemill.captions.caption import caption_batch as _caption_batch
from pagemill.captions.caption import finish_batch, skip_all
from pagemill.captions.understand import SKIPPED, Understanding, understand_document
from pagemill.models import BatchSpec
from pagemill.stages import StageContext, batch_results, load_manifest

if TYPE_CHECKING:
    from pagemill.captions.breaker import CircuitBreaker
    from pagemill.captions.budget import TokenBudget

log = logging.getLogger(__name__)


def caption_batch(
    ctx: StageContext,
    *,
    images: Sequence[Mapping[str, Any]],
    out_key: str,
    client: Any,
    breaker: CircuitBreaker,
    budget: TokenBudget | None,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Caption one map item's images into ``out_key``; returns the counts (the item's result)."""
    s = ctx.settings
    return _caption_batch(
        ctx.s3, bucket=ctx.work_bucket, images=images, out_key=out_key, client=client, model=s.caption_model,
        breaker=breaker, budget=budget, max_attempts=s.caption_max_attempts, base_delay=s.caption_retry_base_seconds,
        max_delay=s.caption_retry_max_seconds, max_image_pixels=s.max_image_pixels, time_left=time_left,
    )


def skip_batch(ctx: StageContext, *, images: Sequence[Mapping[str, Any]], out_key: str, reason: str) -> dict[str, Any]:
    """Every image of the batch skipped for one reason, recorded like any result."""
    return finish_batch(ctx.s3, ctx.work_bucket, out_key, skip_all(images, reason))


def understand(
    ctx: StageContext,
    *,
    document_id: str,
    manifest_key: str,
    client: Any,
    breaker: CircuitBreaker,
    budget: TokenBudget | None,
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Read the document's markdown (no more than the understanding budget holds), ask the model
    what the document is, and store the answer at the document's understanding key."""
    manifest = load_manifest(ctx, manifest_key)
    s = ctx.settings
    pages = list(_markdown_pages(ctx, document_id, manifest, max_chars=s.understanding_token_budget * 4))
    result = understand_document(
        client, s.caption_model, markdown_pages=pages, token_budget=s.understanding_token_budget,
        page_count=max((spec.last_page for spec in manifest), default=None), breaker=breaker, budget=budget,
        max_attempts=s.caption_max_attempts, base_delay=s.caption_retry_base_seconds,
        max_delay=s.caption_retry_max_seconds, time_left=time_left,
    )
    return _store(ctx, document_id, result)


def skip_understanding(ctx: StageContext, *, document_id: str, reason: str) -> dict[str, Any]:
    return _store(ctx, document_id, Understanding(None, None, status=SKIPPED, reason=reason))


def _store(ctx: StageContext, document_id: str, result: Understanding) -> dict[str, Any]:
    key = layout.understanding_key(document_id)
    storage.put_json(ctx.s3, ctx.work_bucket, key, result.to_dict())
    return {"understanding_key": key, "status": result.status, "reason": result.reason,
            "products": len(result.products), "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens}


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
