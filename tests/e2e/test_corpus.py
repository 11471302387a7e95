"""Every real-world PDF of ../shared/corpus through the local engine in one run: the expected
outcome comes from its MANIFEST.tsv (page counts as PyMuPDF reads them; errors; distinct images)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from pagemill.pdf.completeness import word_loss, words
from pagemill.pdf.damage import CONTENT_LOST
from pagemill_tools.engine.engine import LocalEngine

pytestmark = [pytest.mark.corpus, pytest.mark.heavy(200)]


def manifest(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# Files that open but lose something on the way, and the warning each must carry: a loss is
# visible, never a silent "succeeded".
PARTIAL = {
    "cardinal-truncated.pdf": "content_lost",  # cut short: MuPDF repairs it, some pages lost their content
    "enormous.pdf": "ocr_refused",  # an 81-Mpx scan: refused before rendering (decompression-bomb guard)
}


def expected_pages(row: dict[str, str]) -> int | None:
    """Positive page count → must succeed with it; 0 or an error → must fail."""
    return int(row["pages"]) if row["pages"].isdigit() and int(row["pages"]) > 0 else None


def distinct_images(row: dict[str, str]) -> int | None:
    found = re.search(r"(\d+) distinct images", row["notes"])
    return int(found.group(1)) if found else None


@pytest.fixture(scope="module")
def corpus_runs(engine: LocalEngine, corpus: Path):
    rows = manifest(corpus)
    runs = [engine.submit(corpus / row["file"]) for row in rows]
    engine.wait(runs)
    return list(zip(rows, runs))


def test_every_corpus_file_ends_as_its_manifest_says(corpus_runs, db) -> None:
    problems = []
    for row, run in corpus_runs:
        doc = db.execute(
            "select status, page_count, error, warnings from documents where id = %s", (run.document_id,)
        ).fetchone()
        pages = db.execute("select count(*) from pages where document_id = %s", (run.document_id,)).fetchone()[0]
        want = expected_pages(row)
        if doc is None:
            problems.append(f"{row['file']}: no document row (execution {run.status})")
        elif want is not None and row["file"] in PARTIAL:
            codes = {w["code"] for w in doc[3]}
            if doc[0] != "partial" or PARTIAL[row["file"]] not in codes or pages != want:
                problems.append(f"{row['file']}: expected partial ({PARTIAL[row['file']]}) with {want} pages, "
                                f"got {doc[0]} {pages} {sorted(codes)}")
        elif want is not None and (doc[0] != "succeeded" or pages != want):
            problems.append(f"{row['file']}: expected succeeded with {want} pages, got {doc[0]} {pages} ({doc[2]}, "
                            f"{[w['code'] for w in doc[3]]})")
        elif want is None and (doc[0] != "failed" or not doc[2] or pages != 0):
            problems.append(f"{row['file']}: expected failed with a reason and no rows, got {doc}")
    assert not problems, "\n".join(problems)


def test_repeated_pictures_are_one_row_each(corpus_runs, db) -> None:
    # pdkids.pdf draws 10 distinct pictures 550 times; cardinal.pdf one scan on 4 pages
    checked = 0
    for row, run in corpus_runs:
        want = distinct_images(row)
        if want is None or expected_pages(row) is None:
            continue
        got = db.execute("select count(*) from images where document_id = %s", (run.document_id,)).fetchone()[0]
        assert got == want, row["file"]
        checked += 1
    assert checked >= 2


def test_failures_name_a_reason_and_the_failed_state(corpus_runs, db) -> None:
    for row, run in corpus_runs:
        if expected_pages(row) is not None:
            continue
        error, failed_state, error_class = db.execute(
            "select error, failed_state, error_class from documents where id = %s", (run.document_id,)
        ).fetchone()
        assert failed_state == "Plan", row["file"]
        assert error_class in {"EncryptedPdf", "EmptyFile", "NotAPdf", "MalformedPdf", "NoPages"}, row["file"]
        assert len(error) < 300 and "Traceback" not in error, row["file"]


def test_scanned_pages_are_read_by_ocr_and_say_so(corpus_runs, db) -> None:
    # cardinal.pdf: one scan on 4 pages in four orientations, no text layer
    run = next(run for row, run in corpus_runs if row["file"] == "cardinal.pdf")
    pages = db.execute(
        "select page_no, text_source, ocr_confidence, char_count, markdown from pages where document_id = %s"
        " order by page_no",
        (run.document_id,),
    ).fetchall()
    assert [p[1] for p in pages] == ["ocr"] * 4
    assert all(0.5 < p[2] <= 1.0 and p[3] > 1000 for p in pages), pages
    # AND the four orientations read alike: each page holds most of the upright page's words
    first = words(pages[0][4])
    for page in pages[1:]:
        assert 1 - word_loss(" ".join(first.elements()), page[4]).fraction >= 0.8, page[0]


def test_damaged_files_say_what_they_lost(corpus_runs, db) -> None:
    # cardinal-truncated: content streams cut, pages 1-3 draw nothing; the qpdf file is repaired
    # and loses nothing; the truncated Mueller report has no page left
    damaged = {"cardinal-truncated.pdf", "qpdf-append-page-content-damaged.pdf", "mueller-report-vol-2-truncated.pdf"}
    lost = {}
    for row, run in ((row, run) for row, run in corpus_runs if row["file"] in damaged):
        status, error_class, warnings = db.execute(
            "select status, error_class, warnings from documents where id = %s", (run.document_id,)).fetchone()
        lost[row["file"]] = (status, error_class, [w["pages"] for w in warnings if w["code"] == CONTENT_LOST])
    assert lost["cardinal-truncated.pdf"] == ("partial", None, [[1, 2, 3]])
    assert lost["qpdf-append-page-content-damaged.pdf"] == ("succeeded", None, [])
    assert lost["mueller-report-vol-2-truncated.pdf"] == ("failed", "NoPages", [])
