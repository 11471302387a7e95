"""CaptionBatch: caption one map item's images (never fails the document for model API trouble:
an image without an answer is recorded as skipped with the reason, pagemill.captions)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pagemill.captions.caption import caption_batch as _caption_batch
from pagemill.captions.caption import finish_batch, skip_all
from pagemill.pipeline.context import StageContext

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
