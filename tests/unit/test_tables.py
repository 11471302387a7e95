"""PyMuPDF's table code made cheaper (pagemill.pdf.tables): the character list that table
detection starts from is PyMuPDF's own, value for value, on generated pages and on every page
of the real corpus files below; the swap lasts only for its block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymupdf
import pymupdf.table
import pytest

from pagemill.pdf import tables
from pagemill_tools.sample import make_mixed

# Text in columns, booktabs rules, two fonts and sizes, vertical Japanese, right-to-left text,
# forms, a repaired file: the pages whose characters table detection lists.
CORPUS_FILES = (
    "dpr-paper-two-column.pdf", "senate-expenditures.pdf", "pdfjs-issue6387-japanese-vertical.pdf",
    "habibi.pdf", "libreoffice-form.pdf", "gao-23-106826-2p.pdf", "qpdf-issue-202.pdf",
)


def characters(make_chars: Any, page: pymupdf.Page) -> list[dict[str, Any]]:
    pymupdf.table._CHARS_VAR.set([])
    make_chars(page)
    return list(pymupdf.table.CHARS._list())


def assert_same_characters(page: pymupdf.Page) -> int:
    theirs = characters(tables._pymupdf_make_chars, page)
    ours = characters(tables.make_chars, page)
    assert ours == theirs
    return len(ours)


def test_generated_pages_list_the_same_characters(tmp_path: Path) -> None:
    # GIVEN generated pages with ruled tables, headings and photos, a cropped page (its matrix
    # moves) and a rotated one
    path = tmp_path / "mixed.pdf"
    make_mixed(path, pages=10, images=2, table_every=5)  # tables on pages 2 and 7
    with pymupdf.open(path) as doc:
        doc[1].set_cropbox(pymupdf.Rect(40, 60, 500, 700))
        doc[6].set_rotation(90)
        # WHEN both functions list each page's characters
        # THEN the lists are equal, dictionary for dictionary
        counts = [assert_same_characters(page) for page in doc]
    assert all(counts)


@pytest.mark.corpus
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_real_pages_list_the_same_characters(corpus: Path, name: str) -> None:
    # GIVEN every page of a real file
    with pymupdf.open(corpus / name) as doc:
        # WHEN both functions list its characters
        # THEN the lists are equal
        assert sum(assert_same_characters(page) for page in doc) > 0


def test_the_swap_lasts_for_its_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN PyMuPDF's own functions
    original = (pymupdf.table.make_chars, pymupdf.table.extract_cells)
    path = tmp_path / "table.pdf"
    make_mixed(path, pages=10, images=0, table_every=2)  # a table on page 1
    def read(page: pymupdf.Page) -> list[tuple[Any, str]]:
        found = page.find_tables(strategy="lines_strict", use_layout=False).tables
        return [(table.extract(), table.to_markdown()) for table in found]

    with pymupdf.open(path) as doc:
        expected = read(doc[0])
        # WHEN a table is detected and read inside the block (its cells' text from the dictionary
        # the character list was read from: no other extraction of it)
        extractions: list[object] = []
        monkeypatch.setattr(pymupdf.TextPage, "extractRAWDICT",
                            lambda self, *a, _original=pymupdf.TextPage.extractRAWDICT, **k:
                            extractions.append(self) or _original(self, *a, **k))
        with tables.cheaper_tables():
            assert pymupdf.table.make_chars is tables.make_chars
            found = read(doc[0])
    # THEN the table and its markdown are the same, its TextPage's dictionary was extracted once,
    # and PyMuPDF's functions are back after the block
    assert found == expected and expected
    assert len(extractions) == 1
    assert (pymupdf.table.make_chars, pymupdf.table.extract_cells) == original
