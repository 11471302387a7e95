"""ExtractBatch on its own: one manifest item → its result object and its images in S3."""

from __future__ import annotations

from pathlib import Path

from pagemill import keys, storage
from pagemill.pipeline.context import StageContext
from pagemill.pipeline.extract_batch import extract_batch
from pagemill.records import BatchResult, BatchSpec, load
from pagemill.storage import SourceCache
from tests.support.stages import Upload


def test_extract_batch_writes_its_pages_chunks_and_images(
    ctx: StageContext, manifest: list[BatchSpec], upload: Upload, tmp_path: Path
) -> None:
    # GIVEN the second batch of a planned catalogue (pages 4-6)
    spec = manifest[1]
    # WHEN it is extracted
    out = extract_batch(ctx, spec, SourceCache(tmp_path / "sources"))
    # THEN its result object holds those pages, with each page's heading in its markdown
    assert out["result_key"] == keys.batch_result_key(spec.document_id, 4, 6)
    result = load(BatchResult, storage.get_json(ctx.s3, ctx.work_bucket, out["result_key"]))
    assert [p.page_no for p in result.pages] == [4, 5, 6] and out["pages"] == 3
    for page in result.pages:
        assert upload.truth.headings[page.page_no - 1] in page.markdown
    assert result.chunks and all(4 <= c.first_page <= c.last_page <= 6 for c in result.chunks)
    # AND every image it drew is stored under the document, named by its content
    assert out["images"] == len(result.images) > 0
    for image in result.images:
        assert image.sha256 in upload.truth.image_hashes
        assert image.s3_key == keys.image_key(spec.document_id, image.sha256, image.ext)
        assert len(storage.get_bytes(ctx.s3, ctx.work_bucket, image.s3_key)) == image.size_bytes


def test_extract_batch_result_is_the_same_when_run_again(
    ctx: StageContext, manifest: list[BatchSpec], tmp_path: Path
) -> None:
    # GIVEN a batch extracted once (a Lambda retried after it wrote its result)
    cache = SourceCache(tmp_path / "sources")
    first = extract_batch(ctx, manifest[0], cache)
    before = load(BatchResult, storage.get_json(ctx.s3, ctx.work_bucket, first["result_key"]))
    # WHEN it runs again THEN it writes the same pages, chunks and images
    again = extract_batch(ctx, manifest[0], cache)
    after = load(BatchResult, storage.get_json(ctx.s3, ctx.work_bucket, again["result_key"]))
    assert (after.pages, after.chunks, after.images) == (before.pages, before.chunks, before.images)
