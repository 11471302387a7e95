"""Every real-world PDF of ../shared/corpus through the local engine in one run: the expected
outcome comes from its MANIFEST.tsv (page counts as PyMuPDF reads them; errors; distinct images)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from pagemill_tools.engine.engine import LocalEngine

pytestmark = pytest.mark.corpus


def manifest(corpus: Path) -> list[dict[str, str]]:
    with open(corpus / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


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
            "select status, page_count, error from documents where id = %s", (run.document_id,)
        ).fetchone()
        pages = db.execute("select count(*) from pages where document_id = %s", (run.document_id,)).fetchone()[0]
        want = expected_pages(row)
        if doc is None:
            problems.append(f"{row['file']}: no document row (execution {run.status})")
        elif want is not None and (doc[0] != "succeeded" or pages != want):
            problems.append(f"{row['file']}: expected succeeded with {want} pages, got {doc[0]} {pages} ({doc[2]})")
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
