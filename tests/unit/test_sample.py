"""The sample catalog generator (pagemill_tools.sample): the PDF it writes matches the facts it returns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pymupdf
import pytest

from pagemill_tools.sample import CatalogTruth, main, make_catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CatalogTruth]:
    path = tmp_path_factory.mktemp("sample") / "catalog.pdf"
    return path, make_catalog(path)


def test_catalog_is_a_40_page_illustrated_pdf_under_3_mb(catalog) -> None:
    # GIVEN the default catalog
    path, truth = catalog
    # THEN it has the promised shape
    assert truth.page_count >= 40
    assert truth.distinct_images >= 31  # 30+ product photos and the logo
    assert truth.distinct_images == len(truth.image_hashes)
    assert truth.logo_sha256 in truth.image_hashes
    assert path.stat().st_size < 3 * 1024 * 1024
    assert len(truth.headings) == len(set(truth.headings)) == truth.page_count
    assert len(truth.text_per_page) == truth.page_count
    assert 1 <= truth.table_page <= truth.page_count
    assert len(truth.table_rows) > 2


def test_pdf_content_matches_the_truth(catalog) -> None:
    # GIVEN the catalog file, read back with plain PyMuPDF
    path, truth = catalog
    doc = pymupdf.open(path)
    assert doc.page_count == truth.page_count
    stored = set()
    for page, heading, paragraphs in zip(doc, truth.headings, truth.text_per_page, strict=True):
        text = " ".join(page.get_text().split())
        # THEN each page shows its heading and its paragraphs
        assert heading in text
        for paragraph in paragraphs:
            assert " ".join(paragraph.split()) in text
        # AND its images are the ones the truth names, the logo among them
        hashes = {hashlib.sha256(doc.extract_image(item[0])["image"]).hexdigest() for item in page.get_images()}
        assert truth.logo_sha256 in hashes
        stored |= hashes
    assert sorted(stored) == truth.image_hashes
    # AND the price table's cells are on the table page
    table_text = doc.load_page(truth.table_page - 1).get_text()
    assert all(cell in table_text for row in truth.table_rows for cell in row)
    doc.close()


def test_headings_use_a_larger_bold_font(catalog) -> None:
    # GIVEN the text spans of a product page
    path, truth = catalog
    doc = pymupdf.open(path)
    blocks = doc.load_page(1).get_text("dict")["blocks"]
    spans = [span for b in blocks for line in b.get("lines", []) for span in line["spans"]]
    doc.close()
    # THEN its heading is set larger than the body, in bold
    heading = next(s for s in spans if s["text"] == truth.headings[1])
    body = next(s for s in spans if truth.text_per_page[1][0].startswith(s["text"]))
    assert heading["size"] > body["size"]
    assert "Bold" in heading["font"]


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    # GIVEN two catalogs from one seed and one from another
    a, b, c = (tmp_path / f"{n}.pdf" for n in "abc")
    truth_a, truth_b = make_catalog(a, pages=6), make_catalog(b, pages=6)
    truth_c = make_catalog(c, pages=6, seed=8)
    # THEN the same seed reproduces the file exactly; another seed changes the photos but not the logo
    assert a.read_bytes() == b.read_bytes() and truth_a == truth_b
    assert truth_c.image_hashes != truth_a.image_hashes
    assert truth_c.logo_sha256 == truth_a.logo_sha256


def test_too_few_pages_is_refused(tmp_path: Path) -> None:
    # GIVEN a page count with no room for the price table / WHEN / THEN ValueError
    with pytest.raises(ValueError, match="2 to 500 pages"):
        make_catalog(tmp_path / "one.pdf", pages=1)


def test_command_line_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN `python -m pagemill_tools.sample OUT.pdf`
    out = tmp_path / "out.pdf"
    # WHEN it runs
    assert main([str(out)]) == 0
    # THEN the file exists and the command says what it wrote
    assert out.stat().st_size > 0
    assert "44 pages" in capsys.readouterr().out
    assert main([]) == 2
