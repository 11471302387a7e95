"""Plan on its own: the PDF in S3 → the document's row and its batch manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pagemill import keys
from pagemill.errors import NotAPdf
from pagemill.pipeline.context import StageContext
from pagemill.pipeline.plan import plan
from tests.support.stages import (
    EXECUTION_ARN,
    Upload,
    manifest_items,
    plan_input,
    upload_pdf,
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
    # AND the document is running for this execution, with its page count
    row = db.execute("select status, page_count, execution_arn from documents where id = %s",
                     (planned["document_id"],)).fetchone()
    assert row == ("running", 6, EXECUTION_ARN)


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
