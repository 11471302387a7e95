"""Poison inputs end promptly, succeeded or failed with a reason, within the functions' memory
limits (the local runtime kills a worker past its function's MemorySize: Runtime.OutOfMemory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemill_tools.engine.engine import LocalEngine
from tests.support.poison import blank_pages, decompression_bomb

pytestmark = pytest.mark.heavy(30)


def test_a_decompression_bomb_is_skipped_without_decoding(engine: LocalEngine, db, tmp_path: Path) -> None:
    # GIVEN a page whose one image declares 1.6 billion pixels
    path = tmp_path / "bomb.pdf"
    decompression_bomb(path)
    # WHEN it runs
    run = engine.submit(path)
    engine.wait([run])
    # THEN the document succeeded with its text, and the image is recorded as refused, not stored
    assert run.status == "SUCCEEDED", run
    row = db.execute(
        "select status, stats, (select count(*) from images where document_id = %(d)s),"
        " (select markdown from pages where document_id = %(d)s)"
        " from documents where id = %(d)s", {"d": run.document_id},
    ).fetchone()
    status, stats, images, markdown = row
    assert (status, images) == ("succeeded", 0)
    assert stats["skipped_images"] == {"too_many_pixels": 1}
    assert "decompression bomb" in markdown


def test_five_thousand_blank_pages_end_promptly(engine: LocalEngine, db, tmp_path: Path) -> None:
    # GIVEN 5,000 empty pages (200 batches)
    path = tmp_path / "blank.pdf"
    blank_pages(path, 5000)
    # WHEN it runs
    run = engine.submit(path)
    engine.wait([run])
    # THEN every page is a row, there is nothing to chunk, and nothing is left running
    assert run.status == "SUCCEEDED", run
    assert db.execute(
        "select status, page_count, (select count(*) from pages where document_id = %(d)s),"
        " (select count(*) from chunks where document_id = %(d)s) from documents where id = %(d)s",
        {"d": run.document_id},
    ).fetchone() == ("succeeded", 5000, 5000, 0)
    assert db.execute("select count(*) from documents where status = 'running'").fetchone() == (0,)
