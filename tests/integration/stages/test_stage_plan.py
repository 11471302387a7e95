"""Plan on its own: the PDF in S3 → the document's row and its batch manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pymupdf
import pytest

from pagemill import keys
from pagemill.errors import NotAPdf
from pagemill.pipeline.context import StageContext, load_manifest
from pagemill.records import BatchSpec, load
from pagemill.pipeline.plan import plan
from pagemill_tools.scans import add_scan, known_text
from tests.support.stages import (
    EXECUTION_ARN,
    Upload,
    manifest_items,
    plan_input,
    upload_pdf,
    with_settings,
)


def test_plan_registers_the_document_and_writes_its_batches(
    ctx: StageContext, planned: dict[str, Any], upload: Upload, db: psycopg.Connection[Any]
) -> None:
    # GIVEN a six-page catalogue uploaded, and batches of three pages
    # WHEN Plan runs (the `planned` fixture)
    # THEN the manifest's batches cover every page once, in order, each naming the source version
    assert planned["page_count"] == 6 and planned["batch_count"] == 2 and planned["duplicate"] is False
    assert planned["manifest_key"] == keys.manifest_key(planned["document_id"])
    specs = manifest_items(ctx, planned["manifest_key"])
    assert [(s.batch_no, s.first_page, s.last_page) for s in specs] == [(0, 1, 3), (1, 4, 6)]
    assert {s.source for s in specs} == {upload.source}
    # AND, more than one batch, they go to the ExtractPages map: none travels in the state
    assert planned["only_batch"] is None
    # AND the document is running for this execution, with its page count
    row = db.execute("select status, page_count, execution_arn from documents where id = %s",
                     (planned["document_id"],)).fetchone()
    assert row == ("running", 6, EXECUTION_ARN)


def test_plan_of_a_document_of_one_batch_hands_that_batch_to_the_state_machine(
    ctx: StageContext, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # GIVEN two pages, within one batch
    doc = pymupdf.open()
    for n in (1, 2):
        doc.new_page().insert_text((72, 72), f"Page {n} of a short letter.")
    path = tmp_path / "letter.pdf"
    doc.save(path)
    # WHEN Plan runs
    planned = plan(ctx, conn, plan_input(upload_pdf(ctx.s3, path, "uploads/letter.pdf")))
    # THEN its one batch is in Plan's result (ExtractOnlyBatch's input: no map run for it), the
    # manifest's item as ExtractPages would hand it over; the manifest is written all the same
    assert planned["batch_count"] == 1
    (item,) = manifest_items(ctx, planned["manifest_key"])
    assert load(BatchSpec, planned["only_batch"]) == item
    assert (item.first_page, item.last_page) == (1, 2)
    # AND the stages after it, handed that batch, do not read the manifest again
    ctx.s3.delete_object(Bucket=ctx.work_bucket, Key=planned["manifest_key"])
    assert load_manifest(ctx, planned["manifest_key"], item) == [item]


def test_plan_of_content_already_written_is_a_duplicate(
    ctx: StageContext, conn: psycopg.Connection[Any], planned: dict[str, Any], upload: Upload,
    db: psycopg.Connection[Any],
) -> None:
    # GIVEN the document succeeded before
    db.execute("update documents set status = 'succeeded' where id = %s", (planned["document_id"],))
    # WHEN the same bytes arrive under another key
    again = plan(ctx, conn, plan_input(upload_pdf(ctx.s3, upload.path, "uploads/copy.pdf")))
    # THEN Plan says duplicate and writes no manifest; the new key points at the same document
    assert (again["document_id"], again["duplicate"], again["manifest_key"]) == (planned["document_id"], True, "")
    assert again["only_batch"] is None
    keys_seen = db.execute("select key from sources where document_id = %s order by key",
                           (planned["document_id"],)).fetchall()
    assert keys_seen == [("uploads/catalog.pdf",), ("uploads/copy.pdf",)]


def test_plan_of_a_file_that_is_not_a_pdf_is_an_input_error(
    ctx: StageContext, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # GIVEN a text file uploaded as a PDF
    path = tmp_path / "notes.pdf"
    path.write_text("meeting notes, not a PDF")
    source = upload_pdf(ctx.s3, path, "uploads/notes.pdf")
    # WHEN Plan runs THEN it raises the typed input error (RecordFailure explains it) and writes no manifest
    with pytest.raises(NotAPdf):
        plan(ctx, conn, plan_input(source))
    assert ctx.s3.list_objects_v2(Bucket=ctx.work_bucket).get("KeyCount", 0) == 0


def test_plan_marks_scans_over_the_ocr_cap_and_weighs_scans_in_batches(
    ctx: StageContext, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    # GIVEN a text page then three scans, a cap of two OCR pages, and room for one scan per batch
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "A page with a text layer of its own, more than ten words long.")
    for seed in range(3):
        add_scan(doc, known_text(seed, 30), dpi=100)
    path = tmp_path / "scans.pdf"
    doc.save(path)
    settings = ctx.settings
    scan_cost = 1 + settings.image_page_cost + settings.ocr_page_cost
    capped = with_settings(ctx, ocr_max_pages=2, batch_cost=scan_cost + 1 + settings.image_page_cost)
    # WHEN Plan runs
    planned = plan(capped, conn, plan_input(upload_pdf(ctx.s3, path, "uploads/scans.pdf")))
    # THEN each batch holds at most one scan to read; the third scan, over the cap, is marked and
    # weighs as an image page only
    specs = manifest_items(ctx, planned["manifest_key"])
    assert [(s.first_page, s.last_page, s.ocr_skip) for s in specs] == [(1, 2, ()), (3, 4, (4,))]
