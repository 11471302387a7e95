"""The `partial` outcome with real damaged files: a document that finished with content missing
says so (status, warnings with codes and pages), in the database, `pagemill run --json`, the
exit code, `pagemill status` and the exported document.json; per-state timings are recorded."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pymupdf
import pytest

from pagemill.pdf.damage import CONTENT_LOST, IMAGE_UNREADABLE
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.sample import make_catalog
from tests.e2e.test_cli import pagemill

pytestmark = pytest.mark.heavy(20)


def truncated_catalog(folder: Path, name: str = "cut.pdf") -> Path:
    """A 10-page catalog cut to the first third of its bytes, like an interrupted download."""
    whole = folder / "whole.pdf"
    make_catalog(whole, pages=10, seed=5)
    data = whole.read_bytes()
    cut = folder / name
    cut.write_bytes(data[: len(data) // 3])
    return cut


def outcome(db: psycopg.Connection, document_id: str) -> tuple[str, list[dict], dict]:
    return db.execute("select status, warnings, timings from documents where id = %s", (document_id,)).fetchone()


def test_a_truncated_pdf_ends_partial_with_the_pages_it_lost(
    engine: LocalEngine, db: psycopg.Connection, tmp_path: Path
) -> None:
    # GIVEN a generated catalog cut to a third of its bytes (MuPDF repairs it; later pages are empty)
    run = engine.submit(truncated_catalog(tmp_path))
    # WHEN it runs
    engine.wait([run])
    # THEN the execution succeeded, the rows are in, and the document is partial
    assert run.status == "SUCCEEDED"
    status, warnings, timings = outcome(db, run.document_id)
    assert status == "partial"
    assert db.execute("select count(*) from pages where document_id = %s", (run.document_id,)).fetchone()[0] == 10
    # AND its warning says the file was repaired and which pages lost content (5-10 came back empty)
    [lost] = [w for w in warnings if w["code"] == CONTENT_LOST]
    assert "repaired" in lost["message"]
    assert set(range(5, 11)) <= set(lost["pages"]) and 1 not in lost["pages"]
    # AND the time of every state it went through is recorded
    assert {"Plan", "ExtractPages", "Embed", "EmbedChunks", "Write"} <= set(timings["states"])
    assert all(seconds >= 0 for seconds in timings["states"].values())


def test_an_image_that_cannot_be_decoded_makes_the_document_partial(
    engine: LocalEngine, db: psycopg.Connection, tmp_path: Path
) -> None:
    # GIVEN a 2-page PDF whose page-1 image is a JPEG 2000 stream with no JPEG 2000 in it
    doc = pymupdf.open()
    for n in (1, 2):
        page = doc.new_page()
        page.insert_text((72, 72), f"page {n} of a document with pictures")
        pixmap = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 120, 120), False)
        pixmap.set_rect(pixmap.irect, (40 * n, 90, 160))
        xref = page.insert_image(pymupdf.Rect(72, 100, 272, 300), pixmap=pixmap)
        if n == 1:
            doc.update_stream(xref, b"not a jpeg 2000 codestream" * 8, compress=False)
            doc.xref_set_key(xref, "Filter", "/JPXDecode")
    path = tmp_path / "bad-image.pdf"
    doc.save(path)
    # WHEN it runs
    run = engine.submit(path)
    engine.wait([run])
    # THEN the good image is stored, and the document is partial: page 1's image is missing
    status, warnings, _ = outcome(db, run.document_id)
    assert status == "partial"
    assert [(w["code"], w["pages"]) for w in warnings] == [(IMAGE_UNREADABLE, [1])]
    assert db.execute("select page_nos from images where document_id = %s", (run.document_id,)).fetchall() == [([2],)]


def test_the_command_reports_partial_with_its_warnings_and_exit_code(
    tmp_path: Path, module_database_url: str, engine_home: Path
) -> None:
    # GIVEN a truncated catalog
    cut = truncated_catalog(tmp_path, "cut-cli.pdf")
    out = tmp_path / "out"
    # WHEN `pagemill run --json` processes it
    result = pagemill("run", str(cut), "--json", "--out", str(out), "--database-url", module_database_url,
                      home=engine_home)
    # THEN it exits 3 (partial), and its report says partial with the warnings
    assert result.returncode == 3, result.stderr
    [report] = json.loads(result.stdout)
    assert report["status"] == "partial"
    assert [w["code"] for w in report["warnings"]] == [CONTENT_LOST]
    assert {"Plan", "ExtractPages", "Write"} <= set(report["timings"]["states"])
    # AND the export's document.json carries them
    exported = json.loads((out / report["document_id"] / "document.json").read_text())
    assert exported["status"] == "partial" and exported["warnings"] == report["warnings"]
    # AND `pagemill status` shows partial with the warning, exit 3
    status = pagemill("status", report["document_id"], "--database-url", module_database_url, home=engine_home)
    assert status.returncode == 3, status.stderr
    assert "partial" in status.stdout and CONTENT_LOST in status.stdout
