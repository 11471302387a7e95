"""ExtractBatch on its own: one manifest item → its result object and its images in S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pymupdf

from pagemill import keys, storage
from pagemill.pdf.completeness import word_loss
from pagemill.payloads import DocumentInput
from pagemill.pipeline.collect_images import collect_images
from pagemill.pipeline.context import StageContext
from pagemill.pipeline.extract_batch import extract_batch
from pagemill.pipeline.plan import plan
from pagemill.records import BatchResult, BatchSpec, load
from pagemill.storage import SourceCache
from pagemill_tools.scans import add_scan, known_text
from tests.support.stages import (
    Upload,
    manifest_items,
    plan_input,
    upload_pdf,
    with_settings,
)


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
    # AND, one of several batches, it leaves the document's images to CollectImages
    assert set(out) == {"result_key", "pages", "images"}


def test_a_documents_only_batch_collects_its_images_as_collect_images_does(
    ctx: StageContext, conn: psycopg.Connection[Any], upload: Upload, tmp_path: Path
) -> None:
    # GIVEN the catalogue planned as one batch (ExtractOnlyBatch, no map and no CollectImages state)
    whole = with_settings(ctx, batch_pages=100, batch_cost=1000.0)
    planned = plan(whole, conn, plan_input(upload.source))
    assert planned["batch_count"] == 1
    spec = load(BatchSpec, planned["only_batch"])
    # WHEN its only batch is extracted
    out = extract_batch(whole, spec, SourceCache(tmp_path / "sources"))
    # THEN it answers what CollectImages answers for the extracted document (which reads the batch
    # back from S3), beside its own counts
    extracted = {"result_key": keys.batch_result_key(spec.document_id, 1, 6), "pages": 6, "images": out["images"]}
    document = DocumentInput(planned["document_id"], planned["manifest_key"], spec)
    assert out == {**extracted, **collect_images(whole, document)}
    assert out["image_count"] == upload.truth.distinct_images and out["embed_on"] == "lambda"


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


def test_extract_batch_reads_a_scan_with_ocr_and_warns_about_pages_over_the_cap(
    ctx: StageContext, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # GIVEN two scans of known text planned with a cap of one OCR page per document
    doc = pymupdf.open()
    texts = [known_text(seed, 60) for seed in (1, 2)]
    for text in texts:
        add_scan(doc, text, dpi=150)
    path = tmp_path / "scans.pdf"
    doc.save(path)
    capped = with_settings(ctx, ocr_max_pages=1)
    planned = plan(capped, conn, plan_input(upload_pdf(ctx.s3, path, "uploads/scans.pdf")))
    [spec] = manifest_items(ctx, planned["manifest_key"])
    # WHEN the batch is extracted
    out = extract_batch(capped, spec, SourceCache(tmp_path / "sources"))
    # THEN page 1's markdown and chunks are its OCR text, with where it came from and how sure
    result = load(BatchResult, storage.get_json(ctx.s3, ctx.work_bucket, out["result_key"]))
    first, second = result.pages
    assert (first.text_source, second.text_source) == ("ocr", "text_layer")
    assert 1 - word_loss(texts[0], first.markdown).fraction >= 0.9 and first.ocr_confidence > 0.8
    assert 1 - word_loss(texts[0], " ".join(c.text for c in result.chunks)).fraction >= 0.9
    # AND page 2, over the cap, is named in a warning that says what to do
    assert [(w.code, w.pages) for w in result.warnings] == [("ocr_cap_reached", [2])]
