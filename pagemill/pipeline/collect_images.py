"""CollectImages: the document's distinct images, where they are embedded, and the caption batches.
A document of one batch has them collected by ExtractBatch itself (pagemill.pipeline.extract_batch)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pagemill import keys, storage
from pagemill.payloads import CaptionBatchInput, DocumentInput
from pagemill.pipeline.context import StageContext, batch_results, load_manifest
from pagemill.records import BatchResult, ImageRef, dump

log = logging.getLogger(__name__)


def collect_images(ctx: StageContext, payload: DocumentInput) -> dict[str, Any]:
    """The images of the document's extracted batches (read from S3): see ``collected``."""
    manifest = load_manifest(ctx, payload.manifest_key, payload.only_batch)
    return collected(ctx, payload.document_id, batch_results(ctx, payload.document_id, manifest))


def collected(ctx: StageContext, document_id: str, results: Iterable[BatchResult]) -> dict[str, Any]:
    """Write the document's distinct images (first occurrence order) as one list and decide where
    they are embedded: nowhere, on a CPU Lambda, or on the GPU service."""
    seen: dict[str, ImageRef] = {}
    for result in results:
        for image in result.images:
            seen.setdefault(image.sha256, ImageRef(image.sha256, image.s3_key))
    images_key = keys.image_list_key(document_id)
    if not seen:  # no list: Embed and the captions, its readers, do not run
        embed_on = "none"
    elif len(seen) >= ctx.settings.gpu_min_images:
        embed_on = "gpu"
    else:
        embed_on = "lambda"
    if seen:
        storage.put_json(ctx.s3, ctx.work_bucket, images_key, dump(list(seen.values())))
    captions_on = ctx.settings.caption_provider != "off"
    caption_batches = _plan_caption_batches(ctx, document_id, seen) if captions_on else 0
    log.info("images collected", extra={
        "document_id": document_id, "images": len(seen), "embed_on": embed_on, "caption_batches": caption_batches,
    })
    return {
        "image_count": len(seen),
        "images_key": images_key,
        "embed_on": embed_on,
        # CaptionImages runs when there is something to caption; UnderstandDocument whenever
        # the model is in use (the text alone is worth reading).
        "caption_on": "map" if caption_batches else "none",
        "caption_batches_key": keys.caption_batches_key(document_id),
        "captions_prefix": keys.captions_prefix(document_id),
        "understand_on": "lambda" if captions_on else "none",
    }


def _plan_caption_batches(ctx: StageContext, document_id: str, images: dict[str, ImageRef]) -> int:
    """The CaptionImages map's items: caption_batch_size images each, with where each batch's
    results go. Returns the number of batches."""
    listed = list(images.values())
    size = ctx.settings.caption_batch_size
    batches = [
        CaptionBatchInput(document_id=document_id, batch_no=n, images=listed[start : start + size],
                          out_key=keys.caption_batch_key(document_id, n))
        for n, start in enumerate(range(0, len(listed), size))
    ]
    if batches:
        storage.put_json(ctx.s3, ctx.work_bucket, keys.caption_batches_key(document_id), dump(batches))
    return len(batches)
