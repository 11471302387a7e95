"""Opening and validating PDFs (pagemill.pdf): every kind of bad input fails with its typed
error and a one-line reason; repairable files open with the page counts MANIFEST.tsv gives."""

from __future__ import annotations

import csv
from pathlib import Path

import pymupdf
import pytest

from pagemill.errors import (
    EmptyFile,
    EncryptedPdf,
    FileTooLarge,
    InputError,
    MalformedPdf,
    NoPages,
    NotAPdf,
    PageLimitExceeded,
)
from pagemill.pdf.document import inspect_pdf, open_pdf, plan_batches
from pagemill.settings import Settings

SETTINGS = Settings()


def _text_pdf(path: Path, pages: int, images_on: dict[int, int] | None = None) -> Path:
    """A text PDF; images_on maps a page number to how many distinct 64x64 images it draws."""
    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page()
        page.insert_text((72, 72), f"page {n + 1}")
        for k in range((images_on or {}).get(n + 1, 0)):
            pix = pymupdf.Pixmap(pymupdf.csRGB, 64, 64, bytes((n, k, 99)) * 64 * 64, False)
            x, y = 72 + 70 * (k % 6), 100 + 70 * (k // 6)
            page.insert_image(pymupdf.Rect(x, y, x + 64, y + 64), pixmap=pix)
    doc.save(path)
    doc.close()
    return path


def _manifest(corpus: Path) -> dict[str, dict[str, str]]:
    with open(corpus / "MANIFEST.tsv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


# --- corpus: bad input ------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("password-example.pdf", EncryptedPdf),
        ("qpdf-enc-aes256-r6-user-view.pdf", EncryptedPdf),
        ("qpdf-enc-rc4-40-user-view.pdf", EncryptedPdf),
        ("mueller-report-vol-2-truncated.pdf", NoPages),
        ("empty.pdf", EmptyFile),
        ("ocrmypdf-invalid.pdf", MalformedPdf),
        ("qpdf-zero-pages.pdf", NoPages),
        ("pdfjs-pages-tree-refs.pdf", MalformedPdf),
    ],
)
def test_bad_corpus_file_raises_its_typed_error(corpus: Path, name: str, error: type[InputError]) -> None:
    # GIVEN a real-world PDF that cannot be processed
    # WHEN it is opened
    with pytest.raises(error) as raised:
        open_pdf(corpus / name, SETTINGS)
    # THEN the error is the specific class, with one line a person can act on
    message = str(raised.value)
    assert "\n" not in message
    assert len(message) < 200
    assert any(word in message for word in ("upload", "re-export", "split"))


@pytest.mark.corpus
def test_broken_page_tree_is_caught_at_open_with_the_page_number(corpus: Path) -> None:
    # GIVEN a page tree that loops back on itself (page_count says 2, page 2 cannot load)
    # WHEN it is opened
    with pytest.raises(MalformedPdf) as raised:
        open_pdf(corpus / "pdfjs-pages-tree-refs.pdf", SETTINGS)
    # THEN the reason names the page and MuPDF's diagnosis
    assert "Page 2 of 2" in str(raised.value)
    assert "cycle in page tree" in str(raised.value)


@pytest.mark.corpus
@pytest.mark.parametrize(
    "name",
    [
        "qpdf-enc-aes128-owner-only.pdf",  # encrypted with an empty user password
        "malformed-from-issue-932.pdf",
        "qpdf-append-page-content-damaged.pdf",
        "qpdf-issue-202.pdf",
        "cardinal-truncated.pdf",
        "no_contents.pdf",
        "enormous.pdf",
    ],
)
def test_repairable_corpus_file_opens_with_manifest_page_count(corpus: Path, name: str) -> None:
    # GIVEN a damaged-but-repairable or unusual real-world PDF
    expected = int(_manifest(corpus)[name]["pages"])
    # WHEN it is opened
    doc = open_pdf(corpus / name, SETTINGS)
    # THEN it has the page count MANIFEST.tsv records
    try:
        assert doc.page_count == expected
        assert inspect_pdf(doc).page_count == expected
    finally:
        doc.close()


@pytest.mark.corpus
def test_every_good_corpus_file_opens(corpus: Path) -> None:
    # GIVEN every corpus file whose manifest page count is positive
    good = {name: int(row["pages"]) for name, row in _manifest(corpus).items() if row["pages"].isdigit()}
    good = {name: pages for name, pages in good.items() if pages > 0}
    # WHEN each is opened and inspected
    counts = {}
    for name in good:
        doc = open_pdf(corpus / name, SETTINGS)
        counts[name] = len(inspect_pdf(doc).images_per_page)
        doc.close()
    # THEN each reports the manifest page count
    assert counts == good


@pytest.mark.corpus
def test_images_per_page_match_manifest_totals(corpus: Path) -> None:
    # GIVEN the illustrated anthology (550 image references over 55 pages)
    doc = open_pdf(corpus / "pdkids.pdf", SETTINGS)
    # WHEN it is inspected
    info = inspect_pdf(doc)
    doc.close()
    # THEN per-page counts add up to the manifest's total
    assert sum(info.images_per_page) == int(_manifest(corpus)["pdkids.pdf"]["images"])


# --- generated bad input ----------------------------------------------------------------------


def test_not_a_pdf(tmp_path: Path) -> None:
    # GIVEN a text file with a .pdf name
    path = tmp_path / "notes.pdf"
    path.write_text("these are my meeting notes, not a PDF\n" * 10)
    # WHEN / THEN
    with pytest.raises(NotAPdf, match="not a PDF"):
        open_pdf(path, SETTINGS)


def test_header_after_leading_junk_is_accepted(tmp_path: Path) -> None:
    # GIVEN a valid PDF preceded by a few bytes of junk (readers tolerate this within 1 KB)
    good = _text_pdf(tmp_path / "good.pdf", 2)
    path = tmp_path / "junk-first.pdf"
    path.write_bytes(b"\x00" * 100 + good.read_bytes())
    # WHEN it is opened
    doc = open_pdf(path, SETTINGS)
    # THEN its pages are there
    assert doc.page_count == 2
    doc.close()


def test_zero_bytes(tmp_path: Path) -> None:
    # GIVEN an upload that arrived empty / WHEN opened / THEN EmptyFile
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with pytest.raises(EmptyFile):
        open_pdf(path, SETTINGS)


def test_truncated_header_only(tmp_path: Path) -> None:
    # GIVEN a download cut off right after the header
    path = tmp_path / "cut.pdf"
    path.write_bytes(_text_pdf(tmp_path / "whole.pdf", 3).read_bytes()[:40])
    # WHEN / THEN it is refused as damaged or as pageless, never opened
    with pytest.raises((MalformedPdf, NoPages)):
        open_pdf(path, SETTINGS)


def test_encrypted_with_user_password(tmp_path: Path) -> None:
    # GIVEN a PDF saved with AES-256 and a user password
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    path = tmp_path / "locked.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="x", owner_pw="y")
    # WHEN / THEN
    with pytest.raises(EncryptedPdf, match="password-protected"):
        open_pdf(path, SETTINGS)


def test_encrypted_with_owner_password_only_is_accepted(tmp_path: Path) -> None:
    # GIVEN a PDF encrypted with an owner password but an empty user password
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "readable")
    path = tmp_path / "owner-only.pdf"
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="y")
    # WHEN it is opened
    opened = open_pdf(path, SETTINGS)
    # THEN its text is readable
    assert "readable" in opened.load_page(0).get_text()
    opened.close()


def test_file_too_large(tmp_path: Path) -> None:
    # GIVEN a limit below the file's size / WHEN opened / THEN FileTooLarge naming the setting
    path = _text_pdf(tmp_path / "big.pdf", 1)
    with pytest.raises(FileTooLarge, match="PAGEMILL_MAX_BYTES"):
        open_pdf(path, Settings(max_bytes=100))


def test_page_limit(tmp_path: Path) -> None:
    # GIVEN 6 pages against a 5-page limit / WHEN opened / THEN PageLimitExceeded with the count
    path = _text_pdf(tmp_path / "long.pdf", 6)
    with pytest.raises(PageLimitExceeded, match="6 pages"):
        open_pdf(path, Settings(max_pages=5))


# --- batch planning ---------------------------------------------------------------------------


def _covers_each_page_once(batches: list[tuple[int, int]], pages: int) -> bool:
    covered = [p for first, last in batches for p in range(first, last + 1)]
    return covered == list(range(1, pages + 1))


@pytest.mark.parametrize("pages", [1, 2, 24, 25, 26, 50, 51, 785])
def test_text_only_documents_get_full_batches(pages: int) -> None:
    # GIVEN a document with no images
    # WHEN it is planned
    batches = plan_batches([0] * pages, SETTINGS)
    # THEN every page is in exactly one batch, in order, and batches are batch_pages long
    assert _covers_each_page_once(batches, pages)
    assert all(last - first + 1 == 25 for first, last in batches[:-1])


def test_image_heavy_pages_get_smaller_batches() -> None:
    # GIVEN 100 pages with 4 images each (cost 3 per page at the default 0.5 per image)
    images = [4] * 100
    # WHEN it is planned
    batches = plan_batches(images, SETTINGS)
    # THEN batches hold 8 pages (8 * 3 = 24 <= 25) and still cover every page once
    assert _covers_each_page_once(batches, 100)
    assert {last - first + 1 for first, last in batches[:-1]} == {8}


def test_page_over_budget_is_a_batch_of_its_own() -> None:
    # GIVEN a page with 415 image strips between text pages
    images = [0, 0, 415, 0, 0]
    # WHEN it is planned
    batches = plan_batches(images, SETTINGS)
    # THEN the heavy page stands alone and nothing is lost
    assert batches == [(1, 2), (3, 3), (4, 5)]


def test_mixed_document_plan_respects_both_limits() -> None:
    # GIVEN pages with varied image counts
    images = [(n * 7) % 5 for n in range(300)]
    settings = Settings(batch_pages=10, batch_cost=12.0, image_page_cost=1.0)
    # WHEN it is planned
    batches = plan_batches(images, settings)
    # THEN each batch is within both limits unless it is a single page
    assert _covers_each_page_once(batches, 300)
    for first, last in batches:
        cost = sum(1 + images[p - 1] for p in range(first, last + 1))
        assert last - first + 1 <= 10
        assert cost <= 12.0 or first == last


def test_empty_document_has_no_batches() -> None:
    # GIVEN no pages / WHEN planned / THEN no batches (open_pdf refuses such a file before planning)
    assert plan_batches([], SETTINGS) == []


def test_plan_from_a_real_pdf(tmp_path: Path) -> None:
    # GIVEN a generated PDF where pages 3-5 carry 20 images each
    path = _text_pdf(tmp_path / "mixed.pdf", 30, images_on={3: 20, 4: 20, 5: 20})
    doc = open_pdf(path, SETTINGS)
    # WHEN it is inspected and planned
    info = inspect_pdf(doc)
    doc.close()
    batches = plan_batches(info.images_per_page, SETTINGS)
    # THEN the images are counted and the costly pages (11 each) end batches early
    assert info.images_per_page[:6] == [0, 0, 20, 20, 20, 0]
    assert batches == [(1, 4), (5, 19), (20, 30)]
