"""CaptionBatch on its own: one map item → its caption results in S3 (the model is the fake
Messages API, through the real SDK)."""

from __future__ import annotations

from typing import Any

from pagemill import storage
from pagemill.captions.caption import load_results
from pagemill.payloads import CaptionBatchInput
from pagemill.pipeline.caption_batch import caption_batch, skip_batch
from pagemill.pipeline.context import ModelAccess, StageContext
from pagemill.records import CAPTIONED, SKIPPED, load_list
from tests.support.fake_anthropic import FakeAnthropic


def first_item(ctx: StageContext, collected: dict[str, Any]) -> CaptionBatchInput:
    """The CaptionImages map's first item, as the map hands it to the function."""
    return load_list(CaptionBatchInput, storage.get_json(ctx.s3, ctx.work_bucket, collected["caption_batches_key"]))[0]


def test_caption_batch_captions_each_image_of_its_item(
    ctx: StageContext, collected: dict[str, Any], model: ModelAccess, fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN the first caption batch of the catalogue and a model that answers
    item = first_item(ctx, collected)
    # WHEN it is captioned
    out = caption_batch(ctx, item, model)
    # THEN each image has a caption in the item's result object, and one request was sent per image
    results = load_results(ctx.s3, ctx.work_bucket, collected["captions_prefix"])
    assert sorted(results) == sorted(i.sha256 for i in item.images)
    assert {r.status for r in results.values()} == {CAPTIONED} and all(r.caption for r in results.values())
    assert (out["captions_key"], out["captioned"], out["skipped"]) == (item.out_key, len(item.images), 0)
    assert fake_anthropic.count == len(item.images) and out["input_tokens"] > 0


def test_skip_batch_records_every_image_skipped_with_the_reason(
    ctx: StageContext, collected: dict[str, Any], fake_anthropic: FakeAnthropic
) -> None:
    # GIVEN no way to reach the model (no API key)
    item = first_item(ctx, collected)
    # WHEN the batch is skipped
    out = skip_batch(ctx, item, "no API key")
    # THEN each image is recorded as skipped with the reason, and nothing was sent
    results = load_results(ctx.s3, ctx.work_bucket, collected["captions_prefix"])
    assert {(r.status, r.reason) for r in results.values()} == {(SKIPPED, "no API key")}
    assert (out["captioned"], out["skipped"], fake_anthropic.count) == (0, len(item.images), 0)
