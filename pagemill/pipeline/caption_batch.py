"""CaptionBatch: caption one map item's images (never fails the document for model API trouble:
an image without an answer is recorded as skipped with the reason, pagemill.captions)."""

from __future__ import annotations

import logging
from typing import Any

from pagemill.captions.caption import caption_batch as _caption_batch
from pagemill.captions.caption import finish_batch, skip_all
from pagemill.payloads import CaptionBatchInput
from pagemill.pipeline.context import ModelAccess, StageContext

log = logging.getLogger(__name__)


def caption_batch(ctx: StageContext, payload: CaptionBatchInput, model: ModelAccess) -> dict[str, Any]:
    """Caption one map item's images into its ``out_key``; returns the counts (the item's result)."""
    s = ctx.settings
    return _caption_batch(
        ctx.s3, bucket=ctx.work_bucket, images=payload.images, out_key=payload.out_key, client=model.client,
        model=s.caption_model, breaker=model.breaker, budget=model.budget, max_attempts=s.caption_max_attempts,
        base_delay=s.caption_retry_base_seconds, max_delay=s.caption_retry_max_seconds,
        max_image_pixels=s.max_image_pixels, time_left=model.time_left,
    )


def skip_batch(ctx: StageContext, payload: CaptionBatchInput, reason: str) -> dict[str, Any]:
    """Every image of the batch skipped for one reason, recorded like any result."""
    return finish_batch(ctx.s3, ctx.work_bucket, payload.out_key, skip_all(payload.images, reason))
