"""CollectImages on its own: the batches' images → the distinct image list, where to embed, and
the caption batches."""

from __future__ import annotations

from pagemill import keys, storage
from pagemill.payloads import CaptionBatchInput, DocumentInput
from pagemill.pipeline.collect_images import collect_images
from pagemill.pipeline.context import StageContext
from pagemill.records import ImageRef, load_list
from tests.support.stages import Upload, with_settings


def test_collect_images_lists_each_image_once_and_plans_caption_batches(
    ctx: StageContext, document: DocumentInput, upload: Upload
) -> None:
    # GIVEN an extracted catalogue whose logo is on every page
    # WHEN its images are collected
    out = collect_images(ctx, document)
    # THEN the list holds each distinct image once
    images = load_list(ImageRef, storage.get_json(ctx.s3, ctx.work_bucket, out["images_key"]))
    assert sorted(i.sha256 for i in images) == sorted(set(upload.truth.image_hashes))
    assert out["image_count"] == len(images) == upload.truth.distinct_images
    # AND few images are embedded on Lambda, and captioned in batches of two
    assert (out["embed_on"], out["caption_on"], out["understand_on"]) == ("lambda", "map", "lambda")
    batches = load_list(CaptionBatchInput, storage.get_json(ctx.s3, ctx.work_bucket, out["caption_batches_key"]))
    assert [i for b in batches for i in b.images] == images
    assert [b.out_key for b in batches] == [keys.caption_batch_key(document.document_id, n) for n in range(len(batches))]
    assert all(len(b.images) <= 2 for b in batches)


def test_collect_images_sends_many_images_to_the_gpu_and_none_to_captions_when_off(
    ctx: StageContext, document: DocumentInput
) -> None:
    # GIVEN a GPU threshold the catalogue reaches, and captions off
    ctx = with_settings(ctx, gpu_min_images=2, caption_provider="off")
    # WHEN its images are collected
    out = collect_images(ctx, document)
    # THEN they go to the GPU service, and neither captions nor understanding run
    assert (out["embed_on"], out["caption_on"], out["understand_on"]) == ("gpu", "none", "none")
    assert not storage.list_keys(ctx.s3, ctx.work_bucket, out["caption_batches_key"])
