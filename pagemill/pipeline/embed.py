"""Embed (the CPU path; the GPU path runs the same ``embed_images`` in containers/clip-gpu)."""

from __future__ import annotations

import logging
from typing import Any

from pagemill import keys
from pagemill.clip.embed import embed_images
from pagemill.clip.model import ClipModel
from pagemill.payloads import EmbedInput
from pagemill.pipeline.context import StageContext

log = logging.getLogger(__name__)


def embed(ctx: StageContext, model: ClipModel, payload: EmbedInput) -> dict[str, Any]:
    return embed_images(
        ctx.s3, bucket=ctx.work_bucket, images_key=payload.images_key,
        out_prefix=keys.embeddings_prefix(payload.document_id),
        model=model, batch_size=ctx.settings.embed_batch_size, max_image_pixels=ctx.settings.max_image_pixels,
    )
